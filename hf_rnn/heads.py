"""The two output layers of [`RnnForTokenClassification`] behind one interface, so the tagger never branches on
`config.use_crf`:

- `loss(emissions, labels, num_items)`: the loss summed over the labelled tokens (-100 elsewhere), over `num_items`;
- `decode(emissions, mask)`: the model's tags (B, T), -100 at padding;
- `probabilities(emissions, mask)`: per-token tag probabilities (B, T, C), zero at padding;
- `logits(emissions, mask, tags)`: per-token scores whose argmax is `tags`, for tools that take an argmax.

Shipped inside checkpoints with the modeling files: imports only torch and its flat siblings.
"""

from collections.abc import Sequence

import torch
from torch import nn

from .crf import LinearChainCRF
from .masking import is_tracing
from .schemes import scheme_constraints


class SoftmaxHead:
    """Independent per-token decisions: cross-entropy, argmax and softmax of the emissions. No parameters, no state."""

    def loss(self, emissions: torch.Tensor, labels: torch.LongTensor, num_items) -> torch.Tensor:
        flat = emissions.flatten(0, 1).float()  # (B*T, C), the loss in fp32 as transformers computes it
        return nn.functional.cross_entropy(flat, labels.flatten(), ignore_index=-100, reduction="sum") / num_items

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.LongTensor:
        return emissions.argmax(-1).masked_fill(~mask, -100)

    @torch.no_grad()
    def probabilities(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return emissions.float().softmax(-1) * mask.unsqueeze(-1)

    def logits(self, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.LongTensor | None) -> torch.Tensor:
        """The emissions themselves: their argmax is the decision."""
        return emissions


class CrfHead(LinearChainCRF):
    """The BiLSTM-CRF's output layer: the CRF negative log-likelihood, Viterbi tags, posterior marginals, and
    max-marginals as `logits`. A [`LinearChainCRF`] that knows its labels' names and scheme (`config.crf_constraints`),
    which it forbids the impossible moves of and names in its errors."""

    def __init__(self, labels: Sequence[str], scheme: str | None = None):
        super().__init__(len(labels))
        self.labels, self.scheme = list(labels), scheme

    def reset_constraints(self) -> None:
        """Set the allowed-move masks of the scheme. Not in `__init__`, which may run on the meta device: the masks are
        non-persistent buffers, which the tagger's `_init_weights` sets, after loading too."""
        self.set_constraints(*(scheme_constraints(self.labels, self.scheme) if self.scheme else ()))

    def loss(self, emissions: torch.Tensor, labels: torch.LongTensor, num_items) -> torch.Tensor:
        """Positions labelled -100 leave the chain (sub-word pieces, padding), as if the sentence lacked them."""
        scored = labels != -100  # (B, T)
        tags = labels.masked_fill(~scored, 0)
        if self.scheme is not None:
            self._refuse_broken(tags, scored)
        return -self.log_likelihood(emissions, tags, scored).sum() / num_items

    def _refuse_broken(self, tags: torch.LongTensor, scored: torch.Tensor) -> None:
        """Bad data, not a model to train: a gold path the constraints forbid would cost a penalty-sized loss."""
        if is_tracing():
            return
        broken = self.broken_move(tags, scored)
        if broken is None:
            return
        row, position, previous, tag = broken
        names = self.labels
        move = (
            f"{names[tag]!r} as the first tag"
            if previous is None
            else f"{names[previous]!r} as the last tag"
            if tag is None
            else f"{names[tag]!r} after {names[previous]!r}"
        )
        raise ValueError(
            f"labels[{row}] at position {position}: {move} breaks crf_constraints={self.scheme!r}. "
            "Fix the data, or give the config the scheme it is written in (IOB1 data needs 'IOB1'), or None."
        )

    def probabilities(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The posterior marginals (forward-backward): they weigh the transitions as the Viterbi tags do."""
        return self.marginals(emissions, mask)

    def logits(
        self, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.LongTensor | None
    ) -> torch.Tensor | None:
        """Max-marginals, whose argmax is the Viterbi path `tags` (ties broken toward it); None when nothing was
        decoded (in training), since they cost as much as a decoding."""
        return None if tags is None else self.max_marginals(emissions, mask, tags)


__all__ = ["CrfHead", "SoftmaxHead"]
