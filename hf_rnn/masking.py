"""Compaction of masked batches, shared by the recurrent layers and the CRF, and the input checks they share.

Shipped inside checkpoints with the modeling files, so it imports only torch.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


class ValueChecks:
    """The value checks of one forward pass (ids in range, masks of 0/1, finite scores, gold paths the constraints
    allow), read in one host synchronisation instead of one each: on a GPU every read of a device value drains the
    launch queue, and a small recurrent model is launch-bound. A check is a flag computed on the device and a message
    built only when it fires; the first one that fired (in the order they were added) is raised.

    It also carries the fast paths' requests for an exact route (the CRF's scaled recursion reporting an underflow),
    read in the same synchronisation: `settle()` then returns True and `exact` is set for the second computation.

    Opened by `value_checks()`: the outermost forward owns it, the inner ones (the encoder under a head, the CRF's
    methods) join it. Under tracing (torch.compile, torch.export) nothing is added: no value-dependent branches there.
    """

    def __init__(self, enabled: bool = True):
        self.depth = 0
        self.enabled = enabled  # False: the inputs are trusted (`set_value_checks`); fast paths still report
        self.exact = False  # set by `settle` after a fast path reported that it cannot be trusted on these inputs
        self._requested = False  # a request for the exact route, read and not yet handed to the owner
        self._flags: list[torch.Tensor] = []
        self._on_fire: list[Callable[[], None] | None] = []  # raises the error; None: a request for the exact route

    def refuse(self, bad: torch.Tensor, name: str, problem: str, values: torch.Tensor) -> None:
        """A `raise_at_first(bad, name, problem, values)`, deferred to the read."""
        self.add(bad.any(), lambda: raise_at_first(bad, name, problem, values))

    def add(self, fired: torch.Tensor, on_fire: Callable[[], None] | None) -> None:
        """A flag (a 0-d bool tensor) and what raises its error when it holds (None: take the exact route)."""
        if not is_tracing() and (self.enabled or on_fire is None):
            self._flags.append(fired)
            self._on_fire.append(on_fire)

    def read(self, *values: torch.Tensor) -> list:
        """One synchronisation: raise the first error that fired (noting requests for the exact route) and return
        `values` (1-d integer tensors read along, e.g. the lengths a packed recurrence needs) as lists."""
        flags, on_fire, self._flags, self._on_fire = self._flags, self._on_fire, [], []
        if not flags and not values:
            return []
        device = (flags or values)[0].device
        parts = [torch.stack([flag.to(device, torch.long).reshape(()) for flag in flags])] if flags else []
        host = torch.cat([*parts, *(value.to(device, torch.long) for value in values)]).tolist()
        for fired, raise_error in zip(host, on_fire):
            if fired and raise_error is not None:
                raise_error()
        self._requested |= any(fired and raise_error is None for fired, raise_error in zip(host, on_fire))
        found, offset = [], len(flags)
        for value in values:
            found.append(host[offset : offset + value.numel()])
            offset += value.numel()
        return found

    def settle(self) -> bool:
        """The owner's read at the end of its computation; True when a fast path asked for the exact route (`exact`
        is then set: compute again). A joined forward leaves the read to the owner and gets False."""
        if self.depth > 1:
            return False
        self.read()
        if not self._requested:
            return False
        self._requested, self.exact = False, True
        return True


_OPEN = threading.local()
_POLICY = {"checked": None}  # forwards still to check: None = every one (`set_value_checks`)


def set_value_checks(enabled: bool | int = True) -> None:
    """Whether forwards check their input values (ids in range, masks of 0/1, labels, finite emissions, gold paths
    the constraints allow): `True` (the default) every forward, `False` none, an int n the next n forwards of this
    process, then none (a training run's first batches, where a data bug shows).

    The checks cost one host read per forward, fused: nothing on a CPU, a drained launch queue on a GPU. Without
    them a bad id reaches the embedding or the loss: torch's `IndexError: index out of range in self` on a CPU, a
    device-side assert on a GPU (`CUDA error: device-side assert triggered`, which ends the process), and a label
    outside the tag set, a NaN emission or a gold path the constraints forbid gives a wrong or NaN loss without a
    word. A CRF step still reads its underflow flag (an exactness guard, not an input check).
    """
    if isinstance(enabled, bool):
        _POLICY["checked"] = None if enabled else 0
    elif isinstance(enabled, int) and enabled >= 0:
        _POLICY["checked"] = enabled
    else:
        raise ValueError(f"set_value_checks takes True, False or a number of forwards >= 0, got {enabled!r}")


def _next_forward_checked() -> bool:
    remaining = _POLICY["checked"]
    if remaining is None:
        return True
    _POLICY["checked"] = max(remaining - 1, 0)
    return remaining > 0


@contextmanager
def value_checks() -> Iterator[ValueChecks]:
    """The `ValueChecks` of the forward pass in progress: opened here by the outermost forward, joined by the inner
    ones. The owner's checks left unread when it returns are read then."""
    checks = getattr(_OPEN, "checks", None) or ValueChecks(_next_forward_checked())
    _OPEN.checks = checks
    checks.depth += 1
    try:
        yield checks
        if checks.depth == 1:
            checks.read()
            if checks._requested:  # nobody took the exact route that a fast path asked for: never return its result
                raise RuntimeError("a fast path reported an underflow that its caller did not handle")
    finally:
        checks.depth -= 1
        if checks.depth == 0:
            _OPEN.checks = None


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
) -> torch.Tensor:
    """Refuse ids outside [0, size) (other than `ignore`; only where `where` holds, if given) before an embedding or
    a loss indexes with them: torch would say "index out of range in self", or trip a device-side assert on a GPU.
    Float or bool ids are refused at once; the values are checked with the forward's other checks (`value_checks`),
    so the ids returned are safe to index with until then (a bad id is replaced by `ignore`, or 0). For 3-D ids
    (char_ids) the whole word is shown."""
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got {ids.dtype}")
    ids = ids.long()  # uint8 ids index as a boolean mask, and cannot hold the -100 that replaces a bad one
    with value_checks() as checks:
        if is_tracing() or not checks.enabled:
            return ids
        bad = (ids < 0) | (ids >= size)
        if ignore is not None:
            bad &= ids != ignore
        if where is not None:
            bad &= where
        checks.refuse(bad.flatten(2).any(-1) if ids.dim() > 2 else bad, name, problem, ids)
    return ids.masked_fill(bad, 0 if ignore is None else ignore)


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
        # original position -> compact position: real tokens first, then the padding, each in order (a stable
        # partition by counting, no sort: cheaper, and exportable to ONNX) ...
        real_before = mask.long().cumsum(1)  # (B, T)
        self.to_compact = torch.where(mask, real_before - 1, self.lengths.unsqueeze(1) + positions - real_before)
        # ... and its inverse. Right padding is compact already, but telling would cost a host sync: gather anyway.
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
        return self._gather(values, self.to_original)

    def restore(self, values: torch.Tensor, fill: float = 0) -> torch.Tensor:
        """Compact layout -> original positions, `fill` where the mask is 0."""
        mask = self.original_mask if values.dim() == 2 else self.original_mask.unsqueeze(-1)
        return torch.where(mask, self._gather(values, self.to_compact), fill)

    def reversed(self, values: torch.Tensor) -> torch.Tensor:
        return self._gather(values, self.reverse)
