"""torch.export and ONNX export of the tagger, Viterbi included: the exported graphs answer like the eager model."""

import sys

import pytest
import torch
from conftest import tiny_config

import hf_rnn
from hf_rnn.export import export_tagger, export_tagger_onnx

BIO = dict(id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})
SEQ_LEN, WORD_LEN = 9, 5


def tagger(use_crf: bool, char_encoder: str | None, cell_type: str = "lstm") -> hf_rnn.RnnForTokenClassification:
    chars = dict(char_encoder=char_encoder, char_vocab_size=11, char_embedding_size=4, char_hidden_size=3)
    crf = dict(use_crf=True, crf_constraints="BIO") if use_crf else {}
    return hf_rnn.RnnForTokenClassification(
        tiny_config(cell_type=cell_type, bidirectional=True, **BIO, **crf, **(chars if char_encoder else {}))
    ).eval()


def batch(model, batch_size: int, generator: torch.Generator) -> dict:
    """Random words, a random mix of right padding, left padding and holes, and characters for the real words."""
    ids = torch.randint(1, model.config.vocab_size, (batch_size, SEQ_LEN), generator=generator)
    mask = (torch.rand(batch_size, SEQ_LEN, generator=generator) > 0.3).long()
    mask[0] = 1
    inputs = {"input_ids": ids * mask, "attention_mask": mask}
    if model.config.char_encoder:
        chars = torch.randint(1, 11, (batch_size, SEQ_LEN, WORD_LEN), generator=generator)
        word_lengths = torch.randint(1, WORD_LEN + 1, (batch_size, SEQ_LEN, 1), generator=generator)
        inputs["char_ids"] = chars * (torch.arange(WORD_LEN) < word_lengths) * mask.unsqueeze(-1)
    return inputs


def eager(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        outputs = model(**inputs)
    return outputs.predictions, outputs.logits


@pytest.mark.parametrize(
    "use_crf, char_encoder, cell_type",
    [
        (True, None, "lstm"),
        (True, "lstm", "lstm"),
        (False, "cnn", "lstm"),
        (True, None, "mingru"),
        (False, None, "minlstm"),
    ],
)
def test_exported_program_equals_the_eager_tagger(use_crf, char_encoder, cell_type, tmp_path):
    model = tagger(use_crf, char_encoder, cell_type)
    generator = torch.Generator().manual_seed(0)
    program = export_tagger(model, batch(model, 3, generator))
    torch.export.save(program, tmp_path / "tagger.pt2")
    loaded = torch.export.load(tmp_path / "tagger.pt2").module()
    for batch_size in (1, 2, 6):  # the batch size is dynamic
        inputs = batch(model, batch_size, generator)
        predictions, logits = loaded(*inputs.values())
        expected_predictions, expected_logits = eager(model, inputs)
        assert torch.equal(predictions, expected_predictions)
        torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell_type", ["lstm", "minlstm"])  # minlstm: the scan (cat, logaddexp) exports too
def test_onnx_model_equals_the_eager_tagger(cell_type, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs hf_rnn[export] (onnx, onnxscript, onnxruntime)")
    pytest.importorskip("onnxscript", reason="ONNX export needs hf_rnn[export]")
    model = tagger(True, "lstm", cell_type)
    generator = torch.Generator().manual_seed(1)
    path = export_tagger_onnx(model, batch(model, 3, generator), tmp_path / "tagger.onnx")
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "char_ids"]
    for batch_size in (1, 5):
        inputs = batch(model, batch_size, generator)
        predictions, logits = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        expected_predictions, expected_logits = eager(model, inputs)
        assert torch.equal(torch.from_numpy(predictions), expected_predictions)
        torch.testing.assert_close(torch.from_numpy(logits), expected_logits, rtol=1e-4, atol=1e-5)


def test_export_explains_a_bad_example():
    model = tagger(True, "lstm")
    inputs = batch(model, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="missing: char_ids"):
        export_tagger(model, {k: v for k, v in inputs.items() if k != "char_ids"})
    with pytest.raises(ValueError, match="at least 2"):
        export_tagger(model, {k: v[:1] for k, v in inputs.items()})
    with pytest.raises(TypeError, match="RnnForTokenClassification"):
        export_tagger(hf_rnn.RnnModel(tiny_config()), inputs)


def test_onnx_export_without_its_extra_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now fails as if not installed
    model = tagger(use_crf=True, char_encoder=None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[export\]"'):
        export_tagger_onnx(model, batch(model, 2, torch.Generator().manual_seed(0)), tmp_path / "tagger.onnx")
