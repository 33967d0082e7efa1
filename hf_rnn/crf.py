"""A linear-chain CRF in pure torch: exact log-likelihood, Viterbi and k-best decoding, posterior marginals, and hard
constraints (from a label scheme: `schemes.scheme_constraints`).

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

import torch
from torch import nn

from .masking import MaskCompaction, ValueChecks, check_ids, is_tracing, real_tokens, value_checks

# Score of each disallowed move in a *gold* path (bad data): a huge but finite loss instead of inf/NaN. The partition
# function, the marginals and decoding exclude disallowed moves outright (-inf), so no score can bring them back.
PENALTY = -10000.0


def _reachable(first: torch.Tensor, graph: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, C) bool: which tags some allowed path can be in at each step, from allowed first tags `first`, by
    doubling (the rows for steps [n, 2n) are those for [0, n) through graph^n): log2(steps) products, no branch on
    values."""
    rows = first.to(graph.dtype).unsqueeze(0)  # (1, C), 0/1
    power = graph  # graph^n, 0/1
    while rows.size(0) < steps:
        rows = torch.cat([rows, (rows @ power).clamp(max=1)])
        power = (power @ power).clamp(max=1)
    return rows[:steps] > 0


def _chain(first: torch.Tensor, emissions: torch.Tensor, kernel: torch.Tensor, checked: torch.Tensor):
    """Normalised messages of the recursion m_0 ∝ exp(first), m_t ∝ (m_{t-1} @ K) * exp(E_t), over (T, B, C).

    Each step costs a matrix product, a product, a sum and a division. Returns the messages (each sums to 1 over the
    tags), their log-normalisers (T, B, 1) relative to `kernel` = exp(A - scale) and exp(E - peak), and a flag (0-d)
    that holds when an entry that `checked` marks (tags some allowed path reaches, at real positions) fell below the
    smallest normal float: only extreme scores do that (a path family ~90 nats behind that a constraint later makes
    the only way forward), and the caller then takes the exact log-space route.
    """
    seq_len, batch_size, _ = emissions.shape
    peak = emissions.max()
    scaled = torch.exp(emissions - peak)  # (T, B, C)
    messages = torch.empty_like(emissions)
    norms = emissions.new_empty(seq_len, batch_size, 1)
    first_peak = _finite_max(first, dim=-1)  # (B, 1)
    messages[0] = torch.exp(first - first_peak)
    steps, step_scaled, step_norms = messages.unbind(0), scaled.unbind(0), norms.unbind(0)  # views, made once
    for t in range(seq_len):
        if t > 0:
            torch.mm(steps[t - 1], kernel, out=steps[t])
            steps[t].mul_(step_scaled[t])
        torch.sum(steps[t], -1, keepdim=True, out=step_norms[t])
        steps[t].div_(step_norms[t])
    underflow = (~(messages >= torch.finfo(messages.dtype).tiny) & checked).any()  # also NaN from a 0 norm
    log_norms = torch.log(norms) + peak
    log_norms[0] = torch.log(norms[0]) + first_peak
    return messages, log_norms, underflow


class _Chains:
    """Forward and backward messages of a compact, right-padded batch, time-major.

    alpha_t ∝ `alpha[t]`; `log_alpha_scale` turns them into log-potentials. The backward messages are computed on
    each row reversed within its length (`mirrored`), so every row starts at step 0 and no step needs a mask.
    """

    def __init__(self, emissions: torch.Tensor, lengths: torch.Tensor, reverse: torch.Tensor, transitions, start, end):
        seq_len = emissions.size(1)
        self.lengths, self.transitions, self.start, self.end = lengths, transitions, start, end
        self.scale = _finite_max(transitions)
        # (C, C), exact zeros for disallowed (-inf) transitions; in the emissions' dtype for the matrix products
        self.kernel = torch.exp(transitions - self.scale).to(emissions.dtype)
        self.allowed = torch.isfinite(transitions).to(emissions.dtype)
        self.valid = (torch.arange(seq_len, device=emissions.device).unsqueeze(1) < lengths).unsqueeze(-1)  # (T, B, 1)
        self.by_time = emissions.transpose(0, 1).contiguous()  # (T, B, C)
        self.mirror_index = reverse.T.unsqueeze(-1).expand_as(self.by_time)  # (T, B, C)
        checked = self.valid & _reachable(torch.isfinite(start), self.allowed, seq_len).unsqueeze(1)
        *self.forward, self.underflow = _chain(start + self.by_time[0], self.by_time, self.kernel, checked)
        self.found = None  # the marginals, when computed for the gradient

    def log_z(self) -> torch.Tensor:
        """log Z per row (B,), from the forward messages at each row's last position; 0 for an empty row."""
        alpha, log_norms = self.forward
        batch_size = alpha.size(1)
        rows = torch.arange(batch_size, device=alpha.device)
        last = (self.lengths - 1).clamp(min=0)
        offsets = log_norms.squeeze(-1).clone()  # (T, B); a copy: log_z reads the messages, never changes them
        offsets[1:] += self.scale
        log_scale = offsets.cumsum(0)[last, rows]  # (B,)
        end_peak = _finite_max(self.end)
        log_z = log_scale + torch.log((alpha[last, rows] * torch.exp(self.end - end_peak)).sum(-1)) + end_peak
        return torch.where(self.lengths > 0, log_z, torch.zeros_like(log_z))

    def marginals(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unary marginals P(y_t = j) (T, B, C), the factors of the pairwise ones: alpha_{t-1} (T-1, B, C) and
        u_t (T-1, B, C), with P(y_{t-1} = i, y_t = j) = alpha_{t-1}(i) K_ij u_t(j), and a flag (0-d) that holds when
        they cannot be trusted (an underflow, here or in the forward messages)."""
        alpha, _ = self.forward
        mirrored = self.by_time.gather(0, self.mirror_index)  # (T, B, C)
        checked = self.valid & _reachable(torch.isfinite(self.end), self.allowed.T, mirrored.size(0)).unsqueeze(1)
        backward = _chain(self.end + mirrored[0], mirrored, self.kernel.T.contiguous(), checked)
        # gamma_s = beta + emission at the mirrored position; P_t ∝ (alpha_{t-1} @ K) * gamma_{mirror(t)}
        gamma = backward[0].gather(0, self.mirror_index)  # (T, B, C), back in time order
        incoming = torch.empty_like(gamma)
        incoming[0] = torch.exp(self.start - _finite_max(self.start))
        torch.matmul(alpha[:-1], self.kernel, out=incoming[1:])
        unnormalised = incoming * gamma
        totals = unnormalised.sum(-1, keepdim=True)  # (T, B, 1)
        untrusted = self.underflow | backward[2] | ((totals <= 0) & self.valid).any()
        marginals = (unnormalised / totals).masked_fill(~self.valid, 0.0)
        return marginals, alpha[:-1], gamma[1:] / totals[1:], untrusted


def _log_partition_exact(emissions, lengths, transitions, start, end) -> torch.Tensor:
    """log Z by the textbook log-space recursion (`semiring_scan` over one-position segments), differentiated by
    autograd. Slow but immune to underflow: used only when the fast path reports one."""
    _, alpha = semiring_scan(emissions.unsqueeze(2), transitions, start, maximum=False)  # (T, B, C)
    rows = torch.arange(emissions.size(0), device=emissions.device)
    log_z = _logsumexp(alpha[(lengths - 1).clamp(min=0), rows] + end, dim=-1)
    return torch.where(lengths > 0, log_z, torch.zeros_like(log_z))


def semiring_reduce(x: torch.Tensor, dim: int, maximum: bool) -> torch.Tensor:
    """The semiring's sum: max, or a logsumexp that gives -inf (and a zero gradient) over only -inf."""
    return x.amax(dim) if maximum else _logsumexp(x, dim)


def semiring_scan(scores: torch.Tensor, transitions: torch.Tensor, start: torch.Tensor, maximum: bool):
    """The forward recursion of linear-chain and semi-Markov CRFs, in the (logsumexp, +) or the (max, +) semiring,
    over compact segment scores (B, T, L, C): `scores[b, t, l, c]` scores the segment of length l + 1 ending at t
    labelled c (-inf where impossible; L = 1 for a linear chain, whose segments are its positions).

    incoming[t, b, c]: the semiring sum of the scores of the prefixes [0, t) followed by a segment labelled c that
    starts at t (the start score at t = 0); alpha[t, b, c]: of the prefixes [0, t] ending in a segment labelled c.
    Returns `(incoming, alpha)` (T, B, C) each and, with `maximum`, the Viterbi pointers: the best previous label
    (T, B, C; of a segment starting at t) and the best segment length - 1 (T, B, C; of one ending at t).
    Steps past a row's length hold values of no use (the caller reads real positions only).
    """
    batch_size, seq_len, max_length, num_labels = scores.shape
    if seq_len == 0:  # no step: empty tables (torch.stack refuses an empty list)
        empty = scores.new_empty(0, batch_size, num_labels)
        return (empty, empty) if not maximum else (empty, empty, empty.long(), empty.long())
    incoming, alpha, previous, lengths = [], [], [], []
    for t in range(seq_len):
        if t == 0:
            incoming.append(start.expand(batch_size, num_labels))
        else:
            candidates = alpha[-1].unsqueeze(-1) + transitions  # (B, C', C)
            incoming.append(semiring_reduce(candidates, 1, maximum))
            if maximum:
                previous.append(candidates.argmax(1))
        span = min(max_length, t + 1)
        # segments ending at t of length l + 1 start at t - l: (B, span, C)
        ends_here = torch.stack(incoming[t - span + 1 :][::-1], 1) + scores[:, t, :span]
        alpha.append(semiring_reduce(ends_here, 1, maximum))
        if maximum:
            lengths.append(ends_here.argmax(1))
    incoming, alpha = torch.stack(incoming), torch.stack(alpha)
    if not maximum:
        return incoming, alpha
    previous = torch.stack([torch.zeros_like(lengths[0]), *previous])
    return incoming, alpha, previous, torch.stack(lengths)


def _finite_max(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The largest finite entry (over `dim`, kept), 0 where there is none: a safe shift before exp() when -inf marks
    disallowed moves."""
    peak = x.max() if dim is None else x.amax(dim, keepdim=True)
    return torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """`torch.logsumexp`, except that a slice of only -inf (a tag no allowed path reaches) gets -inf with a zero
    gradient instead of NaN."""
    peak = _finite_max(x, dim).detach()
    total = torch.exp(x - peak).sum(dim)
    reached = total > 0
    return torch.where(reached, torch.log(torch.where(reached, total, 1.0)) + peak.squeeze(dim), float("-inf"))


class _LogPartition(torch.autograd.Function):
    """log Z with a hand-written gradient (the marginals, computed with log Z so that one host read checks both for
    underflow), so autograd never replays the time loops."""

    @staticmethod
    def forward(ctx, emissions, transitions, start, end, chains):
        ctx.chains = chains
        ctx.save_for_backward(emissions, transitions, start, end)
        return chains.log_z()

    @staticmethod
    def backward(ctx, grad_log_z):
        chains = ctx.chains
        marginals, alpha_previous, incoming_weights, _ = chains.found  # trusted: the caller read the flag
        weight = grad_log_z.view(1, -1, 1)  # (1, B, 1)
        grad_emissions = (marginals * weight).transpose(0, 1)  # (B, T, C)
        grad_start = (marginals[0] * weight[0]).sum(0)
        rows = torch.arange(marginals.size(1), device=marginals.device)
        grad_end = (marginals[(chains.lengths - 1).clamp(min=0), rows] * weight[0]).sum(0)
        num_tags = marginals.size(-1)
        right = (incoming_weights * weight * chains.valid[1:]).reshape(-1, num_tags)
        grad_transitions = chains.kernel * (alpha_previous.reshape(-1, num_tags).T @ right)
        return grad_emissions, grad_transitions, grad_start, grad_end, None


class LinearChainCRF(nn.Module):
    """Linear-chain CRF over `num_tags` tags: local score ψ(y_{m-1}, y_m) = emission + transition.

    Args:
        num_tags: number of tags C.
        constraints: optional `(allowed_transitions (C x C), allowed_start (C), allowed_end (C))` booleans, e.g.
            from [`schemes.scheme_constraints`]. Disallowed moves never appear in decoded paths and carry no probability.
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

    def _prepare(
        self, emissions: torch.Tensor, mask: torch.Tensor | MaskCompaction | None, checks: ValueChecks
    ) -> tuple[torch.Tensor, MaskCompaction]:
        """Validate, upcast and compact: real positions to the left, zeros after each row's length. `mask` may come
        compacted already (the tagger compacts its chain once for the loss, the decoding and the logits)."""
        if emissions.dim() != 3 or emissions.size(-1) != self.num_tags:
            raise ValueError(f"emissions must be (batch, seq_len, {self.num_tags}), got {tuple(emissions.shape)}")
        compaction = mask if isinstance(mask, MaskCompaction) else None
        mask = real_tokens(mask, emissions.shape[:2], emissions.device) if compaction is None else mask.original_mask
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be {tuple(emissions.shape[:2])} like emissions, got {tuple(mask.shape)}")
        checks.refuse(mask & ~torch.isfinite(emissions).all(-1), "emissions", "is not finite", emissions)
        compaction = compaction or MaskCompaction(mask)
        emissions = emissions.to(torch.promote_types(emissions.dtype, torch.float32))
        compact = compaction.compact(emissions).masked_fill(~compaction.compact_mask.unsqueeze(-1), 0.0)
        return compact, compaction

    def _check_tags(self, tags: torch.LongTensor, compaction: MaskCompaction) -> torch.LongTensor:
        """The tags, safe to index with (a bad one is refused at the forward's read, and reads as 0 until then)."""
        if tags.shape != compaction.original_mask.shape:
            raise ValueError(
                f"tags must be {tuple(compaction.original_mask.shape)} like the mask, got {tuple(tags.shape)}"
            )
        problem = f"is not a tag id in [0, num_tags={self.num_tags}) (mask it to skip it)"
        return check_ids(tags, self.num_tags, "tags", problem, where=compaction.original_mask)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z, the log-sum of the scores of every allowed tag path: (B,); 0 for a row with no unmasked position."""
        with torch.autocast(emissions.device.type, enabled=False), value_checks() as checks:
            compact, compaction = self._prepare(emissions, mask, checks)
            log_z = self._log_partition(compact, compaction, checks, *self._scores(float("-inf")))
            if checks.settle():  # the fast recursion underflowed: the exact one
                log_z = self._log_partition(compact, compaction, checks, *self._scores(float("-inf")))
            return log_z

    def log_likelihood(
        self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(tags | emissions) per sequence: (B,). Differentiable; 0 for a row with no unmasked position.

        A gold path that breaks the constraints (bad data) scores each forbidden move as `PENALTY` (-1e4): a finite
        loss, far below any allowed path's. [`broken_move`] finds such paths.
        """
        with torch.autocast(emissions.device.type, enabled=False), value_checks() as checks:
            compact, compaction = self._prepare(emissions, mask, checks)  # once for both terms
            tags = self._check_tags(tags, compaction)
            if compact.numel() == 0:
                return compact.sum((1, 2))  # zeros (B,), still attached to the graph
            gold = self._path_score(tags, compact, compaction, *self._scores(PENALTY))
            log_z = self._log_partition(compact, compaction, checks, *self._scores(float("-inf")))
            if checks.settle():  # the fast recursion underflowed: the exact one (a tagger settles for itself)
                log_z = self._log_partition(compact, compaction, checks, *self._scores(float("-inf")))
            return gold - log_z

    @staticmethod
    def _log_partition(
        compact, compaction: MaskCompaction, checks: ValueChecks, transitions, start, end
    ) -> torch.Tensor:
        """The fast scaled recursion, whose underflow flag goes with the forward's checks (and its marginals, for the
        gradient, computed now so that the same read covers them); the exact log-space one once the checks asked
        for it, and under tracing, where the compiler differentiates it (no branch on values there)."""
        if compact.numel() == 0:
            return compact.sum((1, 2))
        if is_tracing() or checks.exact:
            return _log_partition_exact(compact, compaction.lengths, transitions, start, end)
        needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (compact, transitions, start, end))
        with torch.no_grad():
            chains = _Chains(compact, compaction.lengths, compaction.reverse, transitions, start, end)
            chains.found = chains.marginals() if needs_grad else None
        checks.add(chains.underflow if chains.found is None else chains.found[3], None)
        return _LogPartition.apply(compact, transitions, start, end, chains)

    @staticmethod
    def _path_score(tags, compact, compaction: MaskCompaction, transitions, start, end) -> torch.Tensor:
        valid = compaction.compact_mask  # (B, T)
        tags = compaction.compact(tags).masked_fill(~valid, 0)  # (B, T)
        score = (compact.gather(-1, tags.unsqueeze(-1)).squeeze(-1) * valid).sum(1)
        score = score + (transitions[tags[:, :-1], tags[:, 1:]] * valid[:, 1:]).sum(1)
        rows = torch.arange(tags.size(0), device=tags.device)
        last = tags[rows, (compaction.lengths - 1).clamp(min=0)]
        return score + (start[tags[:, 0]] + end[last]) * (compaction.lengths > 0)

    def forward(
        self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Calling the module gives the per-sequence log-likelihood, as in pytorch-crf (without its reduction)."""
        return self.log_likelihood(emissions, tags, mask)

    @torch.no_grad()
    def broken_moves(self, tags: torch.LongTensor, mask: torch.Tensor | MaskCompaction | None = None) -> torch.Tensor:
        """(B, T + 1) bool, on the device: the moves of the given tag paths that the constraints forbid, at compact
        positions: into position t (t = 0: the first tag), then out of each row's last position."""
        compaction = (
            mask if isinstance(mask, MaskCompaction) else MaskCompaction(real_tokens(mask, tags.shape, tags.device))
        )
        tags = self._check_tags(tags, compaction)
        valid, lengths = compaction.compact_mask, compaction.lengths  # (B, T), (B,)
        compact = compaction.compact(tags).masked_fill(~valid, 0)  # (B, T)
        rows = torch.arange(compact.size(0), device=compact.device)
        last = compact[rows, (lengths - 1).clamp(min=0)] if compact.size(1) else lengths  # (B,)
        return torch.cat(
            [
                (~self.allowed_start[compact[:, :1]]) & valid[:, :1],
                (~self.allowed_transitions[compact[:, :-1], compact[:, 1:]]) & valid[:, 1:],
                ((~self.allowed_end[last]) & (lengths > 0)).unsqueeze(1),
            ],
            dim=1,
        )

    @torch.no_grad()
    def broken_move(
        self, tags: torch.LongTensor, mask: torch.Tensor | None = None
    ) -> tuple[int, int, int | None, int | None] | None:
        """The first move of the given tag paths that the constraints forbid, or None if they are all allowed.

        Returns `(row, position, previous_tag, tag)` at original positions (masked ones are skipped):
        `previous_tag=None` for a forbidden first tag, `tag=None` for a forbidden last tag (at the last position).
        """
        mask = real_tokens(mask, tags.shape, tags.device)
        with value_checks() as checks:  # bad tag ids are refused before the moves are read
            broken = self.broken_moves(tags, mask)
            checks.read()
        if broken.numel() == 0 or not bool(broken.any()):
            return None
        row, step = broken.nonzero()[0].tolist()
        positions = mask[row].nonzero().squeeze(1).tolist()  # compact position -> original position
        path = [int(tags[row, position]) for position in positions]
        if step == tags.size(1):
            return row, positions[-1], path[-1], None
        return row, positions[step], path[step - 1] if step > 0 else None, path[step]

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior P(y_t = j | x) by forward-backward: (B, T, C), rows sum to 1, zeros at masked positions."""
        with torch.autocast(emissions.device.type, enabled=False), value_checks() as checks:
            compact, compaction = self._prepare(emissions, mask, checks)
            if compact.numel() == 0:
                return torch.zeros_like(compact)
            transitions, start, end = self._scores(float("-inf"))
            chains = _Chains(compact, compaction.lengths, compaction.reverse, transitions, start, end)
            marginals, _, _, untrusted = chains.marginals()
            (untrusted,) = checks.read(untrusted.view(1))  # with the checks so far (it is not a step's path)
            if untrusted[0]:  # marginals are the gradient of log Z with respect to the emissions
                with torch.enable_grad():
                    compact.requires_grad_()
                    log_z = _log_partition_exact(compact, compaction.lengths, transitions, start, end)
                    marginals = torch.autograd.grad(log_z.sum(), compact)[0].transpose(0, 1)
            return compaction.restore(marginals.transpose(0, 1), fill=0.0)

    @torch.no_grad()
    def max_marginals(
        self, emissions: torch.Tensor, mask: torch.Tensor | None = None, path: torch.LongTensor | None = None
    ) -> torch.Tensor:
        """Max-marginal scores (B, T, C): the score of the best allowed path through tag j at position t (-inf where
        none is allowed), 0 at masked positions. Their argmax at each position is a Viterbi path, so they serve as
        `logits` that per-token argmax tools (transformers' token-classification pipeline, run_ner-style metrics)
        read correctly. Given `path` (from `decode`), ties are broken toward it: then the argmax *is* that path.
        """
        with torch.autocast(emissions.device.type, enabled=False), value_checks() as checks:
            compact, compaction = self._prepare(emissions, mask, checks)
            if compact.numel() == 0:
                return torch.zeros_like(compact)
            transitions, start, end = self._scores(float("-inf"))
            forward = _max_product(compact, transitions, start)  # (T, B, C)
            path = None if path is None else compaction.compact(path)
            return compaction.restore(_max_marginals(compact, compaction, forward, transitions, end, path), fill=0.0)

    @torch.no_grad()
    def decode_with_max_marginals(
        self, emissions: torch.Tensor, mask: torch.Tensor | MaskCompaction | None = None
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """`decode` and `max_marginals(..., path)` together, from one forward max-product pass (Viterbi's own) and
        one backward: what a tagger's evaluation returns as `predictions` and `logits`."""
        with torch.autocast(emissions.device.type, enabled=False), value_checks() as checks:
            compact, compaction = self._prepare(emissions, mask, checks)
            if compact.numel() == 0:
                return compaction.restore(compact[..., 0].long(), fill=-100), torch.zeros_like(compact)
            transitions, start, end = self._scores(float("-inf"))
            paths, _, history = _viterbi(compact, compaction.lengths, transitions, start, end, k=1)
            path = paths[:, 0]  # (B, T), compact
            scores = _max_marginals(compact, compaction, history[:, :, 0], transitions, end, path)
            return compaction.restore(path, fill=-100), compaction.restore(scores, fill=0.0)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | MaskCompaction | None = None) -> torch.LongTensor:
        """Viterbi: the best tag path, (B, T), -100 at masked positions."""
        paths, _ = self.top_k(emissions, mask, k=1)
        return paths[:, 0]

    @torch.no_grad()
    def top_k(
        self, emissions: torch.Tensor, mask: torch.Tensor | MaskCompaction | None = None, k: int = 1
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """The k best tag paths, best first: paths (B, k, T) with -100 at masked positions, and their scores (B, k).

        When a row has fewer than k allowed paths, the missing ones have score -inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with torch.autocast(emissions.device.type, enabled=False), value_checks() as checks:
            compact, compaction = self._prepare(emissions, mask, checks)
            batch_size, seq_len, _ = compact.shape
            if compact.numel() == 0:
                return compact.new_full((batch_size, k, seq_len), -100, dtype=torch.long), compact.new_zeros(
                    batch_size, k
                )
            transitions, start, end = self._scores(float("-inf"))
            paths, scores, _ = _viterbi(compact, compaction.lengths, transitions, start, end, k)  # (B, k, T), (B, k)
            restored = [compaction.restore(paths[:, rank], fill=-100) for rank in range(k)]
            return torch.stack(restored, dim=1), scores


def _max_marginals(compact, compaction: MaskCompaction, forward, transitions, end, path) -> torch.Tensor:
    """(B, T, C) compact max-marginals from the forward max-product scores `forward` (T, B, C) and a backward pass
    over each row reversed within its length; ties broken toward `path` (B, T; compact) if given."""
    by_time = compact.transpose(0, 1)  # (T, B, C)
    mirror = compaction.reverse.T.unsqueeze(-1).expand_as(by_time)  # each row reversed within its length
    mirrored = by_time.gather(0, mirror).transpose(0, 1)
    backward = _max_product(mirrored, transitions.T, end).gather(0, mirror)  # best suffix from j at t
    scores = (forward + backward - by_time).transpose(0, 1)  # (B, T, C): the emission was counted twice
    if path is None:
        return scores
    on_path = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, path.clamp(min=0).unsqueeze(-1), True)
    best = scores.amax(-1, keepdim=True)  # (B, T, 1)
    finfo = torch.finfo(best.dtype)  # one ulp below the best, at least (ONNX has no nextafter)
    below = best - (best.abs() * finfo.eps + finfo.tiny)
    return torch.where(on_path, best, torch.minimum(scores, below))


def _max_product(emissions: torch.Tensor, transitions: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """(T, B, C) best scores of the paths ending in each tag at each step, over compact emissions (B, T, C):
    m_0 = start + E_0, m_t = max_i(m_{t-1} + A) + E_t (`semiring_scan` over one-position segments)."""
    return semiring_scan(emissions.unsqueeze(2), transitions, start, maximum=True)[1]


def _viterbi(
    emissions, lengths, transitions, start, end, k: int
) -> tuple[torch.LongTensor, torch.Tensor, torch.Tensor]:
    """k-best max-product over compact emissions (B, T, C): paths (B, k, T) in compact layout, scores (B, k), and the
    best scores per state (T, B, k, C) (for k = 1, the forward max-product: the first half of the max-marginals).

    A state is a flat (rank, tag) index r * C + j. Each step is one broadcast add, one max (top-k for k > 1) written
    straight into `history`/`pointers`, and one add of the emissions; the backtrace is one gather per step, rows
    joining at their last position through pointers that keep the state past it. The add + max over (B, k*C, C) is
    the floor.
    """
    batch_size, seq_len, num_tags = emissions.shape
    device, states = emissions.device, k * num_tags
    first = emissions.new_full((batch_size, k, num_tags), float("-inf"))
    first[:, 0] = start + emissions[:, 0]
    step_emissions = emissions.transpose(0, 1).unsqueeze(2).unbind(0)  # T x (B, 1, C)
    if is_tracing():  # functional steps: `out=` would pin the batch size of an exported graph
        steps, step_pointers = [first], [torch.zeros_like(first, dtype=torch.long)]
        for t in range(1, seq_len):
            candidates = (steps[-1].unsqueeze(-1) + transitions).view(batch_size, states, num_tags)
            best_in, pointer = candidates.max(1, keepdim=True) if k == 1 else candidates.topk(k, dim=1)
            steps.append(best_in + step_emissions[t])
            step_pointers.append(pointer)
        history, pointers = torch.stack(steps), torch.stack(step_pointers)  # (T, B, k, C) each
    else:  # written in place into views made once (indexing history[t] would cost a select each time)
        history = torch.empty(seq_len, batch_size, k, num_tags, dtype=emissions.dtype, device=device)
        pointers = torch.empty(seq_len, batch_size, k, num_tags, dtype=torch.long, device=device)
        steps, step_pointers = history.unbind(0), pointers.unbind(0)
        steps[0].copy_(first)
        for t in range(1, seq_len):
            # candidates[b, (r, i), j] = history[t-1][b, r, i] + A[i, j]
            candidates = (steps[t - 1].unsqueeze(-1) + transitions).view(batch_size, states, num_tags)
            if k == 1:
                torch.max(candidates, dim=1, keepdim=True, out=(steps[t], step_pointers[t]))
            else:
                torch.topk(candidates, k, dim=1, out=(steps[t], step_pointers[t]))
            steps[t].add_(step_emissions[t])
    rows = torch.arange(batch_size, device=device)
    last = (lengths - 1).clamp(min=0)
    final = (history[last, rows] + end).view(batch_size, states)
    scores, best = final.topk(k, dim=-1)  # (B, k)

    # past a row's last position its pointers keep the state, so every row's backtrace starts at T - 1 from its best
    beyond = torch.arange(seq_len, device=device).view(-1, 1, 1) > last.view(1, -1, 1)  # (T, B, 1)
    keep = torch.arange(states, device=device)
    pointers = torch.where(beyond, keep, pointers.view(seq_len, batch_size, states))  # (T, B, k*C)
    if is_tracing():
        paths = [best]
        for t in range(seq_len - 1, 0, -1):
            paths.append(pointers[t].gather(1, paths[-1]))
        paths = torch.stack(paths[::-1])  # (T, B, k)
    else:
        paths = torch.empty(seq_len, batch_size, k, dtype=torch.long, device=device)
        paths[-1] = best
        step_paths, step_pointers = paths.unbind(0), pointers.unbind(0)
        for t in range(seq_len - 1, 0, -1):
            torch.gather(step_pointers[t], 1, step_paths[t], out=step_paths[t - 1])
    paths = paths % num_tags if k > 1 else paths
    scores = torch.where(lengths.view(-1, 1) > 0, scores, torch.zeros_like(scores))
    return paths.permute(1, 2, 0), scores, history
