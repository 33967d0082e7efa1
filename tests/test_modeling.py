"""Model behaviour: the lecture's equations, padding invariance, state carrying, heads, and the Auto classes."""

import pytest
import torch
from conftest import CELLS, REGISTRY, TORCH_CELLS, tiny_config
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import hf_rnn
from hf_rnn.dropout import SequenceDropout, WordDropout

HEADS = (hf_rnn.RnnModel, hf_rnn.RnnForTokenClassification, hf_rnn.RnnForSequenceClassification, hf_rnn.RnnForCausalLM)


def reference_layer(cell_type: str, rnn: nn.Module, x: torch.Tensor, nonlinearity: str = "tanh") -> torch.Tensor:
    """The seed lecture's recurrences written out step by step, with the weights of a one-layer torch module.

    x (B, T, in) -> h (B, T, H).
    """
    w_ih, w_hh, b_ih, b_hh = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
    batch_size, hidden_size = x.size(0), rnn.hidden_size
    h = x.new_zeros(batch_size, hidden_size)
    c = x.new_zeros(batch_size, hidden_size)
    outputs = []
    for x_m in x.unbind(1):
        if cell_type == "rnn":  # h_m = g(Θʰ h_{m-1} + Θˣ x_m)
            g = torch.tanh if nonlinearity == "tanh" else torch.relu
            h = g(x_m @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        elif cell_type == "gru":
            xr, xz, xn = (x_m @ w_ih.T + b_ih).chunk(3, -1)
            hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, -1)
            reset, update = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            candidate = torch.tanh(xn + reset * hn)
            h = (1 - update) * candidate + update * h
        else:
            i, f, g, o = (x_m @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1)


@pytest.mark.parametrize(
    "cell_type, nonlinearity", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_matches_the_lecture_equations(cell_type, nonlinearity, bidirectional):
    config = tiny_config(cell_type=cell_type, nonlinearity=nonlinearity, num_layers=1, bidirectional=bidirectional)
    model = hf_rnn.RnnModel(config).eval()
    ids = torch.randint(1, config.vocab_size, (3, 7))
    out = model(ids).last_hidden_state
    x = model.embeddings(ids)
    layer = model.layers[0]
    expected = reference_layer(cell_type, layer.directions[0], x, nonlinearity)
    if bidirectional:
        backward = reference_layer(cell_type, layer.directions[1], x.flip(1), nonlinearity).flip(1)
        expected = torch.cat([expected, backward], -1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell_type", TORCH_CELLS)
def test_bidirectional_stack_matches_torch_packed_module(cell_type):
    """Our per-direction layers with padding == one `nn.LSTM(bidirectional=True)` over a packed batch."""
    config = tiny_config(cell_type=cell_type, num_layers=2, bidirectional=True)
    model = hf_rnn.RnnModel(config).eval()
    torch_rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell_type](
        config.embedding_size, config.hidden_size, num_layers=2, bidirectional=True, batch_first=True
    )
    with torch.no_grad():
        for index, layer in enumerate(model.layers):
            for direction, suffix in ((0, ""), (1, "_reverse")):
                for name, param in layer.directions[direction].named_parameters():
                    getattr(torch_rnn, name.replace("_l0", f"_l{index}") + suffix).copy_(param)
    ids = torch.randint(1, config.vocab_size, (4, 9))
    lengths = torch.tensor([9, 4, 7, 1])
    mask = torch.arange(9) < lengths[:, None]
    ours = model(ids, attention_mask=mask.long(), use_cache=True)
    packed = nn.utils.rnn.pack_padded_sequence(model.embeddings(ids), lengths, batch_first=True, enforce_sorted=False)
    out, final = torch_rnn(packed)
    expected = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=9)[0]
    torch.testing.assert_close(ours.last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.cache.hidden, final[0] if cell_type == "lstm" else final, atol=1e-5, rtol=1e-5)
    if cell_type == "lstm":
        torch.testing.assert_close(ours.cache.cell, final[1], atol=1e-5, rtol=1e-5)


def _padded_batch(vocab_size: int, side: str):
    """Three sequences of lengths 6, 3, 5 in a batch of width 8, padded on `side` ("left", "right" or "holes")."""
    lengths = (6, 3, 5)
    sequences = [torch.randint(1, vocab_size, (n,)) for n in lengths]
    ids = torch.zeros(3, 8, dtype=torch.long)
    mask = torch.zeros(3, 8, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if side == "right":
            positions = torch.arange(len(seq))
        elif side == "left":
            positions = torch.arange(8 - len(seq), 8)
        else:  # real tokens scattered between padding
            positions = torch.randperm(8)[: len(seq)].sort().values
        ids[row, positions] = seq
        mask[row, positions] = 1
    return sequences, ids, mask


def _head_output(model, **inputs) -> torch.Tensor:
    out = model(**inputs)
    return out.last_hidden_state if isinstance(model, hf_rnn.RnnModel) else out.logits


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("cell_type", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("side", ["right", "left", "holes"])
def test_padding_never_changes_a_sequence(head, cell_type, bidirectional, side):
    if head is hf_rnn.RnnForCausalLM and bidirectional:
        pytest.skip("a causal LM is unidirectional")
    config = tiny_config(cell_type=cell_type, bidirectional=bidirectional, pad_token_id=0)
    model = head(config).eval()
    sequences, ids, mask = _padded_batch(config.vocab_size, side)
    # make padding tokens non-zero and varied: nothing may depend on what sits under the mask
    ids = torch.where(mask.bool(), ids, torch.randint(1, config.vocab_size, ids.shape))
    batched = _head_output(model, input_ids=ids, attention_mask=mask)
    for row, seq in enumerate(sequences):
        alone = _head_output(model, input_ids=seq[None])[0]
        if head is hf_rnn.RnnForSequenceClassification:
            torch.testing.assert_close(batched[row], alone, atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(batched[row][mask[row].bool()], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell_type", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_final_state_of_a_padded_batch_equals_each_sequence_alone(cell_type, bidirectional, side):
    config = tiny_config(cell_type=cell_type, bidirectional=bidirectional)
    model = hf_rnn.RnnModel(config).eval()
    sequences, ids, mask = _padded_batch(config.vocab_size, side)
    cache = model(ids, attention_mask=mask, use_cache=True).cache
    for row, seq in enumerate(sequences):
        alone = model(seq[None], use_cache=True).cache
        assert len(cache.states) == len(alone.states) == REGISTRY[cell_type].state_size
        for batched, single in zip(cache.states, alone.states):  # every part: h, the LSTM's c, the sLSTM's n, m
            torch.testing.assert_close(batched[:, row], single[:, 0], atol=1e-5, rtol=1e-5)
        assert (cache.cell is None) == (REGISTRY[cell_type].state_size == 1)


def test_all_padding_row_gives_zero_outputs_and_zero_state():
    model = hf_rnn.RnnModel(tiny_config(bidirectional=True)).eval()
    ids = torch.randint(1, 37, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    out = model(ids, attention_mask=mask, use_cache=True)
    assert torch.all(out.last_hidden_state[1] == 0) and torch.all(out.cache.hidden[:, 1] == 0)
    assert torch.all(out.cache.cell[:, 1] == 0)


@pytest.mark.parametrize("cell_type", CELLS)
def test_carried_state_continues_the_sequence(cell_type):
    """Two windows with the state carried == one long call (what truncated BPTT and generate rely on)."""
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type)).eval()
    ids = torch.randint(1, 37, (2, 10))
    whole = model(ids, use_cache=True)
    first = model(ids[:, :6], use_cache=True)
    second = model(ids[:, 6:], cache=first.cache, use_cache=True)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), whole.logits, atol=1e-5, rtol=1e-5)
    for carried, single in zip(second.cache.states, whole.cache.states, strict=True):
        torch.testing.assert_close(carried, single, atol=1e-5, rtol=1e-5)


def test_hidden_states_output():
    config = tiny_config(num_layers=3, bidirectional=True)
    model = hf_rnn.RnnForTokenClassification(config).eval()
    ids = torch.randint(1, 37, (2, 4))
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == config.num_layers + 1
    assert out.hidden_states[0].shape == (2, 4, config.embedding_size)
    assert all(h.shape == (2, 4, 2 * config.hidden_size) for h in out.hidden_states[1:])
    base = model.model(ids, attention_mask=mask)
    torch.testing.assert_close(out.hidden_states[-1], base.last_hidden_state)
    assert torch.all(out.hidden_states[2][1, 0] == 0)  # padding position zeroed
    assert model(ids).hidden_states is None


def test_return_dict_false_gives_tuples():
    model = hf_rnn.RnnForTokenClassification(tiny_config()).eval()
    ids = torch.randint(1, 37, (2, 4))
    labels = torch.randint(0, 3, (2, 4))
    loss, logits, emissions, predictions = model(ids, labels=labels, return_dict=False)
    torch.testing.assert_close(logits, model(ids).logits)
    assert emissions is logits  # the softmax head's scores are its emissions
    assert torch.equal(predictions, logits.argmax(-1))
    assert loss.ndim == 0


def test_exactly_one_of_ids_and_embeddings():
    model = hf_rnn.RnnModel(tiny_config())
    with pytest.raises(ValueError, match="exactly one"):
        model()
    ids = torch.randint(1, 37, (1, 3))
    torch.testing.assert_close(
        model(inputs_embeds=model.embeddings(ids)).last_hidden_state, model(ids).last_hidden_state
    )


def test_causal_lm_refuses_bidirectional():
    with pytest.raises(ValueError, match="bidirectional"):
        hf_rnn.RnnForCausalLM(tiny_config(bidirectional=True))


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_sequence_pooling_against_a_direct_computation(pooling):
    config = tiny_config(bidirectional=True, classifier_pooling=pooling)
    model = hf_rnn.RnnForSequenceClassification(config).eval()
    sequences, ids, mask = _padded_batch(config.vocab_size, "left")
    logits = model(ids, attention_mask=mask).logits
    for row, seq in enumerate(sequences):
        hidden = model.model(seq[None]).last_hidden_state[0]  # (n, 2H)
        if pooling == "last":
            pooled = torch.cat([hidden[-1, : config.hidden_size], hidden[0, config.hidden_size :]])
        elif pooling == "mean":
            pooled = hidden.mean(0)
        else:
            pooled = hidden.max(0).values
        torch.testing.assert_close(logits[row], model.classifier(pooled), atol=1e-5, rtol=1e-5)


def test_auto_classes_map_to_hf_rnn():
    config = tiny_config()
    for auto, expected in (
        (AutoModel, hf_rnn.RnnModel),
        (AutoModelForCausalLM, hf_rnn.RnnForCausalLM),
        (AutoModelForTokenClassification, hf_rnn.RnnForTokenClassification),
        (AutoModelForSequenceClassification, hf_rnn.RnnForSequenceClassification),
    ):
        assert type(auto.from_config(config)) is expected


def test_causal_lm_takes_shift_labels_sliced_from_a_stream():
    """TBPTT slices windows out of (rows, L) streams: a non-contiguous `shift_labels` must work like a copy."""
    model = hf_rnn.RnnForCausalLM(tiny_config()).eval()
    stream = torch.randint(1, 37, (3, 20))
    ids, targets = stream[:, 4:9], stream[:, 5:10]
    assert not targets.is_contiguous()
    loss = model(input_ids=ids, shift_labels=targets).loss
    torch.testing.assert_close(loss, model(input_ids=ids, shift_labels=targets.clone()).loss)
    logits = model(input_ids=ids).logits
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()))


def test_locked_dropout_reuses_one_mask_per_sequence_at_every_step():
    dropout = SequenceDropout(0.5, locked=True).train()
    x = torch.rand(64, 30, 40) + 0.5  # (B, T, D), no zeros of its own
    scale = dropout(x) / x  # (B, T, D): 0 or 1 / (1 - p)
    assert torch.equal(scale, scale[:, :1].expand_as(scale))  # the same mask at every step of a sequence
    assert set(scale.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(scale[0], scale[1])  # each sequence draws its own
    assert abs(scale[:, 0].mean().item() - 1.0) < 0.1  # unbiased: E[scale] = 1 (2,560 draws, sd 0.02)
    unlocked = SequenceDropout(0.5).train()(x) / x
    assert not torch.equal(unlocked, unlocked[:, :1].expand_as(unlocked))
    assert torch.equal(dropout.eval()(x), x)


def test_word_dropout_zeroes_whole_tokens_without_rescaling():
    dropout = WordDropout(0.25).train()
    x = torch.rand(64, 30, 8) + 0.5  # (B, T, D)
    y = dropout(x)
    dropped = (y == 0).all(-1)  # (B, T)
    assert torch.equal(y[~dropped], x[~dropped])  # kept tokens untouched, not scaled by 1 / (1 - p)
    assert abs(dropped.float().mean().item() - 0.25) < 0.04  # 1,920 draws, sd 0.01
    assert torch.equal(dropout.eval()(x), x)


def test_dropout_config_reaches_every_dropout_site_of_the_model():
    model = hf_rnn.RnnForTokenClassification(
        tiny_config(
            bidirectional=True,
            char_encoder="lstm",
            char_vocab_size=9,
            dropout=0.3,
            locked_dropout=True,
            word_dropout=0.5,
        )
    )
    sites = [m for m in model.modules() if isinstance(m, SequenceDropout)]
    # embeddings, between layers, before the head, the character embeddings
    assert len(sites) == 4 and all(m.locked for m in sites)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    inputs = []
    model.model.layers[0].register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    model.train()(torch.full((2, 16), 5), char_ids=torch.full((2, 16, 3), 4))
    whole_tokens = (inputs[0] == 0).all(-1)  # (B, T) word dropout: every feature of a token at once
    assert whole_tokens.any() and not whole_tokens.all()


@pytest.mark.parametrize("cell_type", CELLS)
def test_a_narrow_default_lm_learns_a_cycle(cell_type):
    """transformers' TrainingTesterMixin.test_training_overfit in small: 2 layers of width 32, Adam lr 0.01, a 19-token
    cycle. With every weight in U[-0.1, 0.1] the GRU stalled near log(19) and could not regenerate the cycle."""
    torch.manual_seed(0)
    config = hf_rnn.RnnConfig(
        cell_type=cell_type, vocab_size=99, embedding_size=32, hidden_size=32, num_layers=2, tie_word_embeddings=True
    )
    model = hf_rnn.RnnForCausalLM(config)
    cycle = list(range(1, 20)) * 2
    ids = torch.tensor([cycle])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    generated = model.eval().generate(ids[:, :1], max_new_tokens=len(cycle) - 1, do_sample=False)
    assert generated[0].tolist() == cycle
