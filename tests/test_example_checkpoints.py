"""run_ner.py's flags in the example scripts (--model_name_or_path, --do_train/--do_eval/--do_predict, --test_file,
--max_*_samples), character and backward language models, and ULMFiT: a classifier or tagger on an LM's encoder."""

import json
import math
from pathlib import Path

import pytest
import torch
from example_scripts import (
    SAMPLE,
    TINY_TAGGER,
    conll_sentences,
    example_script,
    refused,
    run_main,
)
from transformers import AutoTokenizer

import hf_rnn
from hf_rnn.data import read_characters, read_conll, read_text
from hf_rnn.scripts.launch import load_pretrained
from hf_rnn.vocabulary import build_char_tokenizer, build_word_tokenizer

# ---- run_ner.py's flags: --model_name_or_path, --do_train/--do_eval/--do_predict, --test_file, --max_*_samples -----


def test_run_tagging_predicts_and_its_checkpoint_predicts_the_same(tmp_path, monkeypatch):
    """Trained from a JSON-lines file (run_ner.py's layout) on its first 300 sentences; predictions.conll holds the
    test file's words and gold tags and scores what predict_results.json says; the saved model, reloaded, tags the
    same."""
    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    rows = [json.dumps({"tokens": s.tokens, "ner_tags": s.tags}) for s in sentences]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    test = ["--test_file", str(SAMPLE / "sample_pos.dev.tsv"), "--max_predict_samples", "20", "--no_plots"]
    out, again = tmp_path / "out", tmp_path / "again"
    train = ["--train_file", str(tmp_path / "train.jsonl"), "--max_train_samples", "300", "--num_train_epochs", "2"]
    run_main(monkeypatch, "run_tagging", *train, *TINY_TAGGER, "--output_dir", str(out), *test)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 38  # 2 epochs of 300 / 16 batches

    predicted = conll_sentences(out / "predictions.conll")
    gold = read_conll(SAMPLE / "sample_pos.dev.tsv")[:20]
    assert [[word for word, _, _ in s] for s in predicted] == [s.tokens for s in gold]
    assert [[tag for _, tag, _ in s] for s in predicted] == [s.tags for s in gold]
    pairs = [(tag, guess) for s in predicted for _, tag, guess in s]
    metrics = json.loads((out / "predict_results.json").read_text())
    assert metrics["predict_accuracy"] == pytest.approx(sum(t == g for t, g in pairs) / len(pairs))

    run_main(
        monkeypatch,
        "run_tagging",
        "--model_name_or_path",
        str(out),
        "--do_train",
        "false",
        "--output_dir",
        str(again),
        *test,
    )
    assert (again / "predictions.conll").read_text() == (out / "predictions.conll").read_text()
    assert not (again / "model.safetensors").exists()  # nothing trained, nothing saved

    # a dataset folder whose label set lacks PRON (other tag ids): scored as the same sentences from a file
    dev = [s for s in read_conll(SAMPLE / "sample_pos.dev.tsv") if "PRON" not in s.tags]
    (tmp_path / "data").mkdir()
    for split in ("train", "validation"):
        lines = (json.dumps({"words": s.tokens, "pos": s.tags}) + "\n" for s in dev)
        (tmp_path / "data" / f"{split}.jsonl").write_text("".join(lines))
    (tmp_path / "dev.tsv").write_text(
        "".join("".join(f"{w}\t{t}\n" for w, t in zip(s.tokens, s.tags)) + "\n" for s in dev)
    )
    evaluate = ["--model_name_or_path", str(out), "--do_train", "false", "--no_plots"]
    dataset = ["--dataset_name", str(tmp_path / "data"), "--tokens_column", "words", "--tags_column", "pos"]
    run_main(monkeypatch, "run_tagging", *evaluate, *dataset, "--output_dir", str(tmp_path / "from_dataset"))
    run_main(
        monkeypatch,
        "run_tagging",
        *evaluate,
        "--validation_file",
        str(tmp_path / "dev.tsv"),
        "--output_dir",
        str(tmp_path / "from_file"),
    )
    scores = [
        json.loads((tmp_path / name / "eval_results.json").read_text()) for name in ("from_dataset", "from_file")
    ]
    assert scores[0]["eval_accuracy"] == scores[1]["eval_accuracy"] > 0.3


def test_a_json_or_csv_tagging_file_reads_as_its_conll_file(tmp_path):
    sentences = read_conll(SAMPLE / "sample_pos.dev.tsv")
    (tmp_path / "dev.jsonl").write_text(
        "".join(json.dumps({"words": s.tokens, "pos": s.tags}) + "\n" for s in sentences)
    )
    lines = ["words,pos", *(f"{' '.join(s.tokens)},{' '.join(s.tags)}" for s in sentences)]
    (tmp_path / "dev.csv").write_text("\n".join(lines) + "\n")
    from hf_rnn.tables import read_tagged_table as read_table

    for name in ("dev.jsonl", "dev.csv"):
        table = read_table(str(tmp_path / name), "words", "pos")
        assert [(s.tokens, s.tags) for s in table] == [(s.tokens, s.tags) for s in sentences]
    (tmp_path / "bad.jsonl").write_text('{"words": ["a", "b"], "pos": ["X"]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: 2 words but 1 tags"):
        read_table(str(tmp_path / "bad.jsonl"), "words", "pos")


def test_run_classification_predicts_and_its_checkpoint_predicts_the_same(tmp_path, monkeypatch, capsys):
    import csv

    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    with open(tmp_path / "all.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([" ".join(s.tokens), "two" if "CCONJ" in s.tags else "one"] for s in sentences)
    test = ["--test_file", str(tmp_path / "all.csv"), "--max_predict_samples", "30"]
    out, again = tmp_path / "out", tmp_path / "again"
    tiny = ["--embedding_size", "16", "--hidden_size", "16", "--max_train_samples", "200", "--num_train_epochs", "1"]
    run_main(
        monkeypatch,
        "run_classification",
        "--train_file",
        str(tmp_path / "all.csv"),
        *tiny,
        "--output_dir",
        str(out),
        *test,
    )
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(tmp_path / "all.csv", newline="") as handle:
        assert [row[:2] for row in rows] == list(csv.reader(handle))[:31]  # the header, then the first 30 rows
    metrics = json.loads((out / "predict_results.json").read_text())
    assert metrics["predict_accuracy"] == pytest.approx(sum(row[1] == row[2] for row in rows[1:]) / 30)

    run_main(
        monkeypatch,
        "run_classification",
        "--model_name_or_path",
        str(out),
        "--do_train",
        "false",
        "--output_dir",
        str(again),
        *test,
    )
    assert (again / "predictions.csv").read_text() == (out / "predictions.csv").read_text()

    (tmp_path / "new.csv").write_text("text,label\nhello world,three\n")
    args = ("--model_name_or_path", str(out), "--train_file", str(tmp_path / "new.csv"))
    message = refused(monkeypatch, capsys, "run_classification", *args, output_dir=tmp_path / "refused")
    assert "the data has labels ['three'] that the model does not know" in message


def test_run_lm_scores_a_test_file_and_its_checkpoint_scores_the_same(tmp_path, monkeypatch, capsys):
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    (tmp_path / "train.txt").write_text("\n".join(lines[:500]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(lines[500:]) + "\n")
    test = ["--test_file", str(tmp_path / "test.txt"), "--bptt", "10", "--per_device_eval_batch_size", "4"]
    out, again = tmp_path / "out", tmp_path / "again"
    tiny = ["--hidden_size", "16", "--embedding_size", "16", "--max_train_samples", "160", "--num_train_epochs", "1"]
    run_main(
        monkeypatch, "run_lm", "--train_file", str(tmp_path / "train.txt"), *tiny, "--output_dir", str(out), *test
    )
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 20  # 160 windows in rows of 8
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert first.startswith("test perplexity ")
    run_main(
        monkeypatch,
        "run_lm",
        "--model_name_or_path",
        str(out),
        "--do_train",
        "false",
        "--output_dir",
        str(again),
        *test,
    )
    assert capsys.readouterr().out.strip().splitlines()[-1] == first
    assert json.loads((again / "predict_results.json").read_text())["predict_perplexity"] == pytest.approx(
        float(first.split()[-1]), abs=0.005
    )


def test_a_checkpoint_of_another_head_is_refused(tmp_path):
    hf_rnn.RnnForCausalLM(hf_rnn.RnnConfig(vocab_size=10, embedding_size=4, hidden_size=4)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"a checkpoint of RnnForCausalLM, not of RnnForTokenClassification"):
        load_pretrained(str(tmp_path), hf_rnn.RnnForTokenClassification)


BAD_STEPS = {  # script, flags -> the usage error
    "nothing to evaluate": ("run_tagging", ["--do_train", "false", "--test_file", "t.tsv"], "--do_train false: pass"),
    "eval without data": ("run_tagging", ["--train_file", "t.tsv", "--do_eval", "true"], "--do_eval needs --valid"),
    "predict without data": ("run_classification", ["--train_file", "t.csv", "--do_predict"], "--do_predict needs"),
    "train without data": ("run_lm", ["--model_name_or_path", "m", "--do_train"], "--do_train needs --train_file"),
    "fixed architecture": (
        "run_tagging",
        ["--model_name_or_path", "m", "--train_file", "t.tsv", "--use_crf", "--lowercase"],
        "--use_crf --lowercase: the model and its tokenizer come from --model_name_or_path m",
    ),
    "fixed size": (
        "run_lm",
        ["--model_name_or_path", "m", "--train_file", "t", "--hidden_size", "8"],
        "--hidden_size:",
    ),
}


@pytest.mark.parametrize("case", BAD_STEPS)
def test_steps_without_their_data_or_flags_a_checkpoint_fixes_are_refused(tmp_path, monkeypatch, capsys, case):
    script, args, error = BAD_STEPS[case]
    assert error in refused(monkeypatch, capsys, script, *args, output_dir=tmp_path / "out")


@pytest.mark.parametrize("script", ["run_tagging", "run_classification", "run_lm"])
def test_the_steps_default_to_what_the_data_asks_for(tmp_path, script):
    parse = example_script(script).parse
    train = ["--train_file", "t", "--output_dir", str(tmp_path)]
    steps = ("do_train", "do_eval", "do_predict")
    assert [getattr(parse(train)[-1], step) for step in steps] == [True, False, False]
    both = [*train, "--validation_file", "v", "--test_file", "t"]
    assert [getattr(parse(both)[-1], step) for step in steps] == [True, True, True]
    assert not parse([*both, "--do_eval", "false"])[-1].do_eval


# ---- character and backward language models (--char_level, --reverse) ---------------------------------------------


def _lm_corpus(tmp_path: Path) -> tuple[Path, Path]:
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    (tmp_path / "train.txt").write_text("\n".join(lines[:300]) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(lines[500:540]) + "\n")
    return tmp_path / "train.txt", tmp_path / "valid.txt"


def test_run_lm_trains_a_character_model_and_reports_bits_per_character(tmp_path, monkeypatch, capsys):
    """Every character is a token (spaces, line ends); eval_bpc is the loss in bits, log2 of the perplexity. The
    tokenizer reloads as one id per character; the checkpoint's config says char_level."""
    train, valid = _lm_corpus(tmp_path)
    out = tmp_path / "out"
    tiny = ["--hidden_size", "32", "--embedding_size", "16", "--num_layers", "1", "--bptt", "50"]
    files = ["--train_file", str(train), "--validation_file", str(valid), "--output_dir", str(out)]
    adamw = ["--no_zaremba", "--learning_rate", "0.02", "--num_train_epochs", "3"]
    run_main(monkeypatch, "run_lm", "--char_level", *files, *tiny, *adamw)
    printed = capsys.readouterr().out.strip().splitlines()
    perplexity, bpc = float(printed[-2].split()[-1]), float(printed[-1].split()[-1])
    assert printed[-2].startswith("validation perplexity ") and printed[-1].startswith("validation bits per character")
    assert bpc == pytest.approx(math.log2(perplexity), abs=2e-3)
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_bpc"] == pytest.approx(math.log2(metrics["eval_perplexity"]))
    config = json.loads((out / "config.json").read_text())
    assert config["char_level"] is True and config["reverse"] is False
    assert bpc < 0.7 * math.log2(config["vocab_size"])  # measured 2.81; a uniform guess over its 38 is 5.25
    text = valid.read_text()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(text).input_ids
    assert len(ids) == len(text) and tokenizer.decode(ids) == text and "\n" in tokenizer.get_vocab()


def test_run_lm_reverse_reads_each_file_last_token_first(tmp_path, monkeypatch, capsys):
    """The streams: a word LM's reversed stream is the forward one flipped (an <eos> now opens each line), cut to
    --max_*_samples first; a backward checkpoint, evaluated again, reads its files reversed as in training."""
    train, valid = _lm_corpus(tmp_path)
    run_lm = example_script("run_lm")
    words = read_text(train)
    tokenizer = build_word_tokenizer(words, language_model=True)
    forward = run_lm.token_stream(words, tokenizer, False, None, False)
    backward = run_lm.token_stream(words, tokenizer, False, None, True)
    assert torch.equal(backward, forward.flip(0)) and backward[0] == tokenizer.eos_token_id
    assert torch.equal(run_lm.token_stream(words, tokenizer, False, 7, True), forward[:7].flip(0))
    characters = read_characters(train)
    chars = build_char_tokenizer(characters)
    assert chars.decode(run_lm.token_stream(characters, chars, True, None, True)) == train.read_text()[::-1]

    out, again = tmp_path / "out", tmp_path / "again"
    tiny = ["--hidden_size", "16", "--embedding_size", "16", "--bptt", "10", "--max_train_samples", "80"]
    files = ["--train_file", str(train), "--validation_file", str(valid)]
    run_main(monkeypatch, "run_lm", "--reverse", *files, *tiny, "--output_dir", str(out))
    trained = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads((out / "config.json").read_text())["reverse"] is True
    evaluate = ["--model_name_or_path", str(out), "--do_train", "false", "--validation_file", str(valid)]
    run_main(monkeypatch, "run_lm", *evaluate, "--bptt", "10", "--output_dir", str(again))
    assert capsys.readouterr().out.strip().splitlines()[-1] == trained


# ---- a classifier or tagger started from a language model's encoder (ULMFiT) ---------------------------------------


def _language_model(folder: Path, char_level: bool = False, reverse: bool = False) -> hf_rnn.RnnForCausalLM:
    """A small saved LM (random weights) whose vocabulary holds the sample's words, or characters."""
    sentences = [s.tokens for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    if char_level:
        tokenizer = build_char_tokenizer(" ".join(words) + "\n" for words in sentences)
    else:
        tokenizer = build_word_tokenizer(sentences, language_model=True)
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size, embedding_size=12, hidden_size=16, num_layers=2, tie_word_embeddings=True,
        char_level=char_level, reverse=reverse, pad_token_id=0, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = hf_rnn.RnnForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def _classification_files(tmp_path: Path) -> Path:
    import csv

    with open(tmp_path / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for s in read_conll(SAMPLE / "sample_pos.train.tsv")[:100]:
            writer.writerow([" ".join(s.tokens), "two" if "CCONJ" in s.tags else "one"])
    return tmp_path / "train.csv"


def _encoder_loaded(model, lm: hf_rnn.RnnForCausalLM) -> None:
    """The encoder's weights are the LM's, every one; the head's are new."""
    encoder = {name: value for name, value in lm.state_dict().items() if name.startswith("model.")}
    weights = model.state_dict()
    assert set(encoder) == {name for name in weights if name.startswith("model.")}
    assert all(torch.equal(weights[name], value) for name, value in encoder.items())
    assert {name.split(".")[0] for name in weights} - {"model"} == ({"classifier", "crf"} & set(model._modules))


def test_run_classification_starts_from_a_language_models_encoder(tmp_path, monkeypatch, caplog):
    """ULMFiT's start: --model_name_or_path of an LM gives a classifier with its encoder (checked before any step
    changes it: lr 0), its tokenizer and architecture, the training file's labels, --pooling, and a new head; the log
    names what was loaded and what is new. Not a backward LM's encoder, and not without training the new head."""
    lm = _language_model(tmp_path / "lm")
    train, out = _classification_files(tmp_path), tmp_path / "out"
    args = ["--model_name_or_path", str(tmp_path / "lm"), "--train_file", str(train), "--pooling", "max"]
    with caplog.at_level("INFO", logger="hf_rnn.scripts.launch"):
        run_main(monkeypatch, "run_classification", *args, "--learning_rate", "0", "--output_dir", str(out))
    assert "new: classifier.bias, classifier.weight; left out: lm_head.bias, projection.weight" in caplog.text
    model = hf_rnn.RnnForSequenceClassification.from_pretrained(out)
    _encoder_loaded(model, lm)
    config = model.config
    assert config.id2label == {0: "one", 1: "two"} and config.classifier_pooling == "max" and not config.bidirectional
    assert config.hidden_size == 16 and config.num_layers == 2 and config.architectures == [type(model).__name__]
    tokenizers = [AutoTokenizer.from_pretrained(folder) for folder in (out, tmp_path / "lm")]
    assert tokenizers[0].get_vocab() == tokenizers[1].get_vocab()
    text = "The cat went to Paris."
    assert tokenizers[0](text).input_ids == tokenizers[1](text).input_ids  # <eos> first, as the LM read it

    _language_model(tmp_path / "backward", reverse=True)
    args = ["--model_name_or_path", str(tmp_path / "backward"), "--train_file", str(train)]
    message = refused(monkeypatch, None, "run_classification", *args, output_dir=tmp_path / "refused")
    assert "a backward language model (config.reverse)" in message


@pytest.mark.parametrize(
    "flags, error",
    [
        (["--do_train", "false", "--validation_file", "v.csv"], "is a language model, its new head needs training"),
        (["--train_file", "t.csv", "--hidden_size", "8"], "--hidden_size: the model and its tokenizer come from"),
    ],
)
def test_a_language_model_fixes_the_encoder_and_needs_training(tmp_path, monkeypatch, capsys, flags, error):
    _language_model(tmp_path / "lm")
    args = ["--model_name_or_path", str(tmp_path / "lm"), *flags]
    assert error in refused(monkeypatch, capsys, "run_classification", *args, output_dir=tmp_path / "out")


def test_run_tagging_starts_from_a_word_language_models_encoder(tmp_path, monkeypatch):
    """A CRF tagger on an LM's encoder (--use_crf is the new head's), with ULMFiT's schedules on; not on a character
    LM's."""
    lm = _language_model(tmp_path / "lm")
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(tmp_path / "lm"), "--train_file", str(SAMPLE / "sample_pos.train.tsv")]
    schedules = ["--layer_lr_decay", "2.6", "--gradual_unfreezing", "--num_train_epochs", "2"]
    run_main(
        monkeypatch, "run_tagging", *args, "--use_crf", *schedules, "--learning_rate", "0", "--output_dir", str(out)
    )
    model = hf_rnn.RnnForTokenClassification.from_pretrained(out)
    _encoder_loaded(model, lm)
    assert model.config.use_crf and model.config.num_labels == 10 and not model.config.bidirectional

    _language_model(tmp_path / "chars", char_level=True)
    args[1] = str(tmp_path / "chars")
    message = refused(monkeypatch, None, "run_tagging", *args, output_dir=tmp_path / "refused")
    assert "a character language model, whose encoder reads characters" in message
