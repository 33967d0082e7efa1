"""Weights: initialisation (also through the meta device), safetensors round trips, tying, resizing, training."""

import pytest
import torch
from conftest import CELLS, tiny_config
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

import hf_rnn
from hf_rnn.cell_min import MinLstmCell
from hf_rnn.cell_slstm import SlstmCell

HEADS = (hf_rnn.RnnModel, hf_rnn.RnnForTokenClassification, hf_rnn.RnnForSequenceClassification, hf_rnn.RnnForCausalLM)


def check_init_rule(model: hf_rnn.RnnPreTrainedModel) -> None:
    """Every parameter as `_init_weights` promises: weights in U[-r, r], biases 0 except the (min/s)LSTM forget gate; r is
    `initializer_range`, or 1/sqrt(fan-in) when it is None."""
    config = model.config
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            check_parameter(config, module, f"{module_name}.{param_name}", param, model.init_range(module))
    embeddings = model.get_input_embeddings().weight
    assert torch.all(embeddings[config.pad_token_id] == 0)


FORGET_GATED = {
    nn.LSTM: 4,
    MinLstmCell: 3,
    SlstmCell: 4,
}  # gates (input, forget, cell[, output]): the forget gate is the 2nd


def check_parameter(config, module: nn.Module, name: str, param: torch.Tensor, r: float) -> None:
    assert torch.isfinite(param).all(), name
    if config.initializer_range is not None:
        assert r == config.initializer_range
    gates = next((n for kind, n in FORGET_GATED.items() if isinstance(module, kind)), None)
    if "bias_ih" in name and gates is not None:
        size = param.size(0) // gates
        expected = torch.zeros_like(param)
        expected[size : 2 * size] = config.forget_bias
        assert torch.equal(param, expected), name
    elif "bias" in name:
        assert torch.all(param == 0), name
    else:
        # the spread of U[-r, r] is r/sqrt(3); a handful of draws (a CRF's 3 start scores) can sit closer together
        assert param.abs().max() <= r and (param.numel() < 10 or param.std() > r / 4), name


def test_the_default_init_scale_is_one_over_the_square_root_of_the_fan_in():
    model = hf_rnn.RnnForTokenClassification(tiny_config(hidden_size=16, embedding_size=9, use_crf=True, **BIO_LABELS))
    assert model.config.initializer_range is None
    lstm, classifier = model.model.layers[0].directions[0], model.classifier
    assert model.init_range(lstm) == 16**-0.5 and model.init_range(classifier) == 16**-0.5
    assert model.init_range(model.model.embeddings) == 9**-0.5 and model.init_range(model.crf) == 3**-0.5
    assert 0.8 * 16**-0.5 < lstm.weight_hh_l0.abs().max() <= 16**-0.5


BIO_LABELS = {"id2label": {0: "O", 1: "B-X", 2: "I-X"}, "label2id": {"O": 0, "B-X": 1, "I-X": 2}}
CRF = dict(use_crf=True, crf_constraints="BIO", **BIO_LABELS)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("cell_type", CELLS)
@pytest.mark.parametrize("initializer_range", [0.05, None])
def test_meta_device_init_equals_init(head, cell_type, initializer_range):
    """A model built on the meta device and initialised by `init_weights` obeys the same rule as `__init__`:
    no parameter escapes `_init_weights` (each starts as NaN here)."""
    extra = CRF if head is hf_rnn.RnnForTokenClassification else {}
    config = tiny_config(cell_type=cell_type, initializer_range=initializer_range, forget_bias=2.0, **extra)
    check_init_rule(head(config))
    with torch.device("meta"):
        model = head(config)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float("nan"))
    model.init_weights()
    check_init_rule(model)
    if extra:  # the constraint masks are buffers rebuilt from the config, not loaded
        assert torch.equal(model.crf.allowed_transitions, head(config).crf.allowed_transitions)
        assert not model.crf.allowed_transitions.all()


@pytest.mark.parametrize("head, extra", [(h, {}) for h in HEADS] + [(hf_rnn.RnnForTokenClassification, CRF)])
def test_save_and_load_round_trip_is_exact(head, extra, tmp_path):
    model = head(tiny_config(bidirectional=head is not hf_rnn.RnnForCausalLM, **extra)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    assert {"configuration_rnn.py", "modeling_rnn.py"} <= {p.name for p in tmp_path.glob("*.py")}
    loaded = type(model).from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.randint(1, 37, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    expected, actual = model(ids, attention_mask=mask), loaded(ids, attention_mask=mask)
    torch.testing.assert_close(actual[0], expected[0], rtol=0, atol=0)
    code = {p.name for p in tmp_path.glob("*.py")}
    # every checkpoint carries every head's code: any head loads from it with remote code (test_remote_code.py)
    assert {"modeling_tagger.py", "heads.py", "crf.py", "schemes.py", "masking.py"} <= code, code
    if extra:
        assert torch.equal(loaded.crf.allowed_transitions, model.crf.allowed_transitions)
        assert torch.equal(actual.predictions, expected.predictions)


def test_loading_a_base_checkpoint_into_a_head_keeps_loaded_weights(tmp_path):
    """The loaded LSTM biases must survive `_init_weights` (the forget-gate bias is written whole, not by slice)."""
    base = hf_rnn.RnnModel(tiny_config(forget_bias=1.0))
    with torch.no_grad():
        for param in base.parameters():
            param.add_(0.5)
    base.save_pretrained(tmp_path)
    tagger = AutoModelForTokenClassification.from_pretrained(tmp_path)
    for name, param in base.state_dict().items():
        assert torch.equal(tagger.model.state_dict()[name], param), name
    assert torch.all(tagger.classifier.bias == 0)
    assert tagger.classifier.weight.abs().max() <= tagger.init_range(tagger.classifier)


@pytest.mark.parametrize("embedding_size, hidden_size", [(6, 6), (6, 9)])
def test_tied_lm_weights(embedding_size, hidden_size, tmp_path):
    config = tiny_config(tie_word_embeddings=True, embedding_size=embedding_size, hidden_size=hidden_size)
    model = hf_rnn.RnnForCausalLM(config)
    assert model.lm_head.weight is model.model.embeddings.weight
    assert (model.projection is None) == (embedding_size == hidden_size)
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embeddings.weight
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    untied = hf_rnn.RnnForCausalLM(tiny_config(tie_word_embeddings=False))
    assert untied.lm_head.weight is not untied.model.embeddings.weight and untied.projection is None


@pytest.mark.parametrize("tie", [True, False])
def test_resize_token_embeddings(tie):
    model = hf_rnn.RnnForCausalLM(tiny_config(tie_word_embeddings=tie)).eval()
    ids = torch.randint(1, 37, (2, 4))
    before = model(ids).logits
    model.resize_token_embeddings(45)
    assert model.config.vocab_size == 45
    assert model.get_input_embeddings().weight.shape[0] == 45 and model.lm_head.weight.shape[0] == 45
    assert model.lm_head.bias.shape == (45,)
    assert (model.lm_head.weight is model.model.embeddings.weight) == tie
    after = model(torch.cat([ids, torch.tensor([[44], [40]])], 1)).logits
    assert after.shape == (2, 5, 45)
    torch.testing.assert_close(after[:, :4, :37], before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head, extra", [(h, {}) for h in HEADS[1:]] + [(hf_rnn.RnnForTokenClassification, CRF)])
@pytest.mark.parametrize("cell_type", CELLS)
def test_training_steps_reduce_the_loss(head, extra, cell_type):
    config = tiny_config(cell_type=cell_type, bidirectional=head is not hf_rnn.RnnForCausalLM, **extra)
    model = head(config).train()
    ids = torch.randint(1, 37, (8, 6))
    labels = torch.randint(0, 3, (8,) if head is hf_rnn.RnnForSequenceClassification else (8, 6))
    labels = ids if head is hf_rnn.RnnForCausalLM else labels
    if extra:  # O and B-X only: every sequence is valid BIO
        labels = torch.randint(0, 2, (8, 6))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = model(ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("cell_type", CELLS)
def test_gradient_checkpointing_gives_the_same_gradients(cell_type):
    config = tiny_config(cell_type=cell_type, bidirectional=True, num_layers=3)
    model = hf_rnn.RnnForTokenClassification(config).train()
    ids = torch.randint(1, 37, (4, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0] * 3 + [1] * 3, [1] * 6])
    labels = torch.randint(0, 3, (4, 6)).masked_fill(mask == 0, -100)

    def gradients():
        model.zero_grad()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.model.layers)
    checkpointed = gradients()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
