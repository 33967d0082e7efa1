"""Export a trained tagger — Viterbi decoding included — with `torch.export`, and from there to ONNX.

The exported graph takes `input_ids`, `attention_mask` (and `char_ids` for character models, `lm_char_ids` and
`lm_char_lengths` for contextual string embeddings, the character stream's length fixed at the example's too) and returns the
predicted tags (-100 at padding) and the per-token scores, exactly as the eager model does. The batch size is
dynamic; the sequence length is fixed at the example's (the recurrences are unrolled over time), so pad inputs to
that length — the mask takes care of the rest, any padding side or pattern.
"""

import warnings
from pathlib import Path

import torch
from torch import nn

from .modeling_tagger import RnnForTokenClassification


class ExportableTagger(nn.Module):
    """The tagger as a pure tensor function: (input_ids, attention_mask[, char_ids][, lm_char_ids, lm_char_lengths]) ->
    (predictions, logits)."""

    def __init__(self, model: RnnForTokenClassification):
        super().__init__()
        self.model = model
        self.input_names = _input_names(model)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(**dict(zip(self.input_names, inputs)), return_predictions=True)
        return outputs.predictions, outputs.logits


def _input_names(model: RnnForTokenClassification) -> list[str]:
    config = model.config
    return (
        ["input_ids", "attention_mask"]
        + ["char_ids"] * bool(config.char_encoder)
        + ["lm_char_ids", "lm_char_lengths"] * bool(config.language_models)
    )


def _example_inputs(model: RnnForTokenClassification, example: dict) -> tuple[torch.Tensor, ...]:
    names = _input_names(model)
    missing = [name for name in names if name not in example]
    if missing:
        raise ValueError(f"the example batch needs {', '.join(names)}; missing: {', '.join(missing)}")
    if example["input_ids"].size(0) < 2:
        raise ValueError("give an example batch of at least 2 sequences, so the batch size stays dynamic")
    return tuple(example[name] for name in names)


def export_tagger(model: RnnForTokenClassification, example: dict) -> torch.export.ExportedProgram:
    """`torch.export` the tagger in eval mode; `example` is a tokenizer batch (`return_tensors="pt"`, padded to the
    sequence length the export will accept). Save it with `torch.export.save`, run it with `.module()(...)`."""
    if not isinstance(model, RnnForTokenClassification):
        raise TypeError(f"export_tagger exports an RnnForTokenClassification, got {type(model).__name__}")
    inputs = _example_inputs(model, example)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        # nn.LSTM re-creates its `_flat_weights` list on every call; harmless for the exported graph
        warnings.filterwarnings("ignore", message="The tensor attributes .*_flat_weights")
        return torch.export.export(
            ExportableTagger(model.eval()),
            inputs,
            dynamic_shapes=(tuple({0: batch} for _ in inputs),),  # one *inputs
        )


def export_tagger_onnx(model: RnnForTokenClassification, example: dict, path: str | Path) -> Path:
    """Write the tagger as an ONNX model (needs the `onnx` and `onnxscript` packages: the `export` extra, `pip install -e ".[export]"` in a clone).

    Inputs are named as `export_tagger` takes them (`input_ids`, `attention_mask`, ...), outputs `predictions` and `logits`.
    """
    try:  # torch.onnx imports them lazily, deep inside the export, with no word of the extra that brings them
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f'export_tagger_onnx needs onnx and onnxscript: the export extra, pip install -e ".[export]" in a clone ({error})'
        ) from None
    torch.onnx.export(
        export_tagger(model, example),
        _example_inputs(model, example),
        str(path),
        dynamo=True,
        input_names=_input_names(model),
        output_names=["predictions", "logits"],
        verbose=False,
    )
    return Path(path)


__all__ = ["ExportableTagger", "export_tagger", "export_tagger_onnx"]
