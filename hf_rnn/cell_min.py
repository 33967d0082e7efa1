"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read the input only.

With no h_{t-1} inside the gates, every step is h_t = a_t ⊙ h_{t-1} + b_t with (a_t, b_t) known for all t at once,
so training runs the whole sequence as one parallel scan (in log space, where the products of gates are sums),
while `generate` still steps in O(1) from the carried state. Shipped inside checkpoints with the modeling files, so
it imports only torch, transformers and its flat siblings.
"""

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers import initialization as init

from .configuration_rnn import RnnConfig
from .masking import is_tracing

State = tuple[torch.Tensor]  # (h,), (1, B, H): the min cells carry no memory cell


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), g(x) = x + 1/2 for x >= 0 and sigmoid(x) below: the paper's positive, continuous activation, so the
    candidate state has a logarithm. Both branches are finite everywhere (no NaN gradient through `where`)."""
    return torch.where(x >= 0, (x.relu() + 0.5).log(), -F.softplus(-x))


SCAN_CHUNK = 64  # steps per scan; longer sequences chain chunks through their last state (bounds saved memory)


def linear_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """All h_t = a_t ⊙ h_{t-1} + b_t at once. log_a, log_b (B, T, H) (a_t in (0, 1], b_t > 0), h0 (B, H) or None
    (zeros) -> h (B, T, H).

    A parallel prefix scan (Hillis-Steele) over the pairs (log a, log b), composed in log space: step s then t is
    (log a_s + log a_t, logaddexp(log b_s + log a_t, log b_t)), so after log2(C) doublings each position holds
    log A_t = log(a_1 ⋯ a_t) and log h_t for h_0 = 0; the h_0 term is added apart, so a carried state of either
    sign is exact. Every operation adds or compares numbers of the size of its result: nothing cancels, and h_t
    keeps float32's precision at any gate pre-activation (the cumulative-sum form, log A_t + logcumsumexp(log b_s -
    log A_s), subtracts sums that grow with t and with the gates: 1e-3 off at pre-activations of 200, a factor 40
    at 1e6). Chunks of `SCAN_CHUNK` steps, each starting from the previous one's last state, bound the doublings to
    log2(SCAN_CHUNK) at T / SCAN_CHUNK sequential steps; in training each chunk's doublings are recomputed for the
    backward pass rather than kept (they would hold 2 log2(SCAN_CHUNK) tensors of the chunk's size).
    """
    outputs = []
    for start in range(0, log_a.size(1), SCAN_CHUNK):
        chunk = log_a[:, start : start + SCAN_CHUNK], log_b[:, start : start + SCAN_CHUNK]  # (B, C, H) each
        if torch.is_grad_enabled() and not is_tracing() and any(c.requires_grad for c in chunk):
            log_decay, log_h = checkpoint(prefix_scan, *chunk, use_reentrant=False, preserve_rng_state=False)
        else:
            log_decay, log_h = prefix_scan(*chunk)
        h = log_h.exp()  # (B, C, H)
        if h0 is not None:
            h = h + log_decay.exp() * h0.unsqueeze(1)
        outputs.append(h)
        h0 = h[:, -1]  # (B, H)
    return torch.cat(outputs, 1)


def prefix_scan(log_decay: torch.Tensor, log_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk's doublings: (log a_t, log b_t) (B, C, H) each -> (log A_t, log h_t for h_0 = 0)."""
    shift = 1
    while shift < log_decay.size(1):  # each position takes in the `shift` steps before its span
        earlier, later = log_h[:, :-shift] + log_decay[:, shift:], log_h[:, shift:]
        log_h = torch.cat([log_h[:, :shift], torch.logaddexp(earlier, later)], 1)
        log_decay = torch.cat([log_decay[:, :shift], log_decay[:, :-shift] + log_decay[:, shift:]], 1)
        shift *= 2
    return log_decay, log_h


class MinCell(nn.Module):
    """One direction of a min cell: `gates` input projections stacked in `weight_ih_l0` (named like torch's cells,
    so per-name recipes such as LoRA's `target_parameters` carry over) and the scan. Subclasses turn the projections
    into (log a_t, log b_t)."""

    gates: int

    def __init__(self, config: RnnConfig, input_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, config.hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(self.gates * config.hidden_size, input_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(self.gates * config.hidden_size))

    def coefficients(self, projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """projections (B, T, gates * H) -> log a_t, log b_t, each (B, T, H)."""
        raise NotImplementedError

    def forward(
        self, inputs: torch.Tensor, initial_state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """inputs (B, T, in), each row's real steps first -> outputs (B, T, H), final state ((1, B, H),).

        Outputs at real steps never depend on what follows them; with `lengths` (B,) the final state is each row's
        output at its last real step (its initial state if it has none), without it the output at step T.
        """
        projections = F.linear(inputs, self.weight_ih_l0, self.bias_ih_l0)  # (B, T, gates * H)
        dtype = torch.promote_types(projections.dtype, torch.float32)  # the scan in fp32 at least (autocast, bf16)
        log_a, log_b = self.coefficients(projections.to(dtype))  # (B, T, H) each
        h0 = None if initial_state is None else initial_state[0][0].to(dtype)  # (B, H)
        outputs = linear_scan(log_a, log_b, h0)  # (B, T, H)
        if lengths is None:
            final = outputs[:, -1]  # (B, H)
        else:
            rows, lengths = torch.arange(inputs.size(0), device=inputs.device), lengths.to(inputs.device)
            final = outputs[rows, (lengths - 1).clamp(min=0)]  # (B, H)
            start = torch.zeros_like(final) if h0 is None else h0
            final = torch.where((lengths == 0).unsqueeze(-1), start, final)
        return outputs.to(projections.dtype), (final.to(projections.dtype).unsqueeze(0),)


class MinGruCell(MinCell):
    """z_t = σ(W_z x_t), h̃_t = g(W_h x_t), h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t; gates (update, candidate)."""

    gates = 2

    def coefficients(self, projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        update, candidate = projections.chunk(2, dim=-1)  # (B, T, H) each
        return -F.softplus(update), -F.softplus(-update) + log_g(candidate)  # log(1 - z), log z + log h̃


class MinLstmCell(MinCell):
    """f_t = σ(W_f x_t), i_t = σ(W_i x_t), h̃_t = g(W_h x_t), h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t with the gates
    normalised, f' = f / (f + i) and i' = i / (f + i); gates (input, forget, candidate), in `nn.LSTM`'s order."""

    gates = 3

    def coefficients(self, projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input_gate, forget_gate, candidate = projections.chunk(3, dim=-1)  # (B, T, H) each
        log_ratio = F.softplus(-forget_gate) - F.softplus(-input_gate)  # log(i / f)
        log_forget = -F.softplus(log_ratio)  # log f'; log i' = log f' + log(i / f), one softplus fewer
        return log_forget, log_forget + log_ratio + log_g(candidate)  # log f', log i' + log h̃


def init_min_cell(module: MinCell, config: RnnConfig, r: float) -> None:
    """U[-r, r] weights, zero biases; minLSTM's forget-gate bias = `forget_bias`, as for the LSTM (with 1.0 the
    normalised forget gate starts at f' = 0.59 instead of 0.5)."""
    init.uniform_(module.weight_ih_l0, -r, r)
    bias = torch.zeros_like(module.bias_ih_l0)
    if isinstance(module, MinLstmCell):  # written whole: a slice would lose the flag that protects loaded weights
        bias[module.hidden_size : 2 * module.hidden_size] = config.forget_bias
    init.copy_(module.bias_ih_l0, bias)


__all__ = ["MinGruCell", "MinLstmCell", "init_min_cell", "linear_scan", "log_g"]
