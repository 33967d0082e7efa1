"""Compaction of masked batches, shared by the recurrent layers and the CRF, and the input checks they share.

Shipped inside checkpoints with the modeling files, so it imports only torch.
"""

import torch


def is_tracing() -> bool:
    """Under torch.export / torch.compile: take the general paths, never branch on tensor values."""
    return torch.compiler.is_exporting() or torch.compiler.is_compiling()


def raise_at_first(bad: torch.Tensor, name: str, problem: str, values: torch.Tensor) -> None:
    """Raise a `ValueError` naming the first index where `bad` holds and the value of `values` there, e.g.
    `input_ids[0, 2] = 40 is ...`. `bad` may have fewer dimensions than `values` (then a whole row is shown)."""
    if bool(bad.any()):
        index = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{name}[{', '.join(map(str, index))}] = {values[index].tolist()} {problem}")


def real_tokens(attention_mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """(B, T) bool: the real tokens, all of them when there is no mask."""
    if attention_mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    return attention_mask.bool()


def check_ids(
    ids: torch.Tensor,
    size: int,
    name: str,
    problem: str,
    ignore: int | None = None,
    where: torch.Tensor | None = None,
) -> None:
    """Refuse ids outside [0, size) (other than `ignore`; only where `where` holds, if given) before an embedding or
    a loss indexes with them: torch would say "index out of range in self", or trip a device-side assert on a GPU.
    Float or bool ids are refused too. For 3-D ids (char_ids) the whole word is shown. The value checks step aside
    under tracing (no value-dependent branches there)."""
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got {ids.dtype}")
    if is_tracing():
        return
    bad = (ids < 0) | (ids >= size)
    if ignore is not None:
        bad &= ids != ignore
    if where is not None:
        bad &= where
    raise_at_first(bad.flatten(2).any(-1) if ids.dim() > 2 else bad, name, problem, ids)


class MaskCompaction:
    """Index maps between a masked batch and its "compact" layout, where each row's real tokens sit at the left.

    Any mask pattern works (left or right padding, holes). In the compact layout a left-to-right recurrence never
    sees padding before a real token, a right-to-left one runs over each row reversed *within its length* and meets
    padding only at the end, and a CRF sees ordinary right-padded sequences with `lengths`.
    """

    def __init__(self, attention_mask: torch.Tensor):
        mask = attention_mask.bool()  # (B, T)
        batch_size, seq_len = mask.shape
        positions = torch.arange(seq_len, device=mask.device).expand(batch_size, seq_len)  # (B, T)
        self.lengths = mask.sum(1)  # (B,)
        self.original_mask = mask
        self.compact_mask = positions < self.lengths.unsqueeze(1)  # (B, T)
        # right padding (what collators produce) is already compact: no gathers then
        self.is_identity = not is_tracing() and bool(torch.equal(mask, self.compact_mask))
        if not self.is_identity:
            # original position -> compact position: real tokens first, then the padding, each in order (a stable
            # partition by counting, no sort: cheaper, and exportable to ONNX) ...
            real_before = mask.long().cumsum(1)  # (B, T)
            self.to_compact = torch.where(mask, real_before - 1, self.lengths.unsqueeze(1) + positions - real_before)
            # ... and its inverse
            self.to_original = torch.empty_like(self.to_compact).scatter_(1, self.to_compact, positions)  # (B, T)
        # reversal within the length in the compact layout (an involution; padding stays in place)
        self.reverse = torch.where(self.compact_mask, self.lengths.unsqueeze(1) - 1 - positions, positions)  # (B, T)

    @staticmethod
    def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """values (B, T) or (B, T, D), index (B, T) -> values[b, index[b, t]]."""
        if values.dim() == 2:
            return values.gather(1, index)
        return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.size(-1)))

    def compact(self, values: torch.Tensor) -> torch.Tensor:
        return values if self.is_identity else self._gather(values, self.to_original)

    def restore(self, values: torch.Tensor, fill: float = 0) -> torch.Tensor:
        """Compact layout -> original positions, `fill` where the mask is 0."""
        mask = self.original_mask if values.dim() == 2 else self.original_mask.unsqueeze(-1)
        return torch.where(mask, values if self.is_identity else self._gather(values, self.to_compact), fill)

    def reversed(self, values: torch.Tensor) -> torch.Tensor:
        return self._gather(values, self.reverse)
