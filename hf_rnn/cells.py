"""The registry of recurrent cells: every `cell_type` a config may name, one flat sibling module each.

A cell is one direction of an [`RnnLayer`]: built as `spec.build(config, input_size)`, called as
`cell(inputs, initial_state, lengths) -> (outputs, final_state)` with inputs (B, T, in) whose real steps come first
in each row (the layer compacts padding and reverses rows for the backward direction), a state tuple of
`state_size` tensors (1, B, H) and, when the final state must be exact for ragged rows, the lengths (B,) on the host
(packing reads them there; a cell that needs them on the device moves them).
`RnnLayer`, `_init_weights`, the model card and the tests read the specs; adding a cell means its module, its entry
here, its name in `configuration_rnn.CELL_TYPES` (kept there so the config needs no torch) and its tests.
Shipped inside checkpoints with the modeling files, so it imports only torch, transformers and its flat siblings.
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .cell_min import MinGruCell, MinLstmCell, init_min_cell
from .cell_slstm import SlstmCell, init_slstm_cell
from .cell_torch import ElmanCell, GruCell, LstmCell, init_torch_cell
from .configuration_rnn import RnnConfig


@dataclass(frozen=True)
class CellSpec:
    """What the rest of hf_rnn needs to know about a cell type."""

    name: str  # the config's `cell_type`
    display_name: str  # for people: the model card, the README
    build: Callable[[RnnConfig, int], nn.Module]  # (config, input_size) -> one direction
    kind: type[nn.Module]  # what `_init_weights` recognises as this cell
    state_size: int  # tensors in the state: 1 for (h,), 2 for the LSTM's (h, c), 4 for the sLSTM's (h, c, n, m)
    init: Callable[[nn.Module, RnnConfig, float], None]  # (module, config, r): every parameter, from U[-r, r]
    fan_in: Callable[[nn.Module], int]  # what the default r = 1/sqrt(fan-in) counts


def _hidden_size(module: nn.Module) -> int:  # PyTorch's scale for its recurrent cells
    return module.hidden_size


def _input_size(module: nn.Module) -> int:  # the min cells are input projections
    return module.input_size


CELLS = {
    spec.name: spec
    for spec in (
        # the torch cells are recognised by their torch class, so the character encoder's bare nn.LSTM starts alike
        CellSpec("rnn", "Elman RNN", ElmanCell, nn.RNN, 1, init_torch_cell, _hidden_size),
        CellSpec("gru", "GRU", GruCell, nn.GRU, 1, init_torch_cell, _hidden_size),
        CellSpec("lstm", "LSTM", LstmCell, nn.LSTM, 2, init_torch_cell, _hidden_size),
        CellSpec("mingru", "minGRU", MinGruCell, MinGruCell, 1, init_min_cell, _input_size),
        CellSpec("minlstm", "minLSTM", MinLstmCell, MinLstmCell, 1, init_min_cell, _input_size),
        CellSpec("slstm", "sLSTM", SlstmCell, SlstmCell, 4, init_slstm_cell, _hidden_size),
    )
}


def cell_of(module: nn.Module) -> CellSpec | None:
    """The spec of a recurrent module (a layer's direction, or a bare torch cell of that kind), None for others."""
    return next((spec for spec in CELLS.values() if isinstance(module, spec.kind)), None)


__all__ = ["CELLS", "CellSpec", "cell_of"]
