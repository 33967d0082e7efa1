"""The sLSTM cell (xLSTM, Beck et al. 2024) against the paper's equations, step by step in float64.

The behaviour every cell shares (padding-exact outputs and states, carried state, cached generation, remote code,
`_init_weights` on the meta device) is tested for every name in `cells.CELLS` in the other files; here, what only the
sLSTM has: exponential gates, the normaliser and stabiliser states, heads.
"""

import math

import pytest
import torch

import hf_rnn


def slstm_config(**overrides) -> hf_rnn.RnnConfig:
    values = dict(cell_type="slstm", vocab_size=23, embedding_size=5, hidden_size=6, slstm_num_heads=3)
    return hf_rnn.RnnConfig(**{**values, **overrides})


def paper_reference(cell, inputs: torch.Tensor, exponential: bool):
    """One direction on one sequence, inputs (T, in), in float64, unit by unit and head by head.

    The paper's unstabilised state written as a weighted average: c_t / n_t = sum_s w_s z_s / sum_s w_s with
    w_s = i_s f_{s+1} ... f_t (c_t = f_t c_{t-1} + i_t z_t, n_t = f_t n_{t-1} + i_t from zero), kept as log w_s so
    that any pre-activation is exact. Unit u of head k reads the recurrent row (gate g, unit j) of its head's block,
    applied to its head's part of h_{t-1} only. Returns the outputs (T, H) and, at the last step, c / n and
    log n_unstabilised = logsumexp_s log w_s (what the stabilised state holds as m + log n).
    """
    weight_ih, bias, weight_hh = (p.detach().double() for p in (cell.weight_ih_l0, cell.bias_ih_l0, cell.weight_hh_l0))
    hidden_size = weight_ih.size(0) // 4
    heads, head_size = weight_hh.size(0), weight_hh.size(2)
    h = torch.zeros(hidden_size, dtype=torch.float64)
    log_weights = [[] for _ in range(hidden_size)]  # per unit: log w_s of every step so far
    candidates = [[] for _ in range(hidden_size)]  # per unit: z_s
    outputs, ratio, log_n = [], torch.zeros(hidden_size, dtype=torch.float64), torch.zeros_like(h)
    for x in inputs.double():
        new_h = torch.zeros_like(h)
        for k in range(heads):
            h_head = h[k * head_size : (k + 1) * head_size]
            for j in range(head_size):
                u = k * head_size + j
                i_pre, f_pre, z_pre, o_pre = (
                    weight_ih[g * hidden_size + u] @ x
                    + bias[g * hidden_size + u]
                    + weight_hh[k, g * head_size + j] @ h_head
                    for g in range(4)
                )
                log_f = f_pre if exponential else torch.nn.functional.logsigmoid(f_pre)
                log_weights[u] = [w + log_f for w in log_weights[u]] + [i_pre]
                candidates[u].append(torch.tanh(z_pre))
                weights = torch.stack(log_weights[u])
                ratio[u] = torch.softmax(weights, 0) @ torch.stack(candidates[u])
                log_n[u] = torch.logsumexp(weights, 0)
                new_h[u] = torch.sigmoid(o_pre) * ratio[u]
        h = new_h
        outputs.append(h)
    return torch.stack(outputs), ratio, log_n


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exponential"])
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: pre-activations in the hundreds, where exp(i) overflows
def test_outputs_and_state_follow_the_papers_equations(forget_gate, scale):
    config = slstm_config(bidirectional=True, slstm_forget_gate=forget_gate)
    model = hf_rnn.RnnModel(config).eval()
    with torch.no_grad():
        for param in model.layers.parameters():
            param.mul_(scale)
    embeds = torch.randn(2, 7, config.embedding_size)
    with torch.no_grad():
        output = model(inputs_embeds=embeds, use_cache=True)
    h, c, n, m = output.cache.states  # each (directions, B, H)
    assert all(s.dtype == torch.float32 and torch.isfinite(s).all() for s in output.cache.states)
    for row in range(2):
        for direction, cell in enumerate(model.layers[0].directions):
            inputs = embeds[row] if direction == 0 else embeds[row].flip(0)
            expected, ratio, log_n = paper_reference(cell, inputs, forget_gate == "exponential")
            if direction == 1:
                expected = expected.flip(0)
            width = slice(direction * config.hidden_size, (direction + 1) * config.hidden_size)
            torch.testing.assert_close(output.last_hidden_state[row, :, width].double(), expected, atol=1e-5, rtol=0)
            final = (h[direction, row], c[direction, row], n[direction, row], m[direction, row])
            torch.testing.assert_close(final[1].double() / final[2].double(), ratio, atol=1e-5, rtol=0)
            torch.testing.assert_close(
                final[3].double() + final[2].double().log(), log_n, atol=1e-3 * scale, rtol=1e-5
            )
            assert (final[2] >= 1 - 1e-6).all()  # the stabiliser keeps the normaliser >= 1: no 0 / 0


def test_heads_are_block_diagonal():
    """A change to one head's state moves only that head's next gates."""
    model = hf_rnn.RnnModel(slstm_config(slstm_num_heads=3)).eval()
    embeds = torch.randn(1, 2, 5)
    with torch.no_grad():
        first = model(inputs_embeds=embeds[:, :1], use_cache=True).cache
        states = [s.clone() for s in first.states]
        states[0][..., :2] += 1.0  # h of head 0 (units 0, 1)
        base = model(inputs_embeds=embeds[:, 1:], cache=first).last_hidden_state
        moved = model(inputs_embeds=embeds[:, 1:], cache=hf_rnn.RnnCache(*states)).last_hidden_state
    changed = (moved - base).abs()[0, 0] > 1e-7
    assert changed[:2].all() and not changed[2:].any()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_heads_padding_exact(bidirectional):
    """Left and right padding, with several heads: each row's outputs and four-part state equal the row alone."""
    model = hf_rnn.RnnModel(slstm_config(num_layers=2, bidirectional=bidirectional)).eval()
    sequences = [torch.randint(1, 23, (n,)) for n in (6, 3, 1)]
    for side in ("left", "right"):
        ids, mask = torch.zeros(3, 6, dtype=torch.long), torch.zeros(3, 6, dtype=torch.long)
        for row, seq in enumerate(sequences):
            span = slice(6 - len(seq), 6) if side == "left" else slice(0, len(seq))
            ids[row, span], mask[row, span] = seq, 1
        with torch.no_grad():
            batch = model(ids, attention_mask=mask, use_cache=True)
            for row, seq in enumerate(sequences):
                alone = model(seq[None], use_cache=True)
                torch.testing.assert_close(batch.last_hidden_state[row][mask[row].bool()], alone.last_hidden_state[0])
                for batched, single in zip(batch.cache.states, alone.cache.states, strict=True):
                    torch.testing.assert_close(batched[:, row], single[:, 0])


def test_generation_carries_the_four_part_state():
    """Greedy generate (one step per token from the cache) equals re-reading the whole sequence at every step."""
    model = hf_rnn.RnnForCausalLM(slstm_config(num_layers=2)).eval()
    prompt = torch.randint(1, 23, (2, 4))
    generated = model.generate(prompt, max_new_tokens=6, do_sample=False)
    ids = prompt
    with torch.no_grad():
        for _ in range(6):
            ids = torch.cat([ids, model(ids, use_cache=False).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(generated, ids)


def test_bf16_autocast_keeps_the_recurrence_in_float32():
    model = hf_rnn.RnnModel(slstm_config()).eval()
    ids = torch.randint(1, 23, (2, 9))
    with torch.no_grad():
        reference = model(ids, use_cache=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids, use_cache=True)
    assert all(s.dtype == torch.float32 for s in mixed.cache.states)
    torch.testing.assert_close(mixed.last_hidden_state.float(), reference.last_hidden_state, atol=3e-2, rtol=0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("slstm_num_heads", 4, "slstm_num_heads must be a divisor of hidden_size=6"),
        ("slstm_num_heads", 0, "slstm_num_heads must be a positive integer"),
        ("slstm_num_heads", 2.0, "slstm_num_heads must be a positive integer"),
        ("slstm_forget_gate", "exp", "slstm_forget_gate must be one of 'sigmoid', 'exponential'"),
    ],
)
def test_bad_slstm_fields_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        slstm_config(**{field: value})


def test_the_default_init_scale_is_one_over_the_square_root_of_the_hidden_size():
    model = hf_rnn.RnnModel(slstm_config(hidden_size=16, slstm_num_heads=4))
    cell = model.layers[0].directions[0]
    assert model.init_range(cell) == 16**-0.5
    assert cell.weight_hh_l0.shape == (4, 16, 4)  # 4 heads, 4 gates x 4 units each, reading 4 units
    assert math.isclose(float(cell.bias_ih_l0[16:32].detach().mean()), 1.0)  # forget_bias
