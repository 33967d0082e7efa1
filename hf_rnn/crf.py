"""A linear-chain CRF in pure torch: exact log-likelihood, Viterbi and k-best decoding, posterior marginals, and hard
constraints from the label scheme.

Conventions follow pytorch-crf: `transitions[i, j]` scores tag i followed by tag j; `start_transitions` and
`end_transitions` score the first and last tag. Any mask pattern is valid (left or right padding, holes, a masked
first position): masked positions are skipped, so a sequence's score equals its score with the padding removed.

Speed comes from three choices, all exact:
- the forward recursion is a matrix product in scaled exp-space per step (`_log_matmul_exp`) instead of a
  logsumexp over a (B, C, C) tensor;
- the gradient of log Z is written by hand (forward-backward marginals), so autograd never replays the time loop;
- ragged lengths cost nothing inside the loops: rows are compacted to the left and the backward recursion runs over
  each row reversed within its length, so no step needs a mask.
Everything runs in float32 (float64 if given) even under autocast.

Shipped inside checkpoints with the modeling files: imports only torch and its flat siblings.
"""

from collections.abc import Sequence

import torch
from torch import nn

from .masking import MaskCompaction

# Score of a disallowed transition. Finite on purpose: exp() makes it an exact zero in the partition function, while
# a gold path that breaks a constraint (bad data) gets a huge but finite loss instead of inf/NaN. Decoding uses -inf.
PENALTY = -10000.0

SCHEMES = ("BIO", "IOB1", "BIOES", "BILOU")
_PREFIXES = {"BIO": "BI", "IOB1": "BI", "BIOES": "BIES", "BILOU": "BILU"}


def _split_tag(tag: str, scheme: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None). BILOU's L/U are read as BIOES's E/S."""
    if tag == "O":
        return "O", None
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or prefix not in _PREFIXES[scheme]:
        raise ValueError(f"label {tag!r} is not 'O' or one of {list(_PREFIXES[scheme])} + '-TYPE' for scheme {scheme}")
    return {"L": "E", "U": "S"}.get(prefix, prefix), kind


def scheme_constraints(labels: Sequence[str], scheme: str) -> tuple[list[list[bool]], list[bool], list[bool]]:
    """Allowed transitions (C x C), allowed first tags and allowed last tags of a label scheme.

    BIO (IOB2): `I-X` only after `B-X`/`I-X`, never first. IOB1: `B-X` only after `B-X`/`I-X` (it separates two
    adjacent chunks of one type), never first. BIOES/BILOU: after `B-X`/`I-X` only `I-X`/`E-X`; after anything else
    only `B-*`, `S-*` or `O`; never start on `I`/`E`, never end on `B`/`I`.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    tags = [_split_tag(label, scheme) for label in labels]

    def allowed(previous: tuple[str, str | None], current: tuple[str, str | None]) -> bool:
        (p, p_kind), (c, c_kind) = previous, current
        same_chunk = p in "BI" and p_kind == c_kind
        if scheme == "BIO":
            return c != "I" or same_chunk
        if scheme == "IOB1":
            return c != "B" or same_chunk
        if p in "BI":  # BIOES: inside a chunk, only continue or close it
            return c in "IE" and p_kind == c_kind
        return c in "BSO"

    transitions = [[allowed(p, c) for c in tags] for p in tags]
    if scheme in ("BIO", "IOB1"):
        start = [prefix != ("I" if scheme == "BIO" else "B") for prefix, _ in tags]
        end = [True] * len(tags)
    else:
        start = [prefix in "BSO" for prefix, _ in tags]
        end = [prefix in "ESO" for prefix, _ in tags]
    return transitions, start, end


def _reachable(first: torch.Tensor, graph: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, C) bool: which tags some allowed path can be in at each step, from allowed first tags `first`."""
    rows = [first]
    while len(rows) < steps:
        following = (rows[-1].to(graph.dtype) @ graph) > 0
        if torch.equal(following, rows[-1]):  # a fixed point: the same from here on
            rows += [following] * (steps - len(rows))
        else:
            rows.append(following)
    return torch.stack(rows)


def _chain_messages(
    first: torch.Tensor, emissions: torch.Tensor, kernel: torch.Tensor, scale: torch.Tensor, positive: torch.Tensor
) -> torch.Tensor | None:
    """log m_t = log(exp(log m_{t-1}) @ exp(A)) + E_t with log m_0 = `first`, for every step of (T, B, C) emissions.

    `kernel` is exp(A - scale). Each step's message is kept normalised in exp-space (a matrix product, a product,
    a sum and a division per step) and the log-normalisers are added up afterwards. That is exact unless a message
    entry underflows, which only extreme scores cause (e.g. a path family ~90 nats behind that a constraint later
    makes the only way forward); then an entry that must be positive (`positive`, (T, B, C) bool) comes out 0, and
    None is returned so that the caller can use the exact log-space recursion instead.
    """
    seq_len = emissions.size(0)
    peak = emissions.amax(-1, keepdim=True)  # (T, B, 1)
    scaled = torch.exp(emissions - peak)  # (T, B, C)
    messages = torch.empty_like(emissions)
    norms = emissions.new_empty(seq_len, emissions.size(1), 1)
    first_peak = first.amax(-1, keepdim=True)
    messages[0] = torch.exp(first - first_peak)
    steps, step_scaled, step_norms = messages.unbind(0), scaled.unbind(0), norms.unbind(0)  # views, made once
    for t in range(seq_len):
        if t > 0:
            torch.mm(steps[t - 1], kernel, out=steps[t])
            steps[t].mul_(step_scaled[t])
        torch.sum(steps[t], -1, keepdim=True, out=step_norms[t])
        steps[t].div_(step_norms[t])
    smallest = torch.where(positive, messages, 1.0).amin(-1)  # (T, B)
    if not bool((smallest > 0).all()):
        return None
    offsets = torch.log(norms) + peak + scale  # (T, B, 1)
    offsets[0] = torch.log(norms[0]) + first_peak
    return torch.log(messages) + offsets.cumsum(0)


def _forward_backward(
    emissions: torch.Tensor, lengths: torch.Tensor, reverse: torch.Tensor, transitions, start, end
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Forward and backward log-messages over compact, right-padded emissions (B, T, C), or None on underflow.

    Returns log_alpha (B, T, C), log_beta (B, T, C) and log Z (B,). Positions at or after a row's length hold
    values that must be ignored. `reverse` maps each compact position to its mirror within the row's length.
    """
    batch_size, seq_len, num_tags = emissions.shape
    scale = transitions.max()
    kernel = torch.exp(transitions - scale)  # (C, C), exact zeros for disallowed transitions
    allowed = (transitions > PENALTY / 2).to(emissions.dtype)
    valid = (torch.arange(seq_len, device=emissions.device) < lengths.unsqueeze(1)).T.unsqueeze(-1)  # (T, B, 1)
    by_time = emissions.transpose(0, 1).contiguous()  # (T, B, C)
    positive = valid & _reachable(start > PENALTY / 2, allowed, seq_len).unsqueeze(1)
    log_alpha = _chain_messages(start + by_time[0], by_time, kernel, scale, positive)

    # beta runs left-to-right over each row reversed within its length, so every row starts at step 0;
    # gamma_s = beta'_s + E'_s has the same recursion as alpha, with the transposed kernel
    index = reverse.unsqueeze(-1).expand(-1, -1, num_tags)
    mirrored = emissions.gather(1, index).transpose(0, 1).contiguous()  # (T, B, C)
    positive = valid & _reachable(end > PENALTY / 2, allowed.T, seq_len).unsqueeze(1)
    log_gamma = _chain_messages(end + mirrored[0], mirrored, kernel.T.contiguous(), scale, positive)
    if log_alpha is None or log_gamma is None:
        return None
    log_alpha = log_alpha.transpose(0, 1)  # (B, T, C)
    log_beta = (log_gamma - mirrored).transpose(0, 1).gather(1, index)  # (B, T, C)

    rows = torch.arange(batch_size, device=emissions.device)
    log_z = torch.logsumexp(log_alpha[rows, (lengths - 1).clamp(min=0)] + end, dim=-1)  # (B,)
    return log_alpha, log_beta, torch.where(lengths > 0, log_z, torch.zeros_like(log_z))


def _log_partition_exact(emissions, lengths, transitions, start, end) -> torch.Tensor:
    """log Z by the textbook log-space recursion over (B, C, C) per step, differentiated by autograd.

    Slow but immune to underflow: used only when the fast path reports one.
    """
    batch_size, seq_len, _ = emissions.shape
    log_alpha = start + emissions[:, 0]  # (B, C)
    for t in range(1, seq_len):
        step = torch.logsumexp(log_alpha.unsqueeze(-1) + transitions, dim=1) + emissions[:, t]
        log_alpha = torch.where((t < lengths).unsqueeze(-1), step, log_alpha)
    log_z = torch.logsumexp(log_alpha + end, dim=-1)
    return torch.where(lengths > 0, log_z, torch.zeros_like(log_z))


class _LogPartition(torch.autograd.Function):
    """log Z from precomputed forward-backward messages, with the hand-written gradient (the marginals), so autograd
    never replays the time loops."""

    @staticmethod
    def forward(ctx, emissions, lengths, transitions, start, end, log_alpha, log_beta, log_z):
        ctx.save_for_backward(emissions, lengths, log_alpha, log_beta, log_z, transitions)
        return log_z.clone()

    @staticmethod
    def backward(ctx, grad_log_z):
        emissions, lengths, log_alpha, log_beta, log_z, transitions = ctx.saved_tensors
        batch_size, seq_len, num_tags = emissions.shape
        valid = torch.arange(seq_len, device=emissions.device) < lengths.unsqueeze(1)  # (B, T)
        weight = grad_log_z.unsqueeze(1) * valid  # (B, T)

        # unary marginals P(y_t = j) -> emissions, first tag -> start, last tag -> end
        marginals = torch.exp(log_alpha + log_beta - log_z.view(-1, 1, 1)).nan_to_num(0.0)  # (B, T, C)
        grad_emissions = marginals * weight.unsqueeze(-1)
        grad_start = grad_emissions[:, 0].sum(0)
        rows = torch.arange(batch_size, device=emissions.device)
        grad_end = grad_emissions[rows, (lengths - 1).clamp(min=0)].sum(0)

        # pairwise marginals summed over rows and steps: exp(alpha_{t-1}(i) + A_ij + E_t(j) + beta_t(j) - log Z),
        # factored as x_i * K_ij * y_j; each side is shifted to max 0 and the common factor is split evenly between
        # them, so neither overflows
        scale = transitions.max()
        kernel = torch.exp(transitions - scale)
        left = log_alpha[:, :-1]  # (B, T-1, C)
        right = emissions[:, 1:] + log_beta[:, 1:] - log_z.view(-1, 1, 1) + scale  # (B, T-1, C)
        left_max = left.amax(-1, keepdim=True).clamp(min=-1e30)
        right_max = right.amax(-1, keepdim=True).clamp(min=-1e30)
        common = ((left_max + right_max) / 2).clamp(max=80.0)
        x = torch.exp(left - left_max + common)
        y = torch.exp(right - right_max + common) * weight[:, 1:].unsqueeze(-1)
        x = x.nan_to_num(0.0).reshape(-1, num_tags)
        y = y.nan_to_num(0.0).reshape(-1, num_tags)
        grad_transitions = kernel * (x.T @ y)
        return grad_emissions, None, grad_transitions, grad_start, grad_end, None, None, None


class LinearChainCRF(nn.Module):
    """Linear-chain CRF over `num_tags` tags: local score ψ(y_{m-1}, y_m) = emission + transition.

    Args:
        num_tags: number of tags C.
        constraints: optional `(allowed_transitions (C x C), allowed_start (C), allowed_end (C))` booleans, e.g.
            from [`scheme_constraints`]. Disallowed moves never appear in decoded paths and carry no probability.
    """

    def __init__(self, num_tags: int, constraints: tuple | None = None):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.zeros(num_tags))
        self.end_transitions = nn.Parameter(torch.zeros(num_tags))
        self.register_buffer("allowed_transitions", torch.ones(num_tags, num_tags, dtype=torch.bool), persistent=False)
        self.register_buffer("allowed_start", torch.ones(num_tags, dtype=torch.bool), persistent=False)
        self.register_buffer("allowed_end", torch.ones(num_tags, dtype=torch.bool), persistent=False)
        if constraints is not None:
            self.set_constraints(*constraints)

    @torch.no_grad()
    def set_constraints(self, transitions=None, start=None, end=None) -> None:
        """Replace the allowed-move masks in place (so they keep the module's device); `None` allows every move."""
        shapes = [(self.num_tags, self.num_tags), (self.num_tags,), (self.num_tags,)]
        values = [
            torch.ones(shape, dtype=torch.bool) if value is None else torch.as_tensor(value, dtype=torch.bool)
            for value, shape in zip((transitions, start, end), shapes)
        ]
        for value, shape, name in zip(values, shapes, ("transitions", "start", "end")):
            if tuple(value.shape) != shape:
                raise ValueError(f"allowed {name} must have shape {shape}, got {tuple(value.shape)}")
        if not (values[1].any() and values[2].any()):
            raise ValueError("constraints must allow at least one first tag and one last tag")
        for buffer, value in zip((self.allowed_transitions, self.allowed_start, self.allowed_end), values):
            buffer.copy_(value)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={not bool(self.allowed_transitions.all())}"

    def _scores(self, fill: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition, start and end scores in float32 (at least), with `fill` at disallowed moves."""
        dtype = torch.promote_types(self.transitions.dtype, torch.float32)
        return (
            self.transitions.to(dtype).masked_fill(~self.allowed_transitions, fill),
            self.start_transitions.to(dtype).masked_fill(~self.allowed_start, fill),
            self.end_transitions.to(dtype).masked_fill(~self.allowed_end, fill),
        )

    def _prepare(self, emissions: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, MaskCompaction]:
        """Validate, upcast and compact: real positions to the left, zeros after each row's length."""
        if emissions.dim() != 3 or emissions.size(-1) != self.num_tags:
            raise ValueError(f"emissions must be (batch, seq_len, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be {tuple(emissions.shape[:2])} like emissions, got {tuple(mask.shape)}")
        compaction = MaskCompaction(mask)
        emissions = emissions.to(torch.promote_types(emissions.dtype, torch.float32))
        compact = compaction.compact(emissions).masked_fill(~compaction.compact_mask.unsqueeze(-1), 0.0)
        return compact, compaction

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z, the log-sum of the scores of every tag path: (B,); 0 for a row with no unmasked position."""
        with torch.autocast(emissions.device.type, enabled=False):
            compact, compaction = self._prepare(emissions, mask)
            transitions, start, end = self._scores(PENALTY)
            lengths = compaction.lengths
            with torch.no_grad():
                messages = _forward_backward(compact, lengths, compaction.reverse, transitions, start, end)
            if messages is None:
                return _log_partition_exact(compact, lengths, transitions, start, end)
            return _LogPartition.apply(compact, lengths, transitions, start, end, *messages)

    def path_score(self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised score of the given tag paths: (B,). Tags at masked positions are ignored (may be -100)."""
        with torch.autocast(emissions.device.type, enabled=False):
            compact, compaction = self._prepare(emissions, mask)
            transitions, start, end = self._scores(PENALTY)
            valid = compaction.compact_mask  # (B, T)
            tags = compaction.compact(tags).masked_fill(~valid, 0)  # (B, T)
            score = (compact.gather(-1, tags.unsqueeze(-1)).squeeze(-1) * valid).sum(1)
            score = score + (transitions[tags[:, :-1], tags[:, 1:]] * valid[:, 1:]).sum(1)
            rows = torch.arange(tags.size(0), device=tags.device)
            last = tags[rows, (compaction.lengths - 1).clamp(min=0)]
            nonempty = compaction.lengths > 0
            return score + (start[tags[:, 0]] + end[last]) * nonempty

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(tags | emissions) per sequence: (B,). Differentiable; 0 for a row with no unmasked position."""
        return self.path_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def forward(self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Calling the module gives the per-sequence log-likelihood, as in pytorch-crf (without its reduction)."""
        return self.log_likelihood(emissions, tags, mask)

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior P(y_t = j | x) by forward-backward: (B, T, C), rows sum to 1, zeros at masked positions."""
        with torch.autocast(emissions.device.type, enabled=False):
            compact, compaction = self._prepare(emissions, mask)
            transitions, start, end = self._scores(PENALTY)
            lengths = compaction.lengths
            messages = _forward_backward(compact, lengths, compaction.reverse, transitions, start, end)
            if messages is None:  # marginals are the gradient of log Z with respect to the emissions
                with torch.enable_grad():
                    compact.requires_grad_()
                    log_z = _log_partition_exact(compact, lengths, transitions, start, end)
                    probabilities = torch.autograd.grad(log_z.sum(), compact)[0]
            else:
                log_alpha, log_beta, log_z = messages
                probabilities = torch.exp(log_alpha + log_beta - log_z.view(-1, 1, 1)).nan_to_num(0.0)
            return compaction.restore(probabilities, fill=0.0)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.LongTensor:
        """Viterbi: the best tag path, (B, T), -100 at masked positions."""
        paths, _ = self.top_k(emissions, mask, k=1)
        return paths[:, 0]

    @torch.no_grad()
    def top_k(self, emissions: torch.Tensor, mask: torch.Tensor | None = None, k: int = 1) -> tuple[torch.LongTensor, torch.Tensor]:
        """The k best tag paths, best first: paths (B, k, T) with -100 at masked positions, and their scores (B, k).

        When a row has fewer than k allowed paths, the missing ones have score -inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with torch.autocast(emissions.device.type, enabled=False):
            compact, compaction = self._prepare(emissions, mask)
            transitions, start, end = self._scores(float("-inf"))
            paths, scores = _viterbi(compact, compaction.lengths, transitions, start, end, k)  # (B, k, T), (B, k)
            restored = [compaction.restore(paths[:, rank], fill=-100) for rank in range(k)]
            return torch.stack(restored, dim=1), scores


def _viterbi(emissions, lengths, transitions, start, end, k: int) -> tuple[torch.LongTensor, torch.Tensor]:
    """k-best max-product over compact emissions (B, T, C): paths (B, k, T) in compact layout, scores (B, k).

    A state is a flat (rank, tag) index r * C + j. Each step is one broadcast add, one max (top-k for k > 1) written
    straight into `history`/`pointers`, and one add of the emissions; rows are masked only in the cheap batched
    backtrace, where a row joins when t reaches its last position. The add + max over (B, k*C, C) is the floor.
    """
    batch_size, seq_len, num_tags = emissions.shape
    device = emissions.device
    by_time = emissions.transpose(0, 1)  # (T, B, C)
    history = emissions.new_full((seq_len, batch_size, k, num_tags), float("-inf"))  # best scores per state
    history[0, :, 0] = start + by_time[0]
    pointers = torch.empty(seq_len, batch_size, k, num_tags, dtype=torch.long, device=device)
    for t in range(1, seq_len):
        # candidates[b, (r, i), j] = history[t-1][b, r, i] + A[i, j]
        candidates = (history[t - 1].unsqueeze(-1) + transitions).view(batch_size, k * num_tags, num_tags)
        if k == 1:
            torch.max(candidates, dim=1, keepdim=True, out=(history[t], pointers[t]))
        else:
            torch.topk(candidates, k, dim=1, out=(history[t], pointers[t]))
        history[t].add_(by_time[t].unsqueeze(1))
    rows = torch.arange(batch_size, device=device)
    last = (lengths - 1).clamp(min=0)
    final = (history[last, rows] + end).view(batch_size, k * num_tags)
    scores, best = final.topk(k, dim=-1)  # (B, k)

    paths = torch.empty(seq_len, batch_size, k, dtype=torch.long, device=device)
    joins = last.view(-1, 1)
    state = best
    for t in range(seq_len - 1, -1, -1):
        state = torch.where(joins == t, best, state)
        paths[t] = state
        if t > 0:
            state = pointers[t].view(batch_size, k * num_tags).gather(1, state)
    paths = paths % num_tags if k > 1 else paths
    return paths.permute(1, 2, 0), torch.where(lengths.view(-1, 1) > 0, scores, torch.zeros_like(scores))
