"""What the example scripts write next to each input row (predictions.conll, predictions.csv) is the model's answer for
that row, whatever order the Trainer batches the rows in."""

import csv

import torch
from example_scripts import SAMPLE, TINY_TAGGER, conll_sentences, run_main

import hf_rnn
from hf_rnn.data import read_conll
from hf_rnn.launch import load_pretrained

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
