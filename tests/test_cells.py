"""The cell registry, and the min cells (Feng et al. 2024) against the paper's recurrences run step by step.

The behaviour every cell shares (padding invariance, carried state, generate, init, training, remote code) is
tested for all registered cells in test_modeling, test_generation, test_weights and test_remote_code.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CELLS, REGISTRY, tiny_config

import hf_rnn
from hf_rnn.cell_min import SCAN_CHUNK, MinGruCell
from hf_rnn.cells import cell_of
from hf_rnn.configuration_rnn import CELL_TYPES
from hf_rnn.hub import model_card

MIN_CELLS = ("mingru", "minlstm")
PRE_CELLS = Path(__file__).parent / "fixtures" / "pre_cells"


def paper_loop(cell: torch.nn.Module, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's sequential minGRU / minLSTM, one step at a time in float64. x (B, T, in), h0 (B, H) -> (B, T, H)."""
    return recurrence(cell, x.double() @ cell.weight_ih_l0.double().T + cell.bias_ih_l0.double(), h0)


def recurrence(cell: torch.nn.Module, projections: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The recurrence step by step in float64 on given projections (B, T, gates * H), every gate written without
    cancellation (1 - σ(u) as σ(-u), f / (f + i) as σ(log f - log i)), so that it is exact at any pre-activation."""
    projections = projections.double()
    h = projections.new_zeros(projections.size(0), cell.hidden_size) if h0 is None else h0.double()
    outputs = []
    for k in projections.unbind(1):
        if isinstance(cell, MinGruCell):
            update, candidate = k.chunk(2, -1)
            h = torch.sigmoid(-update) * h + torch.sigmoid(update) * g(candidate)
        else:
            input_gate, forget_gate, candidate = k.chunk(3, -1)
            log_ratio = F.logsigmoid(forget_gate) - F.logsigmoid(input_gate)  # log(f / i)
            h = torch.sigmoid(log_ratio) * h + torch.sigmoid(-log_ratio) * g(candidate)
        outputs.append(h)
    return torch.stack(outputs, 1)


def g(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def min_cell(cell_type: str, hidden_size: int = 6, input_size: int = 5) -> torch.nn.Module:
    """One direction, with weights and biases drawn wide enough that the gates are far from 1/2."""
    cell = REGISTRY[cell_type].build(tiny_config(cell_type=cell_type, hidden_size=hidden_size), input_size)
    with torch.no_grad():
        for param in cell.parameters():
            param.normal_(0, 1.0)
    return cell


def test_the_registry_names_the_configs_cell_types():
    assert tuple(REGISTRY) == CELL_TYPES  # the config keeps the names torch-free; both must agree
    for name, spec in REGISTRY.items():
        config = tiny_config(cell_type=name)
        cell = spec.build(config, 7)
        assert isinstance(cell, spec.kind) and cell_of(cell) is spec
        outputs, final = cell(torch.randn(2, 3, 7))
        assert outputs.shape == (2, 3, config.hidden_size) and len(final) == spec.state_size
        assert all(s.shape == (1, 2, config.hidden_size) for s in final)
    assert cell_of(torch.nn.LSTM(3, 4)) is REGISTRY["lstm"]  # the character BiLSTM starts like an LSTM cell
    assert cell_of(torch.nn.Linear(3, 4)) is None


@pytest.mark.parametrize("cell_type", CELLS)
def test_the_model_card_names_the_cell(cell_type):
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type))
    assert f"-layer {REGISTRY[cell_type].display_name} (RnnForCausalLM" in str(model_card(model, "me/lm"))


@pytest.mark.parametrize("cell_type", MIN_CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_min_layer_matches_the_paper_equations(cell_type, bidirectional):
    config = tiny_config(cell_type=cell_type, num_layers=1, bidirectional=bidirectional)
    model = hf_rnn.RnnModel(config).eval()
    for cell in model.layers[0].directions:
        with torch.no_grad():
            cell.bias_ih_l0.normal_()
    ids = torch.randint(1, config.vocab_size, (3, 7))
    output = model(ids, use_cache=True)
    x = model.embeddings(ids)
    forward = paper_loop(model.layers[0].directions[0], x)
    expected, final = [forward], [forward[:, -1]]
    if bidirectional:
        backward = paper_loop(model.layers[0].directions[1], x.flip(1)).flip(1)
        expected.append(backward)
        final.append(backward[:, 0])
    torch.testing.assert_close(output.last_hidden_state.double(), torch.cat(expected, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.cache.hidden.double(), torch.stack(final), atol=1e-5, rtol=1e-5)
    assert output.cache.cell is None


@pytest.mark.parametrize("cell_type", MIN_CELLS)
def test_any_initial_state_and_ragged_lengths_over_several_scan_chunks(cell_type):
    """A carried state of either sign (a cache, a TBPTT window, a user's state) is exact, over sequences that span
    several scan chunks; with lengths, the final state is each row's state after its last real step."""
    cell = min_cell(cell_type)
    steps = 2 * SCAN_CHUNK + 9
    x, h0 = torch.randn(3, steps, 5), 3 * torch.randn(3, 6)
    assert (h0 < 0).any()
    expected = paper_loop(cell, x, h0)
    lengths = torch.tensor([steps, SCAN_CHUNK + 1, 0])
    outputs, (final,) = cell(x, (h0[None],), lengths)
    torch.testing.assert_close(outputs.double(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final[0, 0].double(), expected[0, -1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final[0, 1].double(), expected[1, SCAN_CHUNK], atol=1e-5, rtol=1e-4)
    assert torch.equal(final[0, 2], h0[2])  # no real step: the state carries over


@pytest.mark.parametrize("cell_type", MIN_CELLS)
def test_the_scan_stays_precise_at_2048_steps(cell_type):
    """Long sequences chain chunks through their last state: no error builds up over 2048 steps."""
    cell = min_cell(cell_type)
    x = torch.randn(2, 2048, 5)
    outputs, _ = cell(x)
    expected = paper_loop(cell, x)
    assert ((outputs.double() - expected).abs() / expected.abs()).max() < 1e-4


@pytest.mark.parametrize("cell_type", MIN_CELLS)
def test_gradients_equal_autograd_through_the_step_by_step_loop(cell_type):
    """The scan's backward (through cumsum and logcumsumexp) against autograd through the paper's loop, float64,
    for the weights, the inputs and the initial state, with a loss on every output and on the final state."""
    cell = min_cell(cell_type).double()
    steps = SCAN_CHUNK + 11
    x = torch.randn(2, steps, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, steps, 6, dtype=torch.float64)

    def gradients(run):
        outputs, final = run()
        loss = (outputs * weights).sum() + final.pow(2).sum()
        return torch.autograd.grad(loss, (x, h0, cell.weight_ih_l0, cell.bias_ih_l0))

    def scan():
        outputs, (final,) = cell(x, (h0[None],))
        return outputs, final[0]

    def loop():
        outputs = paper_loop(cell, x, h0)
        return outputs, outputs[:, -1]

    for ours, reference in zip(gradients(scan), gradients(loop)):
        torch.testing.assert_close(ours, reference, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("cell_type", MIN_CELLS)
def test_log_space_coefficients_survive_saturated_gates(cell_type):
    """Projections of ±60 saturate every sigmoid: the outputs and gradients stay finite and match the loop."""
    cell = min_cell(cell_type)
    with torch.no_grad():
        cell.weight_ih_l0.mul_(30)
    x = torch.randn(2, 40, 5, requires_grad=True)
    outputs, _ = cell(x)
    outputs.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(cell.weight_ih_l0.grad).all()
    expected = paper_loop(cell, x.detach())
    torch.testing.assert_close(outputs.double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cell_type", MIN_CELLS)
@pytest.mark.parametrize("scale", [1, 60, 200, 2000, 1e6, 1e30])
def test_the_scan_equals_the_step_by_step_recurrence_at_any_gate_pre_activation(cell_type, scale):
    """Inputs scaled up to 1e30 drive the pre-activations far past where sigmoids saturate: the scan (over several
    chunks, from a carried state) keeps float32's precision against the recurrence in float64 on the same float32
    projections (so that only the scan is measured, not the rounding of W x at that scale)."""
    cell = min_cell(cell_type)
    x, h0 = scale * torch.randn(2, SCAN_CHUNK + 20, 5), scale * torch.randn(2, 6)
    outputs, (final,) = cell(x, (h0[None],))
    expected = recurrence(cell, F.linear(x, cell.weight_ih_l0, cell.bias_ih_l0), h0)
    assert torch.isfinite(outputs).all()
    torch.testing.assert_close(outputs.double(), expected, rtol=5e-5, atol=1e-30)
    torch.testing.assert_close(final[0].double(), expected[:, -1], rtol=5e-5, atol=1e-30)


@pytest.mark.parametrize("cell_type", MIN_CELLS)
def test_generate_feeds_one_token_per_step(cell_type):
    """O(1) per new token: after the prompt, every forward call reads one token and the carried state."""
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type, eos_token_id=None)).eval()
    lengths = []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    model.generate(torch.randint(1, 37, (2, 5)), max_new_tokens=4, do_sample=False)
    assert lengths == [5, 1, 1, 1]


@pytest.mark.parametrize("made_by, used_by", [("lstm", "minlstm"), ("mingru", "lstm")])
def test_a_cache_of_another_cell_type_is_refused_by_name(made_by, used_by):
    ids = torch.randint(1, 37, (2, 4))
    cache = hf_rnn.RnnForCausalLM(tiny_config(cell_type=made_by))(ids).cache
    with pytest.raises(ValueError, match=f"{REGISTRY[used_by].display_name} layer carries"):
        hf_rnn.RnnForCausalLM(tiny_config(cell_type=used_by))(ids, cache=cache)


def test_the_min_cells_start_from_one_over_the_square_root_of_their_input_width():
    model = hf_rnn.RnnModel(tiny_config(cell_type="minlstm", embedding_size=9, hidden_size=4, forget_bias=2.0))
    first, second = (layer.directions[0] for layer in model.layers)
    assert model.init_range(first) == 9**-0.5 and model.init_range(second) == 4**-0.5
    assert first.bias_ih_l0[4:8].eq(2.0).all() and first.bias_ih_l0[:4].eq(0).all()  # (input, forget, candidate)


@pytest.mark.parametrize("folder", sorted(path.name for path in PRE_CELLS.iterdir() if path.is_dir()))
def test_checkpoints_from_before_the_registry_load_unchanged(folder):
    """Tiny rnn/gru/lstm checkpoints saved by the code before `cells.py` (tests/fixtures/pre_cells/make.py): the
    same parameter names, the same logits and LM state."""
    expected = json.loads((PRE_CELLS / folder / "expected.json").read_text())
    head = hf_rnn.RnnForCausalLM if folder.endswith("-lm") else hf_rnn.RnnForSequenceClassification
    model = head.from_pretrained(PRE_CELLS / folder).eval()
    assert list(model.state_dict()) == expected["state_dict_keys"]
    inputs = dict(
        input_ids=torch.tensor(expected["input_ids"]), attention_mask=torch.tensor(expected["attention_mask"])
    )
    with torch.no_grad():
        output = model(**inputs)
    torch.testing.assert_close(output.logits, torch.tensor(expected["logits"]), atol=1e-6, rtol=1e-6)
    if "cache" in expected:
        hidden, cell = expected["cache"]
        torch.testing.assert_close(output.cache.hidden, torch.tensor(hidden), atol=1e-6, rtol=1e-6)
        assert (output.cache.cell is None) == (cell is None)
        if cell is not None:
            torch.testing.assert_close(output.cache.cell, torch.tensor(cell), atol=1e-6, rtol=1e-6)
