"""Pooled contextual string embeddings (`config.contextual_pooling`, Akbik et al. 2019): the pooled features against
a memory kept by hand sentence by sentence, a sentence alone and in a batch padded on either side, the memory's bound,
saving, reloading (remote code too) and clearing it, the refused config values and run_tagging.py's flag."""

import copy
import json

import pytest
import torch
from conftest import run_without_hf_rnn
from example_scripts import run_main
from test_contextual import LABELS, TAGGER, pretrain_lm
from transformers import AutoTokenizer

import hf_rnn
from hf_rnn.vocabulary import build_word_tokenizer, lm_char_vocab

# words met again across sentences ("The" first and inside), twice in one sentence ("sat"), and never before ("Zebras")
SENTENCES = [
    ["The", "cat", "sat", "."],
    ["A", "dog", "sat", "on", "The", "cat", "!"],
    ["Zebras", "sat", "sat", "far"],
    ["The", "dog", "ran", "."],
    ["cat", "ran"],
]
POOL = {"mean": lambda v: v.mean(0), "min": lambda v: v.min(0).values, "max": lambda v: v.max(0).values}


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lms")
    return pretrain_lm(folder / "forward", False), pretrain_lm(folder / "backward", True)


@pytest.fixture(scope="module")
def tokenizer(lms):
    return build_word_tokenizer(SENTENCES, lm_char_vocab=lm_char_vocab(AutoTokenizer.from_pretrained(lms[0])))


def tagger(lms, tokenizer, **overrides):
    kwargs = {**TAGGER, **overrides}
    return hf_rnn.RnnForTokenClassification.from_language_models(*lms, vocab_size=len(tokenizer), **kwargs).eval()


def features(model, tokenizer, sentences, side="right") -> list[torch.Tensor]:
    """The contextual module's output for `sentences` fed as one batch: each sentence's real tokens' rows."""
    batch = tokenizer(sentences, is_split_into_words=True, padding=True, padding_side=side, return_tensors="pt")
    out = model.model.contextual(batch["lm_char_ids"], batch["lm_char_lengths"], batch["attention_mask"])
    return [out[row][batch["attention_mask"][row].bool()] for row in range(len(sentences))]


class Reference:
    """The memory kept by hand: every vector each word has had, by its text (SENTENCES' words differ in their LM
    characters too: "Zebras" is the only one spelled with the LMs' <unk>)."""

    def __init__(self, pooling: str):
        self.pool, self.seen = POOL[pooling], {}

    def batch(self, sentences: list[list[str]], lm_features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each sentence's pooled features from the memory before the batch and its own words; then store them."""
        pooled = []
        for words, vectors in zip(sentences, lm_features):
            own = {}
            for word, vector in zip(words, vectors):
                own.setdefault(word, []).append(vector)
            pool = {word: self.pool(torch.stack(self.seen.get(word, []) + own[word])) for word in own}
            pooled.append(torch.stack([pool[word] for word in words]))
        for words, vectors in zip(sentences, lm_features):
            for word, vector in zip(words, vectors):
                self.seen.setdefault(word, []).append(vector)
        return pooled


def lm_features(lms, tokenizer, sentences) -> list[torch.Tensor]:
    """Each sentence's contextual string embeddings alone, without pooling (test_contextual checks them on flair's)."""
    plain = tagger(lms, tokenizer)
    return [features(plain, tokenizer, [sentence])[0] for sentence in sentences]


def memory_by_word(model) -> dict[int, tuple[int, torch.Tensor]]:
    memory = model.model.contextual.memory
    return {key: (int(memory.counts[slot]), memory.pooled[slot]) for key, slot in memory.slots().items()}


@pytest.mark.parametrize("pooling", ["mean", "min", "max"])
def test_sentences_fed_one_by_one_pool_every_occurrence_so_far(lms, tokenizer, pooling):
    model, reference = tagger(lms, tokenizer, contextual_pooling=pooling), Reference(pooling)
    plain = lm_features(lms, tokenizer, SENTENCES)
    width = plain[0].size(1)
    assert model.config.word_feature_size == TAGGER["embedding_size"] + 2 * width
    for sentence, lm in zip(SENTENCES, plain):
        (got,) = features(model, tokenizer, [sentence])
        (expected,) = reference.batch([sentence], [lm])
        torch.testing.assert_close(got[:, :width], lm, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[:, width:], expected, rtol=1e-5, atol=1e-6)
    counts = sorted(count for count, _ in memory_by_word(model).values())
    assert counts == sorted(len(vectors) for vectors in reference.seen.values())


@pytest.mark.parametrize("pooling", ["mean", "min", "max"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_sentence_gets_the_same_features_alone_and_in_a_batch(lms, tokenizer, pooling, side):
    """Within a batch each sentence pools the memory as it was before the batch with its own words; the memory after
    the batch is the one the sentences fed one by one (in any order) leave."""
    model, reference = tagger(lms, tokenizer, contextual_pooling=pooling), Reference(pooling)
    plain = lm_features(lms, tokenizer, SENTENCES)
    width = plain[0].size(1)
    first, rest = SENTENCES[:2], SENTENCES[2:]
    for got, expected in zip(features(model, tokenizer, first, side), reference.batch(first, plain[:2])):
        torch.testing.assert_close(got[:, width:], expected, rtol=1e-5, atol=1e-6)
    before = copy.deepcopy(model)
    together = features(model, tokenizer, rest, side)
    for got, expected in zip(together, reference.batch(rest, plain[2:])):
        torch.testing.assert_close(got[:, width:], expected, rtol=1e-5, atol=1e-6)
    for row, sentence in enumerate(rest):
        alone = copy.deepcopy(before)
        torch.testing.assert_close(features(alone, tokenizer, [sentence])[0], together[row], rtol=1e-5, atol=1e-6)
    one_by_one = tagger(lms, tokenizer, contextual_pooling=pooling)
    for sentence in SENTENCES[::-1]:
        features(one_by_one, tokenizer, [sentence])
    batched, single = memory_by_word(model), memory_by_word(one_by_one)
    assert batched.keys() == single.keys()
    for key, (count, pooled) in batched.items():
        assert count == single[key][0]
        torch.testing.assert_close(pooled, single[key][1], rtol=1e-5, atol=1e-6)


def test_a_full_memory_replaces_its_least_recently_seen_word(lms, tokenizer):
    """Three words' room: a fourth word replaces the one seen longest ago, which then starts again from nothing."""
    model = tagger(lms, tokenizer, contextual_pooling="max", contextual_memory_size=3)
    order = [["cat"], ["dog"], ["ran"], ["cat"], ["far"], ["dog"], ["cat", "far"]]  # "far" evicts "dog", ...
    plain = lm_features(lms, tokenizer, order)
    width, kept, last_seen = plain[0].size(1), {}, {}
    for step, (sentence, lm) in enumerate(zip(order, plain)):
        got = features(model, tokenizer, [sentence])[0][:, width:]
        for word, vector, pooled in zip(sentence, lm, got):
            torch.testing.assert_close(pooled, torch.maximum(kept[word], vector) if word in kept else vector)
        for word, vector in zip(sentence, lm):
            if word not in kept and len(kept) == 3:
                del kept[min(kept, key=last_seen.get)]
            kept[word] = torch.maximum(kept[word], vector) if word in kept else vector
            last_seen[word] = step
    assert sorted(count for count, _ in memory_by_word(model).values()) == [1, 2, 3]  # dog, far (twice), cat (3 times)
    assert len(kept) == 3 and "dog" in kept and "ran" not in kept


LOADER = """
    import json, sys
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    model = AutoModelForTokenClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    logits = model(**tokenizer([json.loads(sys.argv[2])], is_split_into_words=True, return_tensors="pt")).logits
    print(json.dumps([int(model.model.contextual.memory.counts.sum()), logits[0].tolist()]))
"""


def test_the_memory_is_saved_reloaded_and_cleared_with_the_model(lms, tokenizer, tmp_path):
    model = tagger(lms, tokenizer, contextual_pooling="mean", contextual_memory_size=64)
    model.save_pretrained(tmp_path / "empty")
    features(model, tokenizer, SENTENCES[:3])
    model.save_pretrained(tmp_path / "fed")
    tokenizer.save_pretrained(tmp_path / "fed")
    occurrences = sum(map(len, SENTENCES[:3]))
    loaded = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path / "fed").eval()
    assert int(loaded.model.contextual.memory.counts.sum()) == occurrences
    for name, buffer in model.model.contextual.memory.named_buffers():
        assert torch.equal(loaded.model.contextual.memory.get_buffer(name), buffer), name
    test = SENTENCES[3]
    batch = tokenizer([test], is_split_into_words=True, return_tensors="pt")
    remote = run_without_hf_rnn(LOADER, str(tmp_path / "fed"), json.dumps(test), cwd=tmp_path)
    count, remote_logits = json.loads(remote.stdout.strip().splitlines()[-1])
    assert count == occurrences + len(test)  # the remote model read the memory and added the sentence
    expected = model(**batch).logits
    torch.testing.assert_close(loaded(**batch).logits, expected)
    torch.testing.assert_close(torch.tensor(remote_logits), expected[0], rtol=1e-5, atol=1e-5)
    assert memory_by_word(loaded).keys() == memory_by_word(model).keys()

    loaded.model.contextual.clear_memory()
    assert not any(buffer.any() for buffer in loaded.model.contextual.memory.buffers())
    fresh = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path / "empty").eval()
    torch.testing.assert_close(loaded(**batch).logits, fresh(**batch).logits)  # as if it had seen nothing
    assert memory_by_word(loaded).keys() == memory_by_word(fresh).keys()


def test_meta_device_init_empties_the_memory(lms, tokenizer):
    config = tagger(lms, tokenizer, contextual_pooling="min", contextual_memory_size=8).config
    with torch.device("meta"):
        model = hf_rnn.RnnForTokenClassification(config)
    model.to_empty(device="cpu")
    for buffer in model.model.contextual.memory.buffers():
        buffer.fill_(7)
    model.init_weights()
    assert not any(buffer.any() for buffer in model.model.contextual.memory.buffers())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(contextual_pooling="avg"), "contextual_pooling must be None or one of 'mean', 'min', 'max'"),
        (dict(contextual_pooling=["mean"]), "contextual_pooling must be None or one of"),
        (dict(contextual_pooling="mean", contextual_memory_size=0), "contextual_memory_size must be a positive"),
        (dict(contextual_pooling="max", contextual_memory_size=2.5), "contextual_memory_size must be a positive"),
        (dict(contextual_pooling="max", contextual_memory_size=True), "contextual_memory_size must be a positive"),
        (dict(contextual_memory_size=10), "contextual_memory_size must be None unless contextual_pooling"),
    ],
)
def test_invalid_pooling_values_are_named(lms, tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        tagger(lms, tokenizer, **overrides)


def test_pooling_needs_language_models_and_keeps_the_saved_one(lms, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="contextual_pooling .* without language models"):
        hf_rnn.RnnConfig(contextual_pooling="mean")
    tagger(lms, tokenizer, contextual_pooling="mean").save_pretrained(tmp_path)
    for change in (dict(contextual_pooling="max"), dict(contextual_pooling=None), dict(contextual_memory_size=9)):
        with pytest.raises(ValueError, match=f"RnnConfig.{next(iter(change))}=.*the saved model has"):
            hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path, **change)
    assert hf_rnn.RnnConfig.from_pretrained(tmp_path).contextual_memory_size == 2**15  # the default, saved


def test_pooling_is_not_traced(lms, tokenizer):
    from hf_rnn.export import export_tagger

    model = tagger(lms, tokenizer, contextual_pooling="max")
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="contextual_pooling cannot be traced or exported"):
        export_tagger(model, batch)


def test_run_tagging_trains_and_saves_a_pooled_tagger(lms, tmp_path, monkeypatch):
    train = tmp_path / "train.tsv"
    train.write_text("".join("".join(f"{w}\t{LABELS[0]}\n" for w in s) + "\n" for s in SENTENCES))
    flags = ["--train_file", str(train), "--forward_lm", str(lms[0]), "--backward_lm", str(lms[1])]
    flags += ["--embedding_size", "4", "--hidden_size", "4", "--max_steps", "2", "--no_plots"]
    output = tmp_path / "out"
    run_main(monkeypatch, "run_tagging", *flags, "--contextual_pooling", "max", "--output_dir", str(output))
    model = hf_rnn.RnnForTokenClassification.from_pretrained(output)
    assert model.config.contextual_pooling == "max" and model.model.contextual.memory.counts.sum() > 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--contextual_pooling", "avg"], "--contextual_pooling avg: give mean, min or max"),
        (["--contextual_pooling", "mean", "--contextual_memory_size", "0"], "--contextual_memory_size 0: give"),
        (["--contextual_memory_size", "5"], "--contextual_memory_size is for --contextual_pooling"),
    ],
)
def test_run_tagging_refuses_bad_pooling_flags(lms, tmp_path, monkeypatch, capsys, flags, message):
    train = tmp_path / "train.tsv"
    train.write_text("".join("".join(f"{w}\t{LABELS[0]}\n" for w in s) + "\n" for s in SENTENCES))
    lm = ["--forward_lm", str(lms[0])]
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "run_tagging", "--train_file", str(train), *lm, *flags, "--output_dir", str(tmp_path))
    assert message in capsys.readouterr().err
