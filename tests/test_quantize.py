"""Dynamic int8 quantisation reaches the recurrent cells: torch's quantiser matches exact types and would skip them."""

import warnings

import pytest
import torch
from conftest import tiny_config
from torch import nn
from torch.ao.quantization import quantize_dynamic as torch_quantize_dynamic

import hf_rnn

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao's notices


def trained_lm(cell_type: str, num_layers: int = 1) -> hf_rnn.RnnForCausalLM:
    """A tiny LM fitted to a few sequences, so its answers are sharp and quantisation error shows in them."""
    config = tiny_config(cell_type=cell_type, num_layers=num_layers, hidden_size=16, eos_token_id=None)
    model = hf_rnn.RnnForCausalLM(config)
    data = torch.randint(1, 37, (6, 12))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(30):
        optimizer.zero_grad()
        model(data, labels=data).loss.backward()
        optimizer.step()
    return model.eval()


def float_modules(model: nn.Module) -> list[str]:
    """The recurrent and linear modules still computing in floating point."""
    return [name for name, module in model.named_modules() if isinstance(module, (nn.RNNBase, nn.Linear))]


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_quantized_lm_equals_torchs_quantisation_of_the_same_plain_modules(cell_type):
    """Independent reference: the same weights in a plain `nn.LSTM`/`nn.GRU` and `nn.Linear`, which torch's own
    `quantize_dynamic` does reach."""
    model = trained_lm(cell_type)
    cell = model.model.layers[0].directions[0]
    rnn = getattr(nn, cell_type.upper())(cell.input_size, cell.hidden_size, batch_first=True)
    plain = nn.ModuleDict({"rnn": rnn, "head": nn.Linear(16, 37)})
    plain.rnn.load_state_dict(cell.state_dict())
    plain.head.load_state_dict(model.lm_head.state_dict())
    reference = torch_quantize_dynamic(plain, {nn.LSTM, nn.GRU, nn.Linear})

    quantized = hf_rnn.quantize_dynamic(model)
    assert float_modules(quantized) == []  # nothing left in fp32: the cells too, not only the head
    assert float_modules(model) != []  # not in place by default

    ids = torch.randint(1, 37, (3, 9))
    expected = reference.head(reference.rnn(model.model.embeddings(ids))[0])
    with torch.no_grad():
        torch.testing.assert_close(quantized(ids).logits, expected, rtol=0, atol=0)
        assert (quantized(ids).logits - model(ids).logits).abs().max() < 0.2  # close to fp32, not equal to it
        assert not torch.equal(quantized(ids).logits, model(ids).logits)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_quantized_lm_generates_and_pads_like_the_float_one(cell_type):
    model = trained_lm(cell_type, num_layers=2)
    quantized = hf_rnn.quantize_dynamic(model)
    prompt = torch.randint(1, 37, (2, 4))
    generate = dict(max_new_tokens=6, do_sample=False)
    assert torch.equal(quantized.generate(prompt, **generate), model.generate(prompt, **generate))
    # a left-padded row gets the answer its prompt gets alone, and the packed final state is its last real step's,
    # up to the quantisation error (activations are quantised per batch, so the other rows move it a little)
    ids, mask = prompt.clone(), torch.ones_like(prompt)
    mask[1, :2] = 0
    with torch.no_grad():
        batch = quantized(ids, attention_mask=mask, use_cache=True)
        alone = quantized(ids[1:, 2:], use_cache=True)
    torch.testing.assert_close(batch.logits[1, 2:], alone.logits[0], atol=0.2, rtol=0)
    torch.testing.assert_close(batch.cache.hidden[:, 1], alone.cache.hidden[:, 0], atol=0.05, rtol=0)


def test_quantized_tagger_keeps_its_crf_and_character_lstm():
    config = tiny_config(bidirectional=True, use_crf=True, char_encoder="lstm", char_vocab_size=10)
    model = hf_rnn.RnnForTokenClassification(config).eval()
    quantized = hf_rnn.quantize_dynamic(model)
    assert float_modules(quantized) == []
    ids, chars = torch.randint(1, 37, (2, 6)), torch.randint(0, 10, (2, 6, 4))
    with torch.no_grad():
        out, reference = quantized(ids, char_ids=chars), model(ids, char_ids=chars)
    torch.testing.assert_close(out.emissions, reference.emissions, atol=0.05, rtol=0)
    assert torch.equal(out.predictions, quantized.crf.decode(out.emissions, torch.ones_like(ids, dtype=torch.bool)))


@pytest.mark.parametrize("cell_type", ["rnn", "mingru", "minlstm"])
def test_cells_without_a_quantised_kernel_are_refused_by_name(cell_type):
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type))
    with pytest.raises(ValueError, match=f"model.layers.0.directions.0 is a .* cell \\(cell_type='{cell_type}'\\)"):
        hf_rnn.quantize_dynamic(model)


def test_float16_weights_and_a_bad_dtype():
    model = trained_lm("lstm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = hf_rnn.quantize_dynamic(model, dtype=torch.float16)
    assert float_modules(half) == []
    ids = torch.randint(1, 37, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(half(ids).logits, model(ids).logits, atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="dtype must be torch.qint8 or torch.float16, got torch.bfloat16"):
        hf_rnn.quantize_dynamic(model, dtype=torch.bfloat16)


def test_saving_a_quantized_model_a_meta_or_a_bfloat16_one_is_refused_clearly(tmp_path):
    """Before: save_pretrained failed inside torch ("CellParamsBase ... has no field 'device'") after writing
    config.json; a meta model failed with "Cannot copy out of meta tensor", a bfloat16 one at its first forward."""
    quantized = hf_rnn.quantize_dynamic(hf_rnn.RnnForTokenClassification(tiny_config(num_layers=1, use_crf=True)))
    with pytest.raises(ValueError, match="not a checkpoint: save .* the float model"):
        quantized.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    with torch.device("meta"):
        meta = hf_rnn.RnnForCausalLM(tiny_config(num_layers=1))
    with pytest.raises(ValueError, match="on the meta device"):
        hf_rnn.quantize_dynamic(meta)
    with pytest.raises(ValueError, match=r"torch.bfloat16; .* model.float\(\)"):
        hf_rnn.quantize_dynamic(hf_rnn.RnnForCausalLM(tiny_config(num_layers=1)).to(torch.bfloat16))
