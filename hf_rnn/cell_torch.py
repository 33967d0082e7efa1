"""The cuDNN/oneDNN cells: Elman RNN, GRU and LSTM as one direction of an [`RnnLayer`], on top of torch's modules.

Each class *is* the torch module (same parameters, `weight_ih_l0` ..., so checkpoints keep their keys) and adds the
cell interface of the registry (`cells.py`): `forward(inputs, initial_state, lengths) -> (outputs, final_state)`.
Shipped inside checkpoints with the modeling files, so it imports only torch and its flat siblings.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import initialization as init

from .configuration_rnn import RnnConfig

State = tuple[torch.Tensor, ...]  # (h,) or (h, c), each (1, B, H)


class TorchCell:
    """The registry's cell interface over an `nn.RNN`/`nn.GRU`/`nn.LSTM` (mixed in before the torch class)."""

    def forward(
        self, inputs: torch.Tensor, initial_state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """inputs (B, T, in), each row's real steps first -> outputs (B, T, H), final state.

        With `lengths` (B,; on the host: packing reads them there) the final state is each row's state after its last real step (by packing, which needs
        ~1.8x the time on a GPU); without, the state after all T steps. Outputs at real steps are exact either way.
        """
        state = None if initial_state is None else tuple(s.contiguous() for s in initial_state)
        state = state[0] if state is not None and len(state) == 1 else state  # nn.LSTM takes (h, c), the others h
        if lengths is None:
            outputs, final = super().forward(inputs, state)
        else:
            packed = pack_padded_sequence(inputs, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            outputs, final = super().forward(packed, state)
            outputs = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.size(1))[0]
        final = final if isinstance(final, tuple) else (final,)
        if lengths is not None:  # packing needs length >= 1: a row with no real step keeps its initial state
            empty = (lengths == 0).view(1, -1, 1).to(final[0].device)  # (1, B, 1)
            start = initial_state or tuple(torch.zeros_like(f) for f in final)
            final = tuple(torch.where(empty, s, f) for s, f in zip(start, final))
        return outputs, final


class ElmanCell(TorchCell, nn.RNN):
    """h_m = g(Θʰ h_{m-1} + Θˣ x_m), g = `config.nonlinearity`."""

    def __init__(self, config: RnnConfig, input_size: int):
        super().__init__(input_size, config.hidden_size, batch_first=True, nonlinearity=config.nonlinearity)


class GruCell(TorchCell, nn.GRU):
    """Reset and update gates (Cho et al. 2014)."""

    def __init__(self, config: RnnConfig, input_size: int):
        super().__init__(input_size, config.hidden_size, batch_first=True)


class LstmCell(TorchCell, nn.LSTM):
    """Input, forget and output gates and a memory cell (Hochreiter & Schmidhuber 1997); state (h, c)."""

    def __init__(self, config: RnnConfig, input_size: int):
        super().__init__(input_size, config.hidden_size, batch_first=True)

    def forward(
        self, inputs: torch.Tensor, initial_state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        if inputs.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no low-precision LSTM under CPU autocast ("could not create a primitive descriptor"): run the
            # recurrence in the weights' precision, as it runs without autocast
            with torch.autocast("cpu", enabled=False):
                dtype = self.weight_ih_l0.dtype
                state = None if initial_state is None else tuple(s.to(dtype) for s in initial_state)
                return super().forward(inputs.to(dtype), state, lengths)
        return super().forward(inputs, initial_state, lengths)


def init_torch_cell(module: nn.RNNBase, config: RnnConfig, r: float) -> None:
    """U[-r, r] weights, zero biases, LSTM forget-gate bias = `forget_bias` (Jozefowicz et al. 2015). Any torch
    recurrent module: the layers' cells and the character encoder's bare `nn.LSTM`."""
    for name, param in module.named_parameters():
        if name.startswith("weight"):
            init.uniform_(param, -r, r)
        elif isinstance(module, nn.LSTM) and name.startswith("bias_ih"):
            # gate order (input, forget, cell, output); the forget bias sits in b_ih, b_hh stays zero.
            # Written whole: a slice would lose the flag that protects loaded weights.
            bias = torch.zeros_like(param)
            bias[module.hidden_size : 2 * module.hidden_size] = config.forget_bias
            init.copy_(param, bias)
        else:
            init.zeros_(param)


__all__ = ["ElmanCell", "GruCell", "LstmCell", "init_torch_cell"]
