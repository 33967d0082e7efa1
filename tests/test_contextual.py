"""Contextual string embeddings: two tiny character LMs pretrained here, a tagger built from their folders, its
features against flair's reading of each sentence by hand, padding, the frozen-feature cache, fine-tuning, saving,
remote code, the pipelines, export, a loopback-Hub round trip and run_tagging.py end to end."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_without_hf_rnn
from example_scripts import run_main
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    pipeline,
)

import hf_rnn
from hf_rnn.contextual import ContextualStringEmbeddings
from hf_rnn.data import TaggedSentence, encode_for_tagging, tagging_dataset
from hf_rnn.vocabulary import build_char_tokenizer, build_word_tokenizer, lm_char_vocab

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ["The cat sat on the mat.", "A dog ran far away!", "The dog sat.", "Cats and dogs ran on."]
SENTENCES = [["The", "cat", "sat", "."], ["A", "dog", "ran", "far", "away", "!"], ["Zebras", "sat"]]
LABELS = ["DET", "NOUN", "VERB", "ADV", "PUNCT"]
TAGS = [[0, 1, 2, 4], [0, 1, 2, 3, 3, 4], [1, 2]]
TAGGER = dict(
    embedding_size=6,
    hidden_size=5,
    bidirectional=True,
    use_crf=True,
    id2label=dict(enumerate(LABELS)),
    label2id={label: i for i, label in enumerate(LABELS)},
)


def pretrain_lm(folder: Path, reverse: bool, steps: int = 30) -> Path:
    """A character LM trained a few Adam steps on CORPUS (reversed for the backward one), saved with its tokenizer."""
    text = "".join(line + "\n" for line in CORPUS)
    tokenizer = build_char_tokenizer([text])
    ids = torch.tensor([tokenizer(text[::-1] if reverse else text)["input_ids"]])
    config = hf_rnn.RnnConfig(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=12, num_layers=1, char_level=True, reverse=reverse
    )
    torch.manual_seed(1 + reverse)
    model = hf_rnn.RnnForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        model(ids, labels=ids).loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lms")
    return pretrain_lm(folder / "forward", False), pretrain_lm(folder / "backward", True)


@pytest.fixture(scope="module")
def tokenizer(lms):
    return build_word_tokenizer(SENTENCES, lm_char_vocab=lm_char_vocab(AutoTokenizer.from_pretrained(lms[0])))


def tagger(lms, tokenizer, **overrides):
    kwargs = {**TAGGER, **overrides}
    return hf_rnn.RnnForTokenClassification.from_language_models(*lms, vocab_size=len(tokenizer), **kwargs).eval()


def flair_states(lm_folder: Path, words: list[str], forward: bool) -> torch.Tensor:
    """flair's FlairEmbeddings on one sentence, transcribed: the LM reads "\\n" + text + " " (text reversed for the
    backward LM), a word is read at the space after it (forward) or before it (backward), offsets as flair counts them.
    """
    encoder = hf_rnn.RnnForCausalLM.from_pretrained(lm_folder).model.eval()
    characters = AutoTokenizer.from_pretrained(lm_folder)
    text = " ".join(words)
    ids = torch.tensor([characters("\n" + (text if forward else text[::-1]) + " ")["input_ids"]])
    states = encoder(ids, use_cache=False).last_hidden_state[0]  # (N, H)
    offset_forward, offset_backward, read = 1, len(text) + 1, []
    for word in words:
        offset_forward += len(word)
        read.append(states[offset_forward if forward else offset_backward])
        offset_forward += 1
        offset_backward -= 1 + len(word)
    return torch.stack(read)  # (words, H)


def test_tokenizer_writes_each_sentence_for_the_lm(lms, tokenizer):
    vocab = lm_char_vocab(AutoTokenizer.from_pretrained(lms[0]))
    to_id = {c: i for i, c in enumerate(vocab)}
    encoding = tokenizer([["The", "Zebras"], ["a"]], is_split_into_words=True)
    # the first word after a newline, every word followed by a space, unseen characters <unk>, nothing cut or padded
    the, zebras = [to_id[c] for c in "\nThe "], [to_id.get(c, to_id["<unk>"]) for c in "Zebras "]
    assert encoding["lm_char_ids"] == [the + zebras, [to_id[c] for c in "\na "]]
    assert encoding["lm_char_lengths"] == [[5, 7], [3]]
    assert to_id.get("Z") is None and zebras[0] == to_id["<unk>"]
    single = tokenizer("The  Zebras")  # raw text: the words joined by one space
    assert single["lm_char_ids"] == the + zebras and single["lm_char_lengths"] == [5, 7]
    assert "char_ids" not in encoding  # no char_encoder's spelling without a char_vocab


@pytest.mark.parametrize("side", ["right", "left"])
def test_lm_inputs_follow_padding_in_the_call_and_in_the_collator(tokenizer, side, monkeypatch):
    monkeypatch.setattr(tokenizer, "padding_side", side)
    direct = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    features = [dict(tokenizer(s, is_split_into_words=True), labels=t) for s, t in zip(SENTENCES, TAGS)]
    collated = DataCollatorForTokenClassification(tokenizer)(features)
    pad = tokenizer.lm_spelling.pad_id
    longest = len("\nA dog ran far away ! ")  # the longest stream of the batch
    for batch in (direct, collated):
        assert batch["lm_char_ids"].shape == (3, longest) and batch["lm_char_lengths"].shape == (3, 6)
        for row, sentence in enumerate(SENTENCES):
            real = batch["attention_mask"][row].bool()
            alone = tokenizer(sentence, is_split_into_words=True)
            stream = batch["lm_char_ids"][row]
            assert stream[: len(alone["lm_char_ids"])].tolist() == alone["lm_char_ids"]  # streams: right-padded
            assert (stream[len(alone["lm_char_ids"]) :] == pad).all()
            assert batch["lm_char_lengths"][row][real].tolist() == alone["lm_char_lengths"]
            assert not batch["lm_char_lengths"][row][~real].any()


def test_tokenizer_round_trip_and_bad_vocabularies(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is hf_rnn.RnnTokenizerFast and loaded.model_input_names == tokenizer.model_input_names
    assert loaded(SENTENCES, is_split_into_words=True) == tokenizer(SENTENCES, is_split_into_words=True)
    with pytest.raises(ValueError, match=r"lm_char_vocab lacks \['\\n'\]"):
        build_word_tokenizer(SENTENCES, lm_char_vocab=["<pad>", "<unk>", " ", "a"])
    with pytest.raises(ValueError, match="distinct"):
        build_word_tokenizer(SENTENCES, lm_char_vocab=["<pad>", "<unk>", " ", "\n", " "])


@pytest.mark.parametrize("side", ["right", "left"])
def test_features_are_flairs_reading_of_each_sentence_alone(lms, tokenizer, side):
    model = tagger(lms, tokenizer)
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, padding_side=side, return_tensors="pt")
    features = model.model.contextual(batch["lm_char_ids"], batch["lm_char_lengths"], batch["attention_mask"])
    for row, words in enumerate(SENTENCES):
        real = batch["attention_mask"][row].bool()
        expected = torch.cat([flair_states(lms[0], words, True), flair_states(lms[1], words, False)], dim=-1)
        torch.testing.assert_close(features[row][real], expected, rtol=1e-5, atol=1e-6)
        assert not features[row][~real].any()


@pytest.mark.parametrize("head", [hf_rnn.RnnForTokenClassification, hf_rnn.RnnForSequenceClassification])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_changes_a_contextual_model(lms, tokenizer, head, side):
    overrides = {} if head is hf_rnn.RnnForTokenClassification else dict(use_crf=False)
    model = head.from_language_models(*lms, vocab_size=len(tokenizer), **{**TAGGER, **overrides}).eval()
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, padding_side=side, return_tensors="pt")
    together = model(**batch).logits
    for row, sentence in enumerate(SENTENCES):
        alone = model(**tokenizer([sentence], is_split_into_words=True, return_tensors="pt")).logits[0]
        mine = together[row][batch["attention_mask"][row].bool()] if head is hf_rnn.RnnForTokenClassification else None
        torch.testing.assert_close(together[row] if mine is None else mine, alone, rtol=1e-5, atol=1e-6)


def test_a_masked_token_with_characters_is_refused(lms, tokenizer):
    """The tokenizer gives masked (padding) tokens no characters; a hole in the mask over a word's characters would
    leave them in the stream the LMs read, so it is refused rather than read."""
    model = tagger(lms, tokenizer)
    batch = tokenizer([SENTENCES[1]], is_split_into_words=True, return_tensors="pt")
    batch["attention_mask"][0, 2] = 0  # "ran"
    with pytest.raises(
        ValueError, match=r"lm_char_lengths\[0, 2\] = 4 counts characters of a token attention_mask hid"
    ):
        model(**batch)
    start, width = int(batch["lm_char_lengths"][0, :2].sum()), int(batch["lm_char_lengths"][0, 2])
    ids = batch["lm_char_ids"]
    batch["lm_char_ids"] = torch.cat([ids[:, :start], ids[:, start + width :]], dim=1)  # "ran " out of the stream
    batch["lm_char_lengths"][0, 2] = 0
    without = tokenizer([SENTENCES[1][:2] + SENTENCES[1][3:]], is_split_into_words=True, return_tensors="pt")
    real = batch["attention_mask"][0].bool()
    torch.testing.assert_close(model(**batch).emissions[0][real], model(**without).emissions[0], rtol=1e-5, atol=1e-6)


def test_empty_inputs_and_other_id_types(lms, tokenizer):
    model = tagger(lms, tokenizer)
    for text in ("", "   "):  # no token, no character: the pipelines answer [] as for any tagger
        for task in ("token-classification", "rnn-token-classification"):
            assert pipeline(task, model=model, tokenizer=tokenizer)(text) == []
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    assert model(**{k: v[:0] for k, v in batch.items()}).emissions.shape == (0, 6, len(LABELS))  # batch of none
    small = {
        **batch,
        "lm_char_ids": batch["lm_char_ids"].to(torch.uint8),
        "lm_char_lengths": batch["lm_char_lengths"].int(),
    }
    torch.testing.assert_close(model(**small).emissions, model(**batch).emissions)


def test_the_feature_cache_follows_the_dtype(lms, tokenizer):
    model = tagger(lms, tokenizer).train()
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    float32 = model(**batch).emissions
    model.to(torch.bfloat16)
    assert not model.model.contextual.cache  # features of float32 weights
    assert model(**batch).emissions.dtype == torch.bfloat16
    model.to(torch.float32)  # (the weights went through bfloat16: compare with the LMs read afresh, in eval mode)
    cached = model(**batch).emissions
    assert cached.dtype == torch.float32 and float32.dtype == torch.float32
    torch.testing.assert_close(cached, model.eval()(**batch).emissions)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("task", ["token-classification", "rnn-token-classification"])
def test_pipelines_batch_a_contextual_tagger(lms, tokenizer, task, side, monkeypatch):
    """transformers' pipeline batching pads every 2-D input along its last axis with 0 (whatever the key), on the
    tokenizer's padding side: the LM inputs are made for exactly that (before, torch raised "The expanded size of the
    tensor ..." from inside the pipeline's collate)."""
    monkeypatch.setattr(tokenizer, "padding_side", side)
    tagging = pipeline(task, model=tagger(lms, tokenizer), tokenizer=tokenizer)
    texts = ["The cat sat .", "A dog ran far away !", "Zebras sat", "The"]
    alone = [tagging(text, ignore_labels=[]) for text in texts]
    together = tagging(texts, batch_size=3, ignore_labels=[])
    for mine, reference in zip(together, alone):
        assert [(e["word"], e["entity"]) for e in mine] == [(e["word"], e["entity"]) for e in reference]
        assert [e["score"] for e in mine] == pytest.approx([e["score"] for e in reference], abs=1e-5)


def test_the_builder_copies_the_lm_weights_and_nests_their_configs(lms, tokenizer, tmp_path):
    model = tagger(lms, tokenizer, fine_tune_lms=True)
    for name, folder in zip(("forward_lm", "backward_lm"), lms):
        reference = hf_rnn.RnnForCausalLM.from_pretrained(folder).model.state_dict()
        mine = getattr(model.model.contextual, name).state_dict()
        assert mine.keys() == reference.keys() and all(torch.equal(mine[k], reference[k]) for k in mine)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["forward_lm"]["reverse"] is False and config["backward_lm"]["reverse"] is True
    assert config["forward_lm"]["_name_or_path"] == str(lms[0]) and config["backward_lm"]["hidden_size"] == 12
    assert hf_rnn.RnnConfig.from_pretrained(tmp_path).to_dict() == model.config.to_dict()


def test_wrong_language_models_and_inputs_are_named(lms, tokenizer):
    with pytest.raises(ValueError, match=r"forward_lm must be a unidirectional character LM .*reverse=True"):
        hf_rnn.RnnForTokenClassification.from_language_models(lms[1], None, vocab_size=9)
    word_lm = hf_rnn.RnnConfig(vocab_size=30, hidden_size=4)
    with pytest.raises(ValueError, match="backward_lm must be a unidirectional character LM"):
        hf_rnn.RnnConfig(backward_lm=word_lm)
    other = hf_rnn.RnnConfig(vocab_size=31, char_level=True, reverse=True)
    with pytest.raises(ValueError, match="backward_lm must read the forward LM's characters"):
        hf_rnn.RnnConfig(forward_lm=hf_rnn.RnnConfig(vocab_size=30, char_level=True), backward_lm=other)
    with pytest.raises(ValueError, match="forward_lm: RnnConfig.hidden_size"):
        hf_rnn.RnnConfig(forward_lm={"char_level": True, "hidden_size": 0})
    with pytest.raises(ValueError, match="fine_tune_lms must be False unless"):
        hf_rnn.RnnConfig(fine_tune_lms=True)
    with pytest.raises(ValueError, match="forward_lm must be None for RnnForCausalLM"):
        hf_rnn.RnnForCausalLM(hf_rnn.RnnConfig(forward_lm=hf_rnn.RnnConfig(char_level=True)))
    model = tagger(lms, tokenizer)
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    ids, lengths = batch["lm_char_ids"], batch["lm_char_lengths"]
    with pytest.raises(ValueError, match="pass `lm_char_ids` and `lm_char_lengths`"):
        model(batch["input_ids"])
    with pytest.raises(ValueError, match="pass `lm_char_ids` and `lm_char_lengths`"):
        model(batch["input_ids"], lm_char_ids=ids)
    with pytest.raises(ValueError, match=r"lm_char_ids must be \(3, 'stream_length'\), got \(3, 6, 2\)"):
        model(batch["input_ids"], lm_char_ids=ids[:, :12].reshape(3, 6, 2), lm_char_lengths=lengths)
    with pytest.raises(ValueError, match=r"lm_char_lengths must be \(3, 6\) like input_ids, got \(3, 2\)"):
        model(batch["input_ids"], lm_char_ids=ids, lm_char_lengths=lengths[:, :2])
    with pytest.raises(ValueError, match=r"lm_char_ids\[0, 0\] = .* is not an LM character id"):
        model(batch["input_ids"], lm_char_ids=ids + 100, lm_char_lengths=lengths)
    with pytest.raises(ValueError, match=r"lm_char_lengths\[0\] = \[6, 5, 5, 3, 1, 1\] adds up to 21, but lm_char_i"):
        model(batch["input_ids"], lm_char_ids=ids, lm_char_lengths=lengths + 1)  # counts of another stream
    other = tokenizer(SENTENCES[::-1], is_split_into_words=True, padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match=r"lm_char_lengths\[0\] = .* adds up to 12, but lm_char_ids\[0\] holds 15"):
        model(batch["input_ids"], lm_char_ids=ids, lm_char_lengths=other["lm_char_lengths"])
    with pytest.raises(ValueError, match=r"adds up to 15, but lm_char_ids\[0\] holds 22 characters .*pad_token_id=0"):
        model(batch["input_ids"], lm_char_ids=ids.masked_fill(ids == 0, 3), lm_char_lengths=lengths)
    with pytest.raises(ValueError, match=r"lm_char_lengths\[0, 0\] = -5 is negative"):
        model(batch["input_ids"], lm_char_ids=ids, lm_char_lengths=lengths * torch.tensor([-1] + [1] * 5))
    with pytest.raises(ValueError, match="lm_char_lengths must hold integer counts"):
        model(batch["input_ids"], lm_char_ids=ids, lm_char_lengths=lengths.float())


def _count_lm_rows(model) -> list[int]:
    """Rows each call of the forward LM reads, recorded by a hook."""
    rows = []
    model.model.contextual.forward_lm.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].size(0)), with_kwargs=True
    )
    return rows


def test_frozen_lms_compute_each_training_sentence_once(lms, tokenizer):
    model = tagger(lms, tokenizer).train()  # no dropout in TAGGER: training and eval outputs comparable
    contextual = model.model.contextual
    assert not contextual.forward_lm.training and not contextual.backward_lm.training
    assert not any(p.requires_grad for p in contextual.parameters())
    rows = _count_lm_rows(model)
    batch = tokenizer(SENTENCES[:2], is_split_into_words=True, padding=True, return_tensors="pt")
    first = model(**batch).emissions
    again = model(**batch).emissions  # from the cache
    assert rows == [2] and torch.equal(first, again)
    left = tokenizer(SENTENCES, is_split_into_words=True, padding=True, padding_side="left", return_tensors="pt")
    mixed = model(**left).emissions  # other padding, other width: the two cached, only the new one through the LM
    assert rows == [2, 1]
    uncached = model.eval()(**left).emissions
    torch.testing.assert_close(mixed, uncached, rtol=1e-5, atol=1e-6)
    assert rows == [2, 1, 3]  # eval mode reads the LMs
    model.train()
    model.load_state_dict(model.state_dict())  # new weights: the old features go
    model(**batch)
    assert rows == [2, 1, 3, 2] and len(contextual.cache) == 2
    contextual.cache_bytes = 0  # the bound: nothing more is stored
    model(**left)
    assert rows == [2, 1, 3, 2, 1] and len(contextual.cache) == 2


def test_cache_eval_reads_a_dev_set_through_the_lms_once(lms, tokenizer):
    model = tagger(lms, tokenizer)  # eval mode
    rows = _count_lm_rows(model)
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    reference = model(**batch).emissions
    model(**batch)
    assert rows == [3, 3]  # off by default: a served model keeps nothing
    model.model.contextual.cache_eval = True
    first, again = model(**batch).emissions, model(**batch).emissions
    assert rows == [3, 3, 3] and torch.equal(first, again)
    torch.testing.assert_close(first, reference, rtol=1e-5, atol=1e-6)
    model.train()(**batch)  # training reads the same features (frozen LMs run in eval mode either way)
    assert rows == [3, 3, 3]


@pytest.mark.parametrize("fine_tune", [False, True])
def test_frozen_lms_stay_fixed_and_fine_tuned_ones_train(lms, tokenizer, fine_tune, tmp_path):
    model = tagger(lms, tokenizer, fine_tune_lms=fine_tune, dropout=0.1).train()
    lm = model.model.contextual.forward_lm
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    labels = torch.full(batch["input_ids"].shape, -100)
    for row, tags in enumerate(TAGS):
        labels[row, : len(tags)] = torch.tensor(tags)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    changed = any(not torch.equal(before[k], v) for k, v in lm.state_dict().items())
    assert changed == fine_tune and lm.training == fine_tune
    model.save_pretrained(tmp_path)
    loaded = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path).train()
    assert all(p.requires_grad == fine_tune for p in loaded.model.contextual.parameters())
    assert loaded.model.contextual.forward_lm.training == fine_tune


def test_export_takes_the_lm_inputs_next_to_char_ids(lms):
    from hf_rnn.export import export_tagger

    vocab = lm_char_vocab(AutoTokenizer.from_pretrained(lms[0]))
    tokenizer = build_word_tokenizer(SENTENCES, char_min_frequency=1, lm_char_vocab=vocab)  # both spellings
    chars = dict(char_encoder="lstm", char_vocab_size=tokenizer.char_vocab_size, char_embedding_size=3)
    model = tagger(lms, tokenizer, **chars, char_hidden_size=2)
    assert model.model.layers[0].directions[0].input_size == 6 + 2 * 2 + 12 + 12  # word, characters, two LMs
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    program = export_tagger(model, batch)
    other = tokenizer(
        SENTENCES[::-1], is_split_into_words=True, padding=True, padding_side="left", return_tensors="pt"
    )
    assert other["lm_char_ids"].shape == batch["lm_char_ids"].shape  # the exported graph's fixed lengths
    names = ("input_ids", "attention_mask", "char_ids", "lm_char_ids", "lm_char_lengths")
    predictions, logits = program.module()(*(other[name] for name in names))
    expected = model(**other)
    assert torch.equal(predictions, expected.predictions)
    torch.testing.assert_close(logits, expected.logits, rtol=1e-5, atol=1e-6)


LOADER = """
    import json, sys
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
    folder = sys.argv[1]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tokenizer(json.loads(sys.argv[2]), is_split_into_words=True, padding=True, return_tensors="pt")
    tagged = pipeline("token-classification", model=model, tokenizer=tokenizer)("A dog sat .")
    print(json.dumps([type(model).__module__, type(tokenizer).__module__, model(**batch).predictions.tolist(),
                      [entity["entity"] for entity in tagged]]))
"""


def test_trained_tagger_loads_with_auto_classes_pipelines_and_remote_code(lms, tokenizer, tmp_path):
    """The issue's test: LMs pretrained above, a tagger built from their folders, trained a few steps (the Trainer,
    frozen LMs, the cache), saved, and loaded back by AutoModelForTokenClassification and by remote code."""
    model = tagger(lms, tokenizer).train()
    raw = tagging_dataset(
        {
            "train": [
                TaggedSentence(s, [LABELS[t] for t in tags], "-", [1] * len(s)) for s, tags in zip(SENTENCES, TAGS)
            ]
        },
        label_names=LABELS,
    )
    data = encode_for_tagging(raw, tokenizer)["train"]
    args = TrainingArguments(
        tmp_path / "run",
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=0.05,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    rows = _count_lm_rows(model)
    collator = DataCollatorForTokenClassification(tokenizer)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
    assert sum(rows) == len(SENTENCES)  # 4 steps over 3 sentences: each through the LMs once
    folder = tmp_path / "tagger"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    expected = model.eval()(**batch).predictions
    loaded = AutoModelForTokenClassification.from_pretrained(folder).eval()
    reloaded = AutoTokenizer.from_pretrained(folder)
    assert type(loaded) is hf_rnn.RnnForTokenClassification and type(reloaded) is hf_rnn.RnnTokenizerFast
    batch = reloaded(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    assert torch.equal(loaded(**batch).predictions, expected)
    text = "A dog sat ."
    tags = [LABELS[t] for t in model(**tokenizer(text, return_tensors="pt")).predictions[0].tolist()]
    for task in ("token-classification", "rnn-token-classification"):
        assert [e["entity"] for e in pipeline(task, model=str(folder))(text, ignore_labels=[])] == tags
    assert [tag for _, tag, _ in loaded.tag(text, reloaded)] == tags
    result = run_without_hf_rnn(LOADER, str(folder), json.dumps(SENTENCES), cwd=folder)
    module, tokenizer_module, predictions, entities = json.loads(result.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules") and tokenizer_module.startswith("transformers_modules")
    assert predictions == expected.tolist() and entities == [t for t in tags if t != "O"]


def test_loopback_hub_round_trip_from_lm_ids(lms, tmp_path):
    from huggingface_hub import ModelCard

    from hf_rnn.hub import push_model
    from hf_rnn.testing.loopback_hub import LoopbackHub

    with LoopbackHub():
        for name, folder in zip(("me/char-forward", "me/char-backward"), lms):
            push_model(hf_rnn.RnnForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), name)
        vocab = lm_char_vocab(AutoTokenizer.from_pretrained("me/char-forward"))
        words = build_word_tokenizer(SENTENCES, lm_char_vocab=vocab)
        model = hf_rnn.RnnForTokenClassification.from_language_models(
            "me/char-forward", "me/char-backward", vocab_size=len(words), **TAGGER
        ).eval()
        push_model(model, words, "me/contextual-tagger")
        loaded = AutoModelForTokenClassification.from_pretrained("me/contextual-tagger").eval()
        tokenizer = AutoTokenizer.from_pretrained("me/contextual-tagger")
        card = ModelCard.load("me/contextual-tagger")
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    assert torch.equal(loaded(**batch).predictions, model(**batch).predictions)
    assert loaded.config.forward_lm.name_or_path == "me/char-forward"
    assert "forward character LM me/char-forward, backward character LM me/char-backward" in card.text


def test_run_tagging_with_two_language_models(lms, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text(
        "".join(
            "".join(f"{w}\t{LABELS[t]}\n" for w, t in zip(s, tags)) + "\n" for s, tags in zip(SENTENCES * 4, TAGS * 4)
        )
    )
    output = tmp_path / "tagger"
    command = [
        sys.executable,
        str(ROOT / "examples" / "run_tagging.py"),
        "--train_file",
        str(train),
        "--output_dir",
        str(output),
        "--forward_lm",
        str(lms[0]),
        "--backward_lm",
        str(lms[1]),
        "--use_crf",
        "--embedding_size",
        "8",
        "--hidden_size",
        "8",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "no",
        "--no_plots",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--use_cpu",
        "true",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModelForTokenClassification.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert model.config.forward_lm.name_or_path == str(lms[0]) and not model.config.fine_tune_lms
    reference = hf_rnn.RnnForCausalLM.from_pretrained(lms[1]).model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.model.contextual.backward_lm.state_dict().items())
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    alone = [
        model(**tokenizer([s], is_split_into_words=True, return_tensors="pt")).predictions[0].tolist()
        for s in SENTENCES
    ]
    together = model(**batch).predictions.tolist()
    assert [[t for t in row if t != -100] for row in together] == alone


def test_run_tagging_reads_each_dev_sentence_through_the_lms_once(lms, tmp_path, monkeypatch):
    """Three epochs, evaluated after each and at the end: 3 training and 2 dev sentences through the LMs, once each."""
    rows = []
    features = ContextualStringEmbeddings.features
    monkeypatch.setattr(
        ContextualStringEmbeddings,
        "features",
        lambda self, *inputs: rows.append(len(inputs[0])) or features(self, *inputs),
    )
    write = lambda path, sentences: path.write_text(  # noqa: E731
        "".join("".join(f"{w}\t{LABELS[0]}\n" for w in s) + "\n" for s in sentences)
    )
    write(tmp_path / "train.tsv", SENTENCES)
    write(tmp_path / "dev.tsv", [["A", "cat", "ran"], ["Dogs", "sat", "far"]])
    data = ["--train_file", str(tmp_path / "train.tsv"), "--validation_file", str(tmp_path / "dev.tsv")]
    lm_flags = [
        "--forward_lm",
        str(lms[0]),
        "--backward_lm",
        str(lms[1]),
        "--embedding_size",
        "4",
        "--hidden_size",
        "4",
    ]
    steps = ["--num_train_epochs", "3", "--eval_strategy", "epoch", "--per_device_train_batch_size", "4"]
    run_main(monkeypatch, "run_tagging", *data, *lm_flags, *steps, "--no_plots", "--output_dir", str(tmp_path / "out"))
    assert sum(rows) == 3 + 2  # without the dev cache: 3 + 4 * 2


def test_meta_device_init_reaches_every_weight_with_each_models_own_rule():
    """`init_weights` after building on the meta device leaves no parameter out, and initialises the LMs by their own
    configs (transformers dispatches a nested PreTrainedModel to its own `_init_weights`)."""
    lm = dict(vocab_size=20, embedding_size=4, hidden_size=6, num_layers=1, char_level=True, initializer_range=0.01)
    config = hf_rnn.RnnConfig(
        vocab_size=30, forward_lm=lm, backward_lm={**lm, "reverse": True}, fine_tune_lms=True, **TAGGER
    )
    with torch.device("meta"):
        model = hf_rnn.RnnForTokenClassification(config)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float("nan"))
    model.init_weights()
    for name, param in model.named_parameters():
        assert not param.isnan().any(), name
        if ".contextual." in name and "weight" in name:
            assert param.abs().max() <= 0.01, name  # the LMs' initializer_range, not the tagger's 1/sqrt(fan-in)
    assert model.model.layers[0].directions[0].weight_hh_l0.abs().max() > 0.01  # the tagger: 5**-0.5


def _edit_lm_weights(model, how: str) -> None:
    """Change one frozen LM's weights the ways a user does, none of them through the tagger itself."""
    contextual = model.model.contextual
    if how == "load_state_dict":
        state = {name: 1.5 * tensor for name, tensor in contextual.forward_lm.state_dict().items()}
        contextual.forward_lm.load_state_dict(state)
    elif how == "assign":
        state = {name: 1.5 * tensor for name, tensor in contextual.forward_lm.state_dict().items()}
        contextual.forward_lm.load_state_dict(state, assign=True)
    elif how == "in_place":
        with torch.no_grad():
            contextual.backward_lm.embeddings.weight.mul_(-1)
    elif how == "to":
        contextual.backward_lm.to(torch.bfloat16)
    elif how == "swap":
        replacement = copy.deepcopy(contextual.forward_lm)
        with torch.no_grad():
            for parameter in replacement.parameters():
                parameter.add_(0.1)
        contextual.forward_lm = replacement
    else:  # clear_cache: the documented way out after an edit autograd does not see either
        contextual.forward_lm.embeddings.weight.data.mul_(-1)
        contextual.clear_cache()


@pytest.mark.parametrize("how", ["load_state_dict", "assign", "in_place", "to", "swap", "clear_cache"])
def test_the_feature_cache_follows_edits_of_the_lm_submodules(lms, tokenizer, how):
    model = tagger(lms, tokenizer).train()  # frozen LMs: training reads the cache
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    before = model(**batch).emissions
    assert model.model.contextual.cache
    _edit_lm_weights(model, how)
    cached = model(**batch).emissions
    fresh = model.eval()(**batch).emissions  # eval mode reads the LMs afresh
    assert not torch.allclose(fresh, before, rtol=1e-3, atol=1e-4)  # the edit changed the features
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-6)


def test_the_feature_cache_serves_a_tagger_built_under_inference_mode(lms, tokenizer):
    with torch.inference_mode():  # its weights are inference tensors, which keep no version counter
        model = tagger(lms, tokenizer)
        model.model.contextual.cache_eval = True
        batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
        first, again = model(**batch).emissions, model(**batch).emissions
    assert torch.equal(first, again) and len(model.model.contextual.cache) == len(SENTENCES)
