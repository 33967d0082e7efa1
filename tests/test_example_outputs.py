"""What the example scripts write next to each input row (predictions.conll, predictions.csv) is the model's answer for
that row, whatever order the Trainer batches the rows in."""

import csv
import json
import sys

import pytest
import torch
from example_scripts import SAMPLE, TINY_TAGGER, conll_sentences, example_script, run_main, run_script

import hf_rnn
from hf_rnn.data import read_conll
from hf_rnn.scripts.launch import load_pretrained

GROUPED = ["--train_sampling_strategy", "group_by_length", "--per_device_eval_batch_size", "4"]


def alone(model, tokenizer, words: list[str], **kwargs) -> torch.Tensor:
    """The model's answer for one input on its own (no batch, no padding)."""
    with torch.no_grad():
        return model(**tokenizer(words, return_tensors="pt", **kwargs))


def test_predictions_conll_holds_each_sentences_own_tags_under_length_grouping(tmp_path, monkeypatch):
    """transformers' Trainer also groups evaluation batches by length under group_by_length: the file must still
    show, next to each test sentence, the tags the saved model gives that sentence alone."""
    out = tmp_path / "out"
    test = ["--test_file", str(SAMPLE / "sample_pos.dev.tsv"), "--max_predict_samples", "24", "--no_plots"]
    train = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--max_train_samples", "64"]
    run_main(monkeypatch, "run_tagging", *train, *TINY_TAGGER, *GROUPED, "--output_dir", str(out), *test)

    model, tokenizer = load_pretrained(str(out), hf_rnn.RnnForTokenClassification)
    model.eval()
    written = conll_sentences(out / "predictions.conll")
    sentences = read_conll(SAMPLE / "sample_pos.dev.tsv")[:24]
    assert len({len(s.tokens) for s in sentences}) > 3  # lengths to group by
    assert [[word for word, _, _ in rows] for rows in written] == [s.tokens for s in sentences]
    for rows, sentence in zip(written, sentences):
        tags = alone(model, tokenizer, sentence.tokens, is_split_into_words=True).predictions[0]
        assert [guess for _, _, guess in rows] == [model.config.id2label[int(t)] for t in tags]


def test_predictions_csv_holds_each_texts_own_label_under_length_grouping(tmp_path, monkeypatch):
    texts = [" ".join(["good"] * n + ["bad"] * (i % 3)) for i, n in enumerate((1, 7, 2, 9, 3, 12, 1, 5, 8, 2, 11, 4))]
    rows = [(text, "pos" if text.count("good") > 4 else "neg") for text in texts]
    table = tmp_path / "data.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    out = tmp_path / "out"
    files = [
        "--train_file",
        str(table),
        "--test_file",
        str(table),
        "--num_train_epochs",
        "20",
        "--learning_rate",
        "0.01",
    ]
    run_main(monkeypatch, "run_classification", *files, *GROUPED, "--output_dir", str(out), "--hidden_size", "16")

    model, tokenizer = load_pretrained(str(out), hf_rnn.RnnForSequenceClassification)
    model.eval()
    with open(out / "predictions.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(row["text"], row["label"]) for row in written] == rows
    assert len({row["predicted"] for row in written}) == 2  # answers that a wrong order would misplace
    for row in written:
        logits = alone(model, tokenizer, row["text"]).logits[0]
        assert row["predicted"] == model.config.id2label[int(logits.argmax())]


SAVING = {  # flags -> (save_strategy, save_steps, save_total_limit)
    (): ("epoch", 500, 1),
    ("--eval_strategy", "steps", "--eval_steps", "200"): ("steps", 500, 1),  # as --load_best_model_at_end needs
    ("--save_steps", "100"): ("steps", 100, None),  # a saving flag given: the Trainer's defaults for the rest
    ("--save_strategy", "steps"): ("steps", 500, None),
    ("--save_total_limit", "3"): ("steps", 500, 3),
}


@pytest.mark.parametrize("script", ["run_tagging", "run_lm", "run_classification"])
@pytest.mark.parametrize("flags", SAVING, ids=lambda flags: " ".join(flags) or "defaults")
def test_the_scripts_save_one_checkpoint_per_epoch_unless_told_how(script, flags):
    data = ["--train_file", "t.txt", "--validation_file", "v.txt", "--output_dir", "out", *flags]
    training_args = example_script(script).parse(data)[-1]
    saving = (training_args.save_strategy.value, training_args.save_steps, training_args.save_total_limit)
    assert saving == SAVING[flags]


@pytest.mark.slow  # 576 steps (~10 s)
def test_by_default_a_run_keeps_one_checkpoint_its_last(tmp_path, monkeypatch):
    """The Trainer's default saved a checkpoint every 500 steps and kept them all (257 MB for a 101-second WNUT-17
    run; here checkpoint-500 and -576); the scripts keep the newest one."""
    out = tmp_path / "out"
    train = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--max_train_samples", "64", "--no_plots"]
    tiny = [
        "--embedding_size",
        "8",
        "--hidden_size",
        "8",
        "--per_device_train_batch_size",
        "1",
        "--num_train_epochs",
        "9",
    ]
    quiet = ["--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none"]
    monkeypatch.setattr(sys, "argv", ["run_tagging", *train, *tiny, *quiet, "--output_dir", str(out)])
    example_script("run_tagging").main()
    steps = json.loads((out / "trainer_state.json").read_text())["global_step"]
    assert steps == 576 and sorted(path.name for path in out.glob("checkpoint-*")) == [f"checkpoint-{steps}"]


def test_run_tagging_tags_a_file_of_words(tmp_path, monkeypatch):
    """--do_predict on a file without tags (one word per line, as flair and spaCy tag a file) writes each word and
    the tag the saved model gives its sentence alone, and no metrics; before, the file was refused ("expected a token
    and a tag column")."""
    model = tmp_path / "model"
    train = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--max_train_samples", "64", "--no_plots"]
    run_main(monkeypatch, "run_tagging", *train, *TINY_TAGGER, "--output_dir", str(model))
    sentences = read_conll(SAMPLE / "sample_pos.dev.tsv")[:12]
    words = tmp_path / "words.txt"
    words.write_text("-DOCSTART-\n\n" + "\n".join("".join(f"{w}\n" for w in s.tokens) for s in sentences))
    out = tmp_path / "out"
    test = ["--test_file", str(words), "--do_train", "false", "--output_dir", str(out), *GROUPED]
    run_main(monkeypatch, "run_tagging", "--model_name_or_path", str(model), *test)

    tagger, tokenizer = load_pretrained(str(model), hf_rnn.RnnForTokenClassification)
    tagger.eval()
    written = conll_sentences(out / "predictions.conll")
    assert [[word for word, _ in rows] for rows in written] == [s.tokens for s in sentences]
    for rows, sentence in zip(written, sentences):
        tags = alone(tagger, tokenizer, sentence.tokens, is_split_into_words=True).predictions[0]
        assert [guess for _, guess in rows] == [tagger.config.id2label[int(t)] for t in tags]
    assert not (out / "predict_results.json").exists()


@pytest.mark.slow  # torchrun, 2 processes (~30 s)
def test_predictions_conll_holds_each_sentences_own_tags_with_two_processes(tmp_path):
    """23 test sentences over 2 processes (the last batch padded with repeats, which the gather drops)."""
    out = tmp_path / "out"
    test = ["--test_file", str(SAMPLE / "sample_pos.dev.tsv"), "--max_predict_samples", "23", "--no_plots"]
    train = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--max_train_samples", "64"]
    run_script(
        "run_tagging.py",
        *train,
        *test,
        *TINY_TAGGER,
        *GROUPED,
        "--ddp_find_unused_parameters",
        "false",
        "--output_dir",
        str(out),
        launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        env={"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"},
    )
    model, tokenizer = load_pretrained(str(out), hf_rnn.RnnForTokenClassification)
    model.eval()
    written = conll_sentences(out / "predictions.conll")
    sentences = read_conll(SAMPLE / "sample_pos.dev.tsv")[:23]
    assert [[word for word, _, _ in rows] for rows in written] == [s.tokens for s in sentences]
    for rows, sentence in zip(written, sentences):
        tags = alone(model, tokenizer, sentence.tokens, is_split_into_words=True).predictions[0]
        assert [guess for _, _, guess in rows] == [model.config.id2label[int(t)] for t in tags]
