"""Dynamic int8 (or float16) quantisation of hf_rnn models, recurrent cells included, through torch's quantiser.

`torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear})` matches modules by their exact type, so it
quantises the output and classifier layers but leaves hf_rnn's cells, which subclass `nn.LSTM`/`nn.GRU`, in fp32
without a word. [`quantize_dynamic`] hands torch's quantiser the cell classes and their quantised counterparts:
torch's dynamically quantised LSTM/GRU kernels under hf_rnn's cell interface, so padding stays exact (packing) and
`generate()` carries the state as before.

Not shipped with checkpoints: a quantised model is made from a loaded one, in the process that uses it.
"""

from types import MethodType

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization import get_default_dynamic_quant_module_mappings
from torch.ao.quantization import quantize_dynamic as torch_quantize_dynamic

from .cell_torch import GruCell, LstmCell, TorchCell
from .cells import CELLS, cell_of


class QuantizedTorchCell(TorchCell):
    """A torch dynamically quantised LSTM/GRU with the registry's cell interface (mixed in before the torch class)."""

    float_class: type[nn.RNNBase]  # the plain torch class: `nn.LSTM` / `nn.GRU`
    torch_class: type[nnqd.LSTM | nnqd.GRU]  # its quantised counterpart: `nnqd.LSTM` / `nnqd.GRU`

    @classmethod
    def from_float(cls, mod: nn.RNNBase, use_precomputed_fake_quant: bool = False) -> "QuantizedTorchCell":
        """What torch's `convert` calls on each float cell. torch's `from_float` takes only an exact `nn.LSTM`/`nn.GRU`,
        so the weights go through one, and the packed result is moved into this class."""
        plain = cls.float_class(mod.input_size, mod.hidden_size, batch_first=True)
        plain.load_state_dict(mod.state_dict())
        plain.qconfig = mod.qconfig
        packed = cls.torch_class.from_float(plain, use_precomputed_fake_quant=use_precomputed_fake_quant)
        cell = cls(mod.input_size, mod.hidden_size, batch_first=True, dtype=packed.dtype)
        cell._all_weight_values = packed._all_weight_values
        return cell


class QuantizedLstmCell(QuantizedTorchCell, nnqd.LSTM):
    float_class, torch_class = nn.LSTM, nnqd.LSTM


class QuantizedGruCell(QuantizedTorchCell, nnqd.GRU):
    float_class, torch_class = nn.GRU, nnqd.GRU


QUANTIZED_CELLS = {LstmCell: QuantizedLstmCell, GruCell: QuantizedGruCell}


def quantize_dynamic(model: nn.Module, dtype: torch.dtype = torch.qint8, inplace: bool = False) -> nn.Module:
    """`model` with the weights of its recurrent cells and linear layers stored in `dtype` (`torch.qint8` or
    `torch.float16`) and activations quantised on the fly, as torch's `quantize_dynamic` does for plain `nn.LSTM`s:
    for CPU inference (about 4x smaller recurrent and linear weights; see bench/quantize.py for the speed and the
    change in the model's answers). Embeddings and a CRF stay in fp32. The result runs `forward` and `generate()` as
    before but is not a checkpoint: save the float model, quantise after loading.

    Raises `ValueError` for a model with cells torch has no quantised kernel for (`cell_type` "rnn", "mingru",
    "minlstm"), rather than leaving them in fp32.
    """
    if dtype not in (torch.qint8, torch.float16):
        raise ValueError(f"quantize_dynamic dtype must be torch.qint8 or torch.float16, got {dtype}")
    supported = {spec.name for spec in CELLS.values() if spec.build in QUANTIZED_CELLS}
    for name, module in model.named_modules():
        spec = cell_of(module)
        if spec is not None and spec.name not in supported:
            raise ValueError(
                f"{name} is a {spec.display_name} cell (cell_type={spec.name!r}): torch has no dynamically quantised "
                f"kernel for it, only for cell_type {sorted(supported)}; quantising only the linear layers would "
                "leave the recurrence in fp32"
            )
    for name, parameter in model.named_parameters():
        if parameter.is_meta:
            raise ValueError(f"quantize_dynamic: {name} is on the meta device (no values); load the weights first")
        if parameter.is_floating_point() and parameter.dtype != torch.float32:
            raise ValueError(
                f"quantize_dynamic: {name} is {parameter.dtype}; torch's quantised kernels take float32 weights and"
                " inputs: call model.float() first"
            )
    mapping = {**get_default_dynamic_quant_module_mappings(), **QUANTIZED_CELLS}
    spec = {nn.Linear, nn.LSTM, nn.GRU, *QUANTIZED_CELLS}
    quantized = torch_quantize_dynamic(model, spec, dtype=dtype, mapping=mapping, inplace=inplace)
    if hasattr(quantized, "save_pretrained"):  # packed weights: it failed midway, inside torch, leaving a config.json
        quantized.save_pretrained = MethodType(_not_a_checkpoint, quantized)
    return quantized


def _not_a_checkpoint(model: nn.Module, *args, **kwargs) -> None:
    raise ValueError(
        "a dynamically quantised model is not a checkpoint: save (or push) the float model, and quantise after loading"
    )


__all__ = ["QuantizedGruCell", "QuantizedLstmCell", "quantize_dynamic"]
