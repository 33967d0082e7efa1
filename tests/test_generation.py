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


# ---- transformers' generation entry points on a word LM (text-generation pipeline, generate's options) -----------

LINES = [
    ["the", "old", "teacher", "likes", "that", "heavy", "quiet", "river", "<eos>"],
    ["a", "dog", "runs", "near", "the", "river", "<eos>"],
]
WORDS_ONLY = dict(suppress_tokens=[0, 1, 2])  # no <pad>, <unk>, <eos>: every new token is a word, no early stop


@pytest.fixture
def saved_lm(tmp_path):
    """A word LM and its tokenizer saved as a checkpoint folder; returns (folder, model, tokenizer)."""
    from hf_rnn.vocabulary import build_word_tokenizer

    tokenizer = build_word_tokenizer(LINES, language_model=True)
    config = tiny_config(vocab_size=len(tokenizer), hidden_size=16, eos_token_id=tokenizer.eos_token_id)
    model = hf_rnn.RnnForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path, model, tokenizer


def greedy_words(model, words, prompt: str, **generate) -> list[str]:
    inputs = words(prompt, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, do_sample=False, **generate)[0, inputs["input_ids"].shape[1] :]
    return words.convert_ids_to_tokens(ids.tolist())


@pytest.mark.parametrize("old_checkpoint", [False, True])
def test_the_text_generation_pipeline_searches_rather_than_samples(saved_lm, old_checkpoint):
    """transformers' pipeline samples (temperature 0.7) unless the model's generation config pins `do_sample`: beam
    search gave three texts in three calls. A checkpoint saved before the pin loads greedy too."""
    import json

    from transformers import pipeline

    folder, model, tokenizer = saved_lm
    saved = json.loads((folder / "generation_config.json").read_text())
    assert saved["do_sample"] is False
    if old_checkpoint:
        del saved["do_sample"]
        (folder / "generation_config.json").write_text(json.dumps(saved))
    generator = pipeline("text-generation", model=str(folder))
    expected = " ".join(["the old", *greedy_words(model, tokenizer, "the old", num_beams=4, max_new_tokens=6)])
    texts = {generator("the old", num_beams=4, max_new_tokens=6)[0]["generated_text"] for seed in range(3)}
    assert texts == {expected}
    sampled = {generator("the old", do_sample=True, max_new_tokens=6)[0]["generated_text"] for seed in range(5)}
    assert len(sampled) > 1  # asking for sampling still samples


def test_stop_strings_stop_at_whole_words_through_the_pipeline(saved_lm):
    from transformers import pipeline

    folder, model, tokenizer = saved_lm
    free = greedy_words(model, tokenizer, "the old", max_new_tokens=8, **WORDS_ONLY)
    stop = free[2:4]  # two words: the run ends at the first place they occur, as a string match would
    end = next(i for i in range(1, len(free)) if free[i - 1 : i + 1] == stop) + 1
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    out = generator("the old", max_new_tokens=8, stop_sequence=" ".join(stop), **WORDS_ONLY)[0]["generated_text"]
    assert out == " ".join(["the old", *free[:end]])
    stopped = greedy_words(
        model,
        tokenizer,
        "the old",
        max_new_tokens=8,
        stop_strings=[" ".join(stop), "dog runs"],
        tokenizer=tokenizer,
        **WORDS_ONLY,
    )
    assert stopped == free[:end]
    with pytest.raises(ValueError, match="stop_strings: 'riv' is not a run of whole words"):
        model.generate(**tokenizer("the", return_tensors="pt"), stop_strings="riv", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="stop_strings needs the tokenizer"):
        model.generate(**tokenizer("the", return_tensors="pt"), stop_strings="river")


def test_assisted_and_prompt_lookup_decoding_are_refused_by_name(saved_lm):
    from transformers import pipeline

    folder, model, tokenizer = saved_lm
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    with pytest.raises(
        ValueError, match="cannot take prompt_lookup_num_tokens: .* a recurrent state cannot be rolled"
    ):
        generator("the old", prompt_lookup_num_tokens=2, max_new_tokens=3)
    assisted = pipeline("text-generation", model=model, tokenizer=tokenizer, assistant_model=model)
    with pytest.raises(ValueError, match="cannot take assistant_model"):
        assisted("the old", max_new_tokens=3)


def test_the_state_passed_under_transformers_old_name_past_key_values_is_used():
    """Before: `model(ids, past_key_values=state)` fell into **kwargs and the step restarted from no state, silently."""
    model = hf_rnn.RnnForCausalLM(tiny_config(num_layers=1)).eval()
    prompt, step = torch.tensor([[3, 4]]), torch.tensor([[5]])
    whole = model(torch.cat([prompt, step], 1)).logits[:, -1]
    state = model(prompt, use_cache=True).cache
    torch.testing.assert_close(model(step, past_key_values=state, use_cache=True).logits[:, -1], whole)
    with pytest.raises(ValueError, match="pass the state once, as cache="):
        model(step, cache=model(prompt, use_cache=True).cache, past_key_values=state)
