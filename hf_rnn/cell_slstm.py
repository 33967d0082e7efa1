"""sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", arXiv 2405.04517, section 2.2).

An LSTM whose input gate is exponential (its forget gate sigmoid or exponential, `config.slstm_forget_gate`), so a
new input can outweigh everything stored before it; a normaliser n keeps h = o ⊙ c / n bounded, and a stabiliser m
(the running log-scale of the gates) keeps the exponentials finite. Pre-activations z̃ = W x + R h_{t-1} + b with R
block-diagonal over `config.slstm_num_heads` heads (each head's units read only their own head's h). Per step, with
log f = f̃ (exponential) or log σ(f̃) (sigmoid):

    m_t = max(log f_t + m_{t-1}, ĩ_t)          i'_t = exp(ĩ_t - m_t)     f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t tanh(z̃_t)       n_t = f'_t n_{t-1} + i'_t  h_t = σ(õ_t) c_t / n_t

c and n are the paper's unstabilised c and n times exp(-m_t), so h is theirs exactly. A unit with n = 0 has read
nothing (the zero state every sequence starts from): its m_t is ĩ_t and its old c, n count for nothing, so n_t >= 1
after every step and the division is safe. Shipped inside checkpoints with the modeling files, so it imports only
torch, transformers and its flat siblings.
"""

import contextlib

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init

from .configuration_rnn import RnnConfig

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # (h, c, n, m), each (1, B, H)


class SlstmCell(nn.Module):
    """One direction of an sLSTM layer. Gates in `nn.LSTM`'s order (input, forget, cell, output): `weight_ih_l0`
    (4H, in) and `bias_ih_l0` (4H) gate-major like torch's, `weight_hh_l0` (heads, 4 * head_size, head_size) one
    block of R per head, its rows gate-major within the head."""

    def __init__(self, config: RnnConfig, input_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, config.hidden_size
        self.num_heads = config.slstm_num_heads
        self.head_size = config.hidden_size // config.slstm_num_heads
        self.exponential_forget = config.slstm_forget_gate == "exponential"
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * config.hidden_size, input_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * config.hidden_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(self.num_heads, 4 * self.head_size, self.head_size))

    def forward(
        self, inputs: torch.Tensor, initial_state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """inputs (B, T, in), each row's real steps first -> outputs (B, T, H), final state (h, c, n, m).

        Outputs at real steps never depend on what follows them; with `lengths` (B,) each row's state stops at its
        last real step (its initial state if it has none), without it the state after step T. The recurrence and
        the state run in float32 at least (autocast, bf16 weights): m is a log-scale, and c / n a ratio of sums.
        """
        batch_size, steps, _ = inputs.shape
        heads, size = self.num_heads, self.head_size
        projections = F.linear(inputs, self.weight_ih_l0, self.bias_ih_l0)  # (B, T, 4H)
        dtype = torch.promote_types(projections.dtype, torch.float32)
        # (T, heads, B, 4, head_size): a step's input part beside the recurrent part, as each head computes it
        gates_in = projections.to(dtype).view(batch_size, steps, 4, heads, size).permute(1, 3, 0, 2, 4)
        if initial_state is None:
            state = tuple(gates_in.new_zeros(heads, batch_size, size) for _ in range(4))
        else:  # (1, B, H) -> (heads, B, head_size)
            state = tuple(s[0].to(dtype).view(batch_size, heads, size).transpose(0, 1) for s in initial_state)
        positions = torch.arange(steps, device=inputs.device).unsqueeze(1)  # (T, 1)
        live = None if lengths is None else positions < lengths.to(inputs.device)  # (T, B)
        autocast = torch.is_autocast_enabled(inputs.device.type)
        with torch.autocast(inputs.device.type, enabled=False) if autocast else contextlib.nullcontext():
            weight_hh = self.weight_hh_l0.to(dtype).transpose(1, 2)  # (heads, head_size, 4 * head_size)
            outputs = []
            for t in range(steps):
                new = self._step(gates_in[t], weight_hh, state)
                if live is not None:  # a row past its length keeps its state
                    new = tuple(torch.where(live[t, :, None], fresh, kept) for fresh, kept in zip(new, state))
                state = new
                outputs.append(new[0])
        outputs = torch.stack(outputs, 2) if outputs else gates_in.new_zeros(heads, batch_size, 0, size)
        outputs = outputs.permute(1, 2, 0, 3).reshape(batch_size, steps, self.hidden_size)  # (B, T, H)
        final = tuple(s.transpose(0, 1).reshape(1, batch_size, self.hidden_size) for s in state)
        return outputs.to(projections.dtype), final

    def _step(self, gates_in: torch.Tensor, weight_hh: torch.Tensor, state: State) -> State:
        """One step of every head: gates_in (heads, B, 4, head_size), state (h, c, n, m) each (heads, B, head_size)."""
        h, c, n, m = state
        pre = gates_in + torch.bmm(h, weight_hh).view_as(gates_in)  # W x + b + R h, per head
        input_pre, forget_pre, cell_pre, output_pre = pre.unbind(2)  # (heads, B, head_size) each
        log_forget = forget_pre if self.exponential_forget else F.logsigmoid(forget_pre)
        started = n > 0  # a unit that has read nothing has no old scale to keep
        m_new = torch.where(started, torch.maximum(log_forget + m, input_pre), input_pre)
        # -inf, not a masked exp: exp of an unused branch may overflow, and its gradient times 0 would be NaN
        forget = torch.where(started, log_forget + m - m_new, float("-inf")).exp()
        input_gate = (input_pre - m_new).exp()
        c_new = forget * c + input_gate * torch.tanh(cell_pre)
        n_new = forget * n + input_gate
        return torch.sigmoid(output_pre) * c_new / n_new, c_new, n_new, m_new


def init_slstm_cell(module: SlstmCell, config: RnnConfig, r: float) -> None:
    """U[-r, r] weights, zero biases, forget-gate bias = `forget_bias` (as the LSTM's)."""
    init.uniform_(module.weight_ih_l0, -r, r)
    init.uniform_(module.weight_hh_l0, -r, r)
    bias = torch.zeros_like(
        module.bias_ih_l0
    )  # written whole: a slice would lose the flag that protects loaded weights
    bias[module.hidden_size : 2 * module.hidden_size] = config.forget_bias
    init.copy_(module.bias_ih_l0, bias)


__all__ = ["SlstmCell", "init_slstm_cell"]
