"""A semi-Markov CRF (Sarawagi & Cohen 2004; as the output layer of a segmental RNN, Kong et al. 2016) in pure torch:
exact log-partition, Viterbi segmentation, segment and token marginals, and max-marginals.

A sentence of n positions is split into segments of 1..`max_segment_length` positions, each with one of C segment
labels. A segmentation's score is the sum of its segments' scores (given, from the encoder: `scores[b, j, l, c]` is
the segment of length l + 1 that ends at position j with label c, plus a learnt `length_scores[l, c]`) and of
`transitions[c', c]` between consecutive
segment labels, `start_transitions` and `end_transitions`. With `max_segment_length=1` it is a linear-chain CRF.

Every quantity comes from one recursion over end positions, run in the (logsumexp, +) or the (max, +) semiring
(`crf.semiring_scan`, which the linear-chain CRF's exact and max-product recursions share); the backward quantities
run the same recursion over each row reversed within its length.
Everything runs in float32 (float64 if given) even under autocast.

Shipped inside checkpoints with the modeling files: imports only torch and its flat siblings.
"""

import torch
from torch import nn

from .crf import semiring_reduce, semiring_scan
from .masking import MaskCompaction


def segment_spans(starts: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and last position (B, T) each of the segment holding each position, from where segments start
    (`starts`, (B, T) bool) over compact rows (`valid`: each row's real positions at the left)."""
    positions = torch.arange(starts.size(1), device=starts.device).expand_as(starts)  # (B, T)
    starts = starts | (positions == 0)
    first = torch.where(starts, positions, 0).cummax(1).values
    following = torch.cat([starts[:, 1:] | ~valid[:, 1:], torch.ones_like(starts[:, :1])], 1)  # a new one next
    last = torch.where(following, positions, starts.size(1)).flip(1).cummin(1).values.flip(1)
    return first, last


def _by_start(scores: torch.Tensor) -> torch.Tensor:
    """(B, T, L, C) indexed by end position -> by start position (-inf where the segment would end past T)."""
    out = torch.full_like(scores, float("-inf"))
    for length in range(min(scores.size(2), scores.size(1))):  # no segment is longer than the batch
        out[:, : scores.size(1) - length, length] = scores[:, length:, length]
    return out


class SemiMarkovCRF(nn.Module):
    """A semi-Markov CRF over `num_labels` segment labels and segments of up to `max_segment_length` positions.

    Conventions as [`LinearChainCRF`]: `transitions[i, j]` scores a segment labelled i followed by one labelled j;
    `start_transitions`/`end_transitions` the first and last segment's label. The segment scores come from outside
    (`scores`, (B, T, L, C) by end position and length - 1); any mask pattern is valid: masked positions are skipped.
    """

    def __init__(self, num_labels: int, max_segment_length: int):
        super().__init__()
        if num_labels < 1 or max_segment_length < 1:
            raise ValueError(f"num_labels and max_segment_length must be >= 1, got {num_labels}, {max_segment_length}")
        self.num_labels, self.max_segment_length = num_labels, max_segment_length
        self.transitions = nn.Parameter(torch.zeros(num_labels, num_labels))
        self.start_transitions = nn.Parameter(torch.zeros(num_labels))
        self.end_transitions = nn.Parameter(torch.zeros(num_labels))
        self.length_scores = nn.Parameter(torch.zeros(max_segment_length, num_labels))  # a bias per (length, label)

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}, max_segment_length={self.max_segment_length}"

    def _prepare(self, scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, MaskCompaction]:
        """Upcast and compact: each row's real positions to the left, -inf at segments that leave them."""
        shape = (self.max_segment_length, self.num_labels)
        if scores.dim() != 4 or tuple(scores.shape[2:]) != shape or mask.shape != scores.shape[:2]:
            raise ValueError(
                f"scores must be (batch, seq_len, {shape[0]}, {shape[1]}) with a (batch, seq_len) mask, got "
                f"{tuple(scores.shape)} and {tuple(mask.shape)}"
            )
        compaction = MaskCompaction(mask)
        compact = compaction.compact(scores.flatten(2)).view(scores.shape)
        compact = compact.to(torch.promote_types(compact.dtype, torch.float32)) + self.length_scores.to(compact.dtype)
        positions = torch.arange(scores.size(1), device=scores.device)
        starts = positions.view(1, -1, 1) - torch.arange(shape[0], device=scores.device).view(1, 1, -1)  # (1, T, L)
        inside = (starts >= 0) & compaction.compact_mask.unsqueeze(-1)  # (B, T, L)
        return compact.masked_fill(~inside.unsqueeze(-1), float("-inf")), compaction

    def _params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = torch.promote_types(self.transitions.dtype, torch.float32)
        return self.transitions.to(dtype), self.start_transitions.to(dtype), self.end_transitions.to(dtype)

    @staticmethod
    def _final(alpha: torch.Tensor, end: torch.Tensor, lengths: torch.Tensor, maximum: bool) -> torch.Tensor:
        """Semiring sum over the last label of alpha at each row's last position, with the end scores: (B,)."""
        if alpha.size(0) == 0:  # no position in any row
            return end.new_zeros(alpha.size(1))
        rows = torch.arange(alpha.size(1), device=alpha.device)
        total = semiring_reduce(alpha[(lengths - 1).clamp(min=0), rows] + end, -1, maximum)
        return torch.where(lengths > 0, total, torch.zeros_like(total))

    def log_partition(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z, the log-sum of the scores of every segmentation: (B,); 0 for a row with no unmasked position."""
        with torch.autocast(scores.device.type, enabled=False):
            compact, compaction = self._prepare(scores, mask)
            transitions, start, end = self._params()
            _, alpha = semiring_scan(compact, transitions, start, maximum=False)
            return self._final(alpha, end, compaction.lengths, maximum=False)

    def score(
        self, scores: torch.Tensor, mask: torch.Tensor, segments: list[list[tuple[int, int, int]]]
    ) -> torch.Tensor:
        """The score of one segmentation per row, `segments[b]` = its `(first, last, label)` in order, at compact
        positions (the k-th unmasked position is k): (B,). The caller checks the segments tile the row."""
        labels = torch.zeros(mask.shape, dtype=torch.long)
        starts = torch.zeros(mask.shape, dtype=torch.bool)
        for row, found in enumerate(segments):
            for first, last, label in found:
                labels[row, first : last + 1], starts[row, first] = label, True
        compaction = MaskCompaction(mask)  # the segments are at compact positions: back to the mask's
        labels, starts = (
            compaction.restore(labels.to(mask.device), fill=0),
            compaction.restore(starts.to(mask.device), fill=False),
        )
        return self.path_score(scores, mask, labels, starts)

    def path_score(
        self, scores: torch.Tensor, mask: torch.Tensor, labels: torch.LongTensor, starts: torch.Tensor
    ) -> torch.Tensor:
        """The score of one segmentation per row (B,), given by position (at the mask's positions): each position's
        segment label (B, T) and where segments start (B, T) bool. Segments longer than `max_segment_length` are
        the caller's to refuse (they are read as their last `max_segment_length` positions)."""
        with torch.autocast(scores.device.type, enabled=False):
            compact, compaction = self._prepare(scores, mask)
            transitions, start, end = self._params()
            if compact.size(1) == 0:  # no position: score 0 (no first segment to read a label from)
                return compact.sum((1, 2, 3))
            valid, lengths = compaction.compact_mask, compaction.lengths
            labels = compaction.compact(labels).masked_fill(~valid, 0)  # (B, T)
            starts = compaction.compact(starts) & valid
            first, last = segment_spans(starts, valid)
            positions = torch.arange(compact.size(1), device=compact.device).expand_as(labels)
            length = (positions - first).clamp(max=self.max_segment_length - 1)  # (B, T)
            rows = torch.arange(compact.size(0), device=compact.device).unsqueeze(1)
            ends = valid & (last == positions)
            total = torch.where(ends, compact[rows, positions, length, labels], 0.0).sum(1)
            follows = starts[:, 1:] & valid[:, 1:]  # a segment after another
            total = total + torch.where(follows, transitions[labels[:, :-1], labels[:, 1:]], 0.0).sum(1)
            final = labels.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
            return total + torch.where(lengths > 0, start[labels[:, 0]] + end[final], 0.0)

    def _both_ways(self, scores: torch.Tensor, mask: torch.Tensor, maximum: bool):
        """Per segment (B, T, L, C) at compact positions: the semiring sum over the segmentations that contain it (a
        log-potential, or the best score), with the whole row's sum (B,) and the compaction."""
        compact, compaction = self._prepare(scores, mask)
        transitions, start, end = self._params()
        incoming, alpha = semiring_scan(compact, transitions, start, maximum)[:2]
        total = self._final(alpha, end, compaction.lengths, maximum)
        # the same recursion over each row reversed within its length: segments by start, read backwards
        mirror = compaction.reverse
        mirrored = _by_start(compact).gather(1, mirror.view(*mirror.shape, 1, 1).expand_as(compact))
        outgoing = semiring_scan(mirrored, transitions.T, end, maximum)[0]  # (T, B, C), reversed order
        outgoing = outgoing.transpose(0, 1).gather(1, mirror.unsqueeze(-1).expand(-1, -1, self.num_labels))
        before = incoming.transpose(0, 1)  # (B, T, C): into a segment starting at t
        through = torch.full_like(compact, float("-inf"))
        for length in range(min(self.max_segment_length, compact.size(1))):  # segment [t - length, t]
            through[:, length:, length] = before[:, : compact.size(1) - length] + compact[:, length:, length]
        return through + outgoing.unsqueeze(2), total, compaction

    @torch.no_grad()
    def segment_marginals(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(segment [j - l, j] labelled c | x): (B, T, L, C) at original end positions (zeros at masked ones)."""
        with torch.autocast(scores.device.type, enabled=False):
            through, log_z, compaction = self._both_ways(scores, mask, maximum=False)
            probabilities = torch.exp(through - log_z.view(-1, 1, 1, 1)).flatten(2)
            return compaction.restore(probabilities, fill=0.0).view(through.shape)

    @torch.no_grad()
    def max_marginals(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The best segmentation's score through each segment: (B, T, L, C) at original end positions (-inf where
        no segmentation has the segment, masked positions included)."""
        with torch.autocast(scores.device.type, enabled=False):
            through, _, compaction = self._both_ways(scores, mask, maximum=True)
            return compaction.restore(through.flatten(2), fill=float("-inf")).view(through.shape)

    @torch.no_grad()
    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> list[list[tuple[int, int, int]]]:
        """The Viterbi segmentation of each row: `(first, last, label)` per segment, in order, at original
        positions."""
        labels, starts = self.decode_by_position(scores, mask)
        found = []
        for row_labels, row_starts, row_mask in zip(labels.tolist(), starts.tolist(), mask.tolist()):
            where = [t for t, real in enumerate(row_mask) if real]
            firsts = [k for k, t in enumerate(where) if row_starts[t]]
            found.append(
                [(where[a], where[b - 1], row_labels[where[a]]) for a, b in zip(firsts, [*firsts[1:], len(where)])]
            )
        return found

    @torch.no_grad()
    def decode_by_position(self, scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.LongTensor, torch.Tensor]:
        """The Viterbi segmentation by position, on the device (no host read): each position's segment label
        (B, T; 0 at masked positions) and whether a segment starts there (B, T) bool."""
        with torch.autocast(scores.device.type, enabled=False):
            compact, compaction = self._prepare(scores, mask)
            transitions, start, end = self._params()
            _, alpha, previous, best_length = semiring_scan(compact, transitions, start, maximum=True)
            batch_size, seq_len = compaction.compact_mask.shape
            if seq_len == 0:  # nothing to read back
                return torch.zeros_like(mask, dtype=torch.long), torch.zeros_like(mask, dtype=torch.bool)
            rows = torch.arange(batch_size, device=compact.device)
            last = (compaction.lengths - 1).clamp(min=0)
            label = (alpha[last, rows] + end).argmax(-1)  # (B,) the label of the segment to read next ...
            position = torch.where(compaction.lengths > 0, last, -1)  # ... which ends here
            segment_label, segment_first = torch.zeros_like(label), torch.full_like(label, -1)
            labels, starts = [], []
            for t in range(seq_len - 1, -1, -1):  # batched backtrace: the rows whose next segment ends at t read it
                ends = position == t
                first = t - best_length[t, rows, label]  # (B,)
                segment_label = torch.where(ends, label, segment_label)
                segment_first = torch.where(ends, first, segment_first)
                labels.append(segment_label)
                starts.append(segment_first == t)
                position = torch.where(ends, first - 1, position)
                label = torch.where(ends, previous[first.clamp(min=0), rows, label], label)
            labels, starts = torch.stack(labels[::-1], 1), torch.stack(starts[::-1], 1)  # (B, T) compact
            return compaction.restore(labels, fill=0), compaction.restore(starts, fill=False)


__all__ = ["SemiMarkovCRF"]
