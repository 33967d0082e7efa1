"""generate() carries the recurrent state: it must equal recomputing the whole prefix at every step."""

import pytest
import torch
from conftest import CELLS, tiny_config

import hf_rnn


def trained_lm(cell_type: str) -> hf_rnn.RnnForCausalLM:
    """A tiny LM fitted to a few sequences, so generation follows sharp, non-degenerate distributions."""
    model = hf_rnn.RnnForCausalLM(tiny_config(cell_type=cell_type, hidden_size=16, eos_token_id=None))
    data = torch.randint(1, 37, (6, 12))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(40):
        optimizer.zero_grad()
        model(data, labels=data).loss.backward()
        optimizer.step()
    return model.eval()


def greedy_by_recomputation(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    for _ in range(steps):
        next_token = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_token], 1)
    return ids


@pytest.mark.parametrize("cell_type", CELLS)
def test_greedy_generate_equals_a_from_scratch_loop(cell_type):
    model = trained_lm(cell_type)
    prompt = torch.randint(1, 37, (3, 4))
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(generated, greedy_by_recomputation(model, prompt, 8))
    assert len(set(generated[:, 4:].flatten().tolist())) > 2  # not a degenerate repetition


@pytest.mark.parametrize("cell_type", CELLS)
@pytest.mark.parametrize("mode", [dict(num_beams=3), dict(num_beams=3, num_return_sequences=2), dict(do_sample=True)])
def test_cached_generation_equals_uncached(cell_type, mode):
    """With the cache, beam search reorders the state and sampling reads it; without, the prefix is re-run."""
    model = trained_lm(cell_type)
    prompt = torch.randint(1, 37, (2, 3))
    torch.manual_seed(1)
    cached = model.generate(prompt, max_new_tokens=6, use_cache=True, **mode)
    torch.manual_seed(1)
    lengths = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    uncached = model.generate(prompt, max_new_tokens=6, use_cache=False, **mode)
    hook.remove()
    assert lengths == list(range(3, 9))  # the reference really re-reads the prefix
    assert torch.equal(cached, uncached)


def test_left_padded_prompts_generate_as_if_alone():
    model = trained_lm("lstm")
    prompts = [torch.randint(1, 37, (n,)) for n in (5, 2, 4)]
    ids = torch.zeros(3, 5, dtype=torch.long)
    mask = torch.zeros(3, 5, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, 5 - len(prompt) :] = prompt
        mask[row, 5 - len(prompt) :] = 1
    batched = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt[None], max_new_tokens=5, do_sample=False)
        assert torch.equal(batched[row, 5:], alone[0, len(prompt) :])


def test_each_generated_token_feeds_one_step():
    """After the prompt, every forward call sees exactly one new token and the carried state."""
    model = trained_lm("gru")
    seen = []
    hook = model.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs["input_ids"].shape[1], kwargs["cache"] is not None)),
        with_kwargs=True,
    )
    model.generate(torch.randint(1, 37, (2, 7)), max_new_tokens=5, do_sample=False)
    hook.remove()
    assert seen[0] == (7, False) and seen[1:] == [(1, True)] * 4


def test_cache_reorder_and_detach():
    cache = hf_rnn.RnnCache(torch.arange(6.0).view(1, 3, 2).requires_grad_(), torch.arange(6.0).view(1, 3, 2) + 10)
    detached = cache.detach()
    assert not detached.hidden.requires_grad and torch.equal(detached.cell, cache.cell)
    detached.reorder_cache(torch.tensor([2, 2, 0]))
    assert detached.hidden[0, :, 0].tolist() == [4.0, 4.0, 0.0] and detached.cell[0, :, 0].tolist() == [
        14.0,
        14.0,
        10.0,
    ]


@pytest.mark.parametrize("mode", [dict(do_sample=False), dict(do_sample=True), dict(num_beams=2)])
def test_nan_logits_are_refused_naming_the_step(mode):
    """A token whose embedding is NaN (a diverged or corrupted model) makes every later logit NaN: refused by the
    step it appears at, not answered with token 0 (greedy) or torch's multinomial error (sampling)."""
    model = hf_rnn.RnnForCausalLM(tiny_config(eos_token_id=None)).eval()
    with torch.no_grad():
        model.lm_head.bias[7] = 50.0  # every step's best token
        model.model.embeddings.weight[7] = float("nan")  # and reading it breaks the model
    with pytest.raises(ValueError, match=r"logits are NaN from new token 1 on \(row 0"):
        model.generate(torch.randint(1, 7, (2, 3)), max_new_tokens=4, **mode)
    healthy = hf_rnn.RnnForCausalLM(tiny_config(eos_token_id=None)).eval()
    assert healthy.generate(torch.randint(1, 7, (2, 3)), max_new_tokens=4, **mode).shape[1] == 7
