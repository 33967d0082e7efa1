"""The output layers of [`RnnForTokenClassification`], by name (`HEADS`, chosen by `config.head_type`), behind one
interface, so the tagger never branches on the head:

- `forward(hidden_states)`: the head's own projection of the encoder's states, its per-token `emissions`;
- `loss(emissions, labels, chain, num_items)`: the loss over the chain, summed and divided by `num_items`;
- `decode(emissions, chain)`: the model's tags (B, T) over the chain, -100 elsewhere;
- `predict(emissions, chain)`: the tags and the `logits` together (what an evaluation step returns), sharing what
  they can (a CRF's Viterbi pass is the first half of its max-marginals);
- `probabilities(emissions, chain)`: per-token tag probabilities (B, T, C), zero off the chain;
- `logits(emissions, chain, tags)`: per-token scores whose argmax is `tags`, for tools that take an argmax.

The chain is one word mask (the first piece of each word, the tokens a tag belongs to), the same for the loss and
for decoding, given compacted (a `MaskCompaction`: the tagger compacts it once per forward). Value checks go to the
forward's `value_checks()`, read once per forward; nothing on the path of a training or evaluation step reads a
device value on the host. A head's parts (its submodules) are registered on the tagger under their own names, so a checkpoint's
weight names are `classifier.*`, `crf.*`, `semicrf.*`, whatever the head.

Adding a head: a class here (or in a flat sibling it imports) and its name in `HEADS` (and in
`configuration_rnn.HEAD_TYPES`, which cannot import torch).

Shipped inside checkpoints with the modeling files: imports only torch, transformers and its flat siblings.
"""

import torch
from torch import nn
from transformers import initialization as init
from transformers.loss.loss_utils import ForTokenClassification

from .configuration_rnn import RnnConfig
from .crf import LinearChainCRF
from .masking import MaskCompaction, is_tracing, value_checks
from .schemes import chunks, scheme_constraints, segment_scheme, split_tag, written_roles
from .semicrf import SemiMarkovCRF, segment_spans


class TaggerHead(nn.Module):
    """A tagger's output layer: a linear projection of the hidden states (`classifier`) and what it makes of them.

    `description` and `card_tags` describe it in the model card; `scores_sequences`: its loss scores whole tag
    sequences, which a cross-entropy on `logits` (the Trainer's, when it takes the labels away) would bypass."""

    description = ""
    card_tags: tuple[str, ...] = ()
    scores_sequences = True

    def __init__(self, config: RnnConfig, projection_size: int | None = None):
        super().__init__()
        self.num_labels, self.labels = config.num_labels, config.crf_labels
        self.classifier = nn.Linear(config.output_size, projection_size or config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(hidden_states)

    def init_range(self, module: nn.Module, config: RnnConfig) -> float | None:
        """The U[-r, r] range of a part the base model does not know (None: the base's rule)."""
        return None

    def init_part(self, module: nn.Module, r: float | None) -> bool:
        """Initialise `module` if it is a part the base model does not know; False otherwise."""
        return False

    def loss(
        self, emissions: torch.Tensor, labels: torch.LongTensor, chain: MaskCompaction, num_items
    ) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.LongTensor:
        raise NotImplementedError

    def predict(self, emissions: torch.Tensor, chain: MaskCompaction) -> tuple[torch.LongTensor, torch.Tensor | None]:
        tags = self.decode(emissions, chain)
        return tags, self.logits(emissions, chain, tags)

    def probabilities(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.Tensor:
        raise NotImplementedError

    def logits(
        self, emissions: torch.Tensor, chain: MaskCompaction, tags: torch.LongTensor | None
    ) -> torch.Tensor | None:
        raise NotImplementedError


class SoftmaxHead(TaggerHead):
    """Independent per-token decisions: transformers' token-classification loss, argmax and softmax."""

    scores_sequences = False

    def loss(
        self, emissions: torch.Tensor, labels: torch.LongTensor, chain: MaskCompaction, num_items
    ) -> torch.Tensor:
        labels = labels.masked_fill(~chain.original_mask, -100)
        return ForTokenClassification(emissions, labels, self, num_items_in_batch=num_items)  # self: num_labels

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.LongTensor:
        return emissions.argmax(-1).masked_fill(~chain.original_mask, -100)

    @torch.no_grad()
    def probabilities(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.Tensor:
        return emissions.float().softmax(-1) * chain.original_mask.unsqueeze(-1)

    def logits(self, emissions: torch.Tensor, chain: MaskCompaction, tags: torch.LongTensor | None) -> torch.Tensor:
        """The emissions themselves: their argmax is the decision."""
        return emissions


class CrfHead(TaggerHead):
    """The BiLSTM-CRF's output layer: emission scores, and a [`LinearChainCRF`] (`crf`) constrained by the labels'
    scheme (`config.crf_constraints`): the CRF negative log-likelihood, Viterbi tags, posterior marginals, and
    max-marginals as `logits`."""

    card_tags = ("crf", "bilstm-crf")

    def __init__(self, config: RnnConfig):
        super().__init__(config)
        self.scheme = config.crf_constraints
        self.crf = LinearChainCRF(config.num_labels)
        self.description = f" + a linear-chain CRF (Viterbi decoding, constraints: {self.scheme or 'none'})"

    def init_range(self, module: nn.Module, config: RnnConfig) -> float | None:
        """1/sqrt(number of tags) for the CRF's scores."""
        if isinstance(module, LinearChainCRF):
            return config.initializer_range or module.num_tags**-0.5
        return None

    def init_part(self, module: nn.Module, r: float | None) -> bool:
        """U[-r, r] scores and the scheme's constraint masks, which are non-persistent buffers (derived from the
        config) and so rebuilt here after loading. Not in `__init__`, which may run on the meta device."""
        if not isinstance(module, LinearChainCRF):
            return False
        for param in (module.transitions, module.start_transitions, module.end_transitions):
            init.uniform_(param, -r, r)
        module.set_constraints(*(scheme_constraints(self.labels, self.scheme) if self.scheme else ()))
        return True

    def loss(
        self, emissions: torch.Tensor, labels: torch.LongTensor, chain: MaskCompaction, num_items
    ) -> torch.Tensor:
        """Positions off the chain (sub-word pieces, padding) are skipped, as if the sentence lacked them."""
        tags = labels.masked_fill(~chain.original_mask, 0)
        with value_checks() as checks:  # bad data, not a model to train: a gold path the constraints forbid
            if self.scheme is not None and checks.enabled and not is_tracing():  # would cost a penalty-sized loss
                broken = self.crf.broken_moves(tags, chain)
                checks.add(broken.any(), lambda: self._refuse_broken(tags, chain.original_mask))
        return -self.crf.log_likelihood(emissions, tags, chain).sum() / num_items

    def _refuse_broken(self, tags: torch.LongTensor, mask: torch.Tensor) -> None:
        """Raise naming the first move of the gold paths that the constraints forbid (read on the host: it fired)."""
        row, position, previous, tag = self.crf.broken_move(tags, mask)
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

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.LongTensor:
        return self.crf.decode(emissions, chain)

    @torch.no_grad()
    def predict(self, emissions: torch.Tensor, chain: MaskCompaction) -> tuple[torch.LongTensor, torch.Tensor]:
        """Viterbi tags and max-marginals from three passes in all: Viterbi's forward, one backward (not four)."""
        return self.crf.decode_with_max_marginals(emissions, chain)

    def probabilities(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.Tensor:
        """The posterior marginals (forward-backward): they weigh the transitions as the Viterbi tags do."""
        return self.crf.marginals(emissions, chain)

    def logits(
        self, emissions: torch.Tensor, chain: MaskCompaction, tags: torch.LongTensor | None
    ) -> torch.Tensor | None:
        """Max-marginals, whose argmax is the Viterbi path `tags` (ties broken toward it); None when nothing was
        decoded (in training), since they cost as much as a decoding."""
        return None if tags is None else self.crf.max_marginals(emissions, chain, tags)


class SemiCrfHead(TaggerHead):
    """A semi-Markov CRF over chunks: segments of 1..`config.max_segment_length` words, each an entity type, or O (one
    word), scored from the hidden states of their words, plus transitions between segment labels.

    Per word the projection gives, for each type, an inside score, a begin score and an end score, and one O score;
    a segment's score is the sum of its words' inside scores, its first word's begin score, its last word's end
    score and a learnt bias per (length, label): the sum and the endpoints of its hidden states through a linear
    layer. The decoded segmentation is written in the labels' scheme (BIO, BIOES, BILOU), so metrics and pipelines
    read `predictions` and `logits` (max-marginals per tag) as a CRF tagger's.

    Labels that are not chunk tags (POS tags; transformers' placeholder `LABEL_i`) have no chunks: each word is a
    segment of its label, and the model is a linear-chain CRF over them.
    """

    card_tags = ("semi-crf", "semi-markov-crf")

    def __init__(self, config: RnnConfig):
        labels = config.crf_labels
        scheme = segment_scheme(labels)
        self.chunked = scheme is not None
        types = list(dict.fromkeys(split_tag(label)[1] for label in labels if label != "O")) if scheme else labels
        super().__init__(config, projection_size=3 * len(types) + 1)
        self.types = types  # segment label 0 is O, k + 1 the k-th type
        length = config.max_segment_length
        self.semicrf = SemiMarkovCRF(len(types) + 1, length)
        index = {label: i for i, label in enumerate(labels)}
        # tag id of each (role: single word, first, inside, last; segment label); -1 where none (O is one word)
        self.tag_of = [[index.get("O", -1)] + [-1] * len(types) for _ in range(4)]
        for role, prefix in enumerate(written_roles(scheme) if scheme else "S"):  # a token label: one word
            for k, kind in enumerate(self.types):
                self.tag_of[role][k + 1] = index.get(f"{prefix}-{kind}" if scheme else kind, -1)
        # the lengths each segment label can be written at (a type without an I- label has chunks of 1-2 words only)
        roles = ([[0], [1, 3]] + [[1, 2, 3]] * max(length - 2, 0))[:length]  # the roles a length needs
        self.writable = [[all(self.tag_of[r][c] >= 0 for r in need) for c in range(len(types) + 1)] for need in roles]
        # the gold segmentation by tag, read as conlleval reads chunks (`schemes.chunks`, a rule on adjacent tags):
        # each tag's segment label, and whether a segment starts at a tag after another (row C: at the first word)
        type_index = {kind: k + 1 for k, kind in enumerate(types)}
        self.segment_label = [
            (0 if name == "O" else type_index[split_tag(name)[1]]) if scheme else type_index[name] for name in labels
        ]
        self.starts_after = [[not (scheme and _one_chunk(a, b)) for b in labels] for a in labels]
        self.starts_after.append([True] * len(labels))
        self._device_tables: dict[torch.device, dict[str, torch.Tensor]] = {}
        self.description = f" + a semi-Markov CRF (segments of up to {length} words, Viterbi decoding)"

    def init_range(self, module: nn.Module, config: RnnConfig) -> float | None:
        if isinstance(module, SemiMarkovCRF):
            return config.initializer_range or module.num_labels**-0.5
        return None

    def init_part(self, module: nn.Module, r: float | None) -> bool:
        """U[-r, r] transition scores, zero length biases."""
        if not isinstance(module, SemiMarkovCRF):
            return False
        for param in (module.transitions, module.start_transitions, module.end_transitions):
            init.uniform_(param, -r, r)
        init.zeros_(module.length_scores)
        return True

    def _table(self, name: str, device: torch.device) -> torch.Tensor:
        """One of the head's lookup tables on `device`, made once there (a copy from the host each step would wait
        for the device)."""
        tables = self._device_tables.setdefault(device, {})
        if name not in tables:
            tables[name] = torch.tensor(getattr(self, name), device=device)
        return tables[name]

    def segment_scores(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.Tensor:
        """(B, T, L, C) scores of the segment of length l + 1 ending at word t with label c, from the per-word
        scores of the chain (at compact positions: the k-th word of the chain is k). -inf for segments the labels
        cannot write (O segments of more than one word); the CRF drops segments that leave the chain."""
        emissions = chain.compact(emissions.float())
        num_types = len(self.types)
        inside, begin, end = emissions[..., :-1].split(num_types, -1)  # (B, T, K) each, by word
        batch_size, seq_len, _ = emissions.shape
        scores = emissions.new_full((batch_size, seq_len, self.semicrf.max_segment_length, num_types + 1), -torch.inf)
        scores[:, :, 0, 0] = emissions[..., -1]  # O: one word
        total = inside  # by first word s: the sum of the inside scores of [s, s + length]
        for length in range(min(self.semicrf.max_segment_length, seq_len)):
            if length:
                total = total[:, :-1] + inside[:, length:]
            scores[:, length:, length, 1:] = total + begin[:, : seq_len - length] + end[:, length:]
        return scores.masked_fill(~self._table("writable", scores.device), -torch.inf)  # (L, C) writable

    def segments(self, labels: torch.LongTensor, mask: torch.Tensor) -> list[list[tuple[int, int, int]]]:
        """The gold segmentation of each row: `(first, last, segment label)` at compact positions, chunks read as
        conlleval reads them and every other word an O segment; a chunk longer than `max_segment_length` is refused,
        naming the row, its position and the limit. On the host: the loss reads the same by position on the device
        (`_gold`) and calls this to word its error."""
        limit, type_index = self.semicrf.max_segment_length, {kind: k + 1 for k, kind in enumerate(self.types)}
        found = []
        for row, (tags, chain) in enumerate(zip(labels.tolist(), mask.tolist())):
            positions = [t for t, on in enumerate(chain) if on]
            names = [self.labels[tags[t]] for t in positions]
            if not self.chunked:  # token labels: one word per segment
                found.append([(t, t, type_index[name]) for t, name in enumerate(names)])
                continue
            segments, covered = [], 0
            for kind, first, last in chunks(names):
                if last - first + 1 > limit:
                    raise ValueError(
                        f"labels[{row}] at position {positions[first]}: a {kind!r} chunk of {last - first + 1} words "
                        f"is longer than max_segment_length={limit}; raise it (run_tagging: --max_segment_length)"
                    )
                segments += [(t, t, 0) for t in range(covered, first)] + [(first, last, type_index[kind])]
                covered = last + 1
            found.append(segments + [(t, t, 0) for t in range(covered, len(names))])
        return found

    def _gold(self, labels: torch.LongTensor, chain: MaskCompaction) -> tuple[torch.LongTensor, torch.Tensor]:
        """The gold segmentation by compact position, on the device: each word's segment label (B, T) and where
        segments start (B, T) bool; a chunk longer than `max_segment_length` is refused with the forward's checks."""
        valid = chain.compact_mask
        tags = chain.compact(labels).masked_fill(~valid, 0)  # (B, T)
        before = torch.cat([torch.full_like(tags[:, :1], len(self.labels)), tags[:, :-1]], 1)  # row C: none
        starts = self._table("starts_after", tags.device)[before, tags] & valid
        first, last = segment_spans(starts, valid)
        with value_checks() as checks:
            too_long = valid & (last - first >= self.semicrf.max_segment_length)
            checks.add(too_long.any(), lambda: self.segments(labels, chain.original_mask))
        return self._table("segment_label", tags.device)[tags], starts

    def loss(
        self, emissions: torch.Tensor, labels: torch.LongTensor, chain: MaskCompaction, num_items
    ) -> torch.Tensor:
        """The negative log-likelihood of the gold segmentation (from the labels) over the chain."""
        scores, valid = self.segment_scores(emissions, chain), chain.compact_mask
        gold = self.semicrf.path_score(scores, valid, *self._gold(labels, chain))
        return -(gold - self.semicrf.log_partition(scores, valid)).sum() / num_items

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.LongTensor:
        """The Viterbi segmentation, written as tags."""
        valid = chain.compact_mask
        labels, starts = self.semicrf.decode_by_position(self.segment_scores(emissions, chain), valid)  # compact
        first, last = segment_spans(starts, valid)
        positions = torch.arange(valid.size(1), device=valid.device)
        role = torch.where(first == last, 0, torch.where(positions == first, 1, torch.where(positions == last, 3, 2)))
        return chain.restore(self._table("tag_of", valid.device)[role, labels], fill=-100)

    def _per_tag(self, per_segment: torch.Tensor, chain: MaskCompaction, maximum: bool) -> torch.Tensor:
        """Per-segment values (B, T, L, C) at compact positions, probabilities (summed) or scores (maxed), folded
        onto the tags they give the words they cover: (B, T, num_labels) at the original positions."""
        batch_size, seq_len, max_length, _ = per_segment.shape
        empty = float("-inf") if maximum else 0.0
        found = per_segment.new_full((batch_size, seq_len, self.num_labels), empty)
        for length in range(min(max_length, seq_len)):
            for offset in range(length + 1):  # the word at `offset` in a segment of length + 1 words ...
                role = 0 if length == 0 else 1 if offset == 0 else 3 if offset == length else 2
                shift = length - offset  # ... which ends `shift` words later
                values = per_segment.new_full((batch_size, seq_len, per_segment.size(-1)), empty)
                values[:, : seq_len - shift] = per_segment[:, shift:, length]
                for label, tag in enumerate(self.tag_of[role]):
                    if tag >= 0:
                        merged = torch.maximum if maximum else torch.add
                        found[..., tag] = merged(found[..., tag], values[..., label])
        return chain.restore(found, fill=0.0)

    @torch.no_grad()
    def probabilities(self, emissions: torch.Tensor, chain: MaskCompaction) -> torch.Tensor:
        """P(word t has tag j): the summed marginals of the segments that give it that tag."""
        marginals = self.semicrf.segment_marginals(self.segment_scores(emissions, chain), chain.compact_mask)
        return self._per_tag(marginals, chain, maximum=False)

    @torch.no_grad()
    def logits(
        self, emissions: torch.Tensor, chain: MaskCompaction, tags: torch.LongTensor | None
    ) -> torch.Tensor | None:
        """Max-marginals per tag (the best segmentation's score that gives word t tag j), ties broken toward `tags`:
        their argmax is the decoded path. None when nothing was decoded (in training)."""
        if tags is None:
            return None
        best_through = self.semicrf.max_marginals(self.segment_scores(emissions, chain), chain.compact_mask)
        scores = self._per_tag(best_through, chain, maximum=True)
        on_path = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, tags.clamp(min=0).unsqueeze(-1), True)
        best = scores.amax(-1, keepdim=True)
        finfo = torch.finfo(best.dtype)
        below = best - (best.abs() * finfo.eps + finfo.tiny)  # one ulp below the best, at least
        scores = torch.where(on_path, best, torch.minimum(scores, below)).clamp(min=finfo.min)  # no -inf for tools
        return torch.where(chain.original_mask.unsqueeze(-1), scores, 0.0)


def _one_chunk(first: str, second: str) -> bool:
    """Whether conlleval reads the two tags, one after the other, as one chunk."""
    return any(start == 0 and last == 1 for _, start, last in chunks([first, second]))


HEADS: dict[str, type[TaggerHead]] = {"softmax": SoftmaxHead, "crf": CrfHead, "semicrf": SemiCrfHead}

__all__ = ["HEADS", "CrfHead", "SemiCrfHead", "SoftmaxHead", "TaggerHead"]
