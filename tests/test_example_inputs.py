"""The example scripts refuse bad input (tables, corpora, validation splits) before training, with nothing
written."""

import pytest
from example_scripts import (
    SAMPLE,
    refused,
)

from hf_rnn.data import read_conll

# ---- bad input: refused before training, with nothing written ------------------------------------------------------


BAD_TABLES = {  # train.csv's text -> the error
    "empty text cell": ("text,label\nhello world,a\n,b\n", "train.csv:3: empty 'text' value"),
    "empty label cell": ("text,label\nhello world,a\nbye now,\n", "train.csv:3: empty 'label' value"),
    "blank label": ("text,label\nhello world,a\nbye now, \n", "train.csv:3: empty 'label' value"),
    "missing cell": ("text,label\nhello world,a\nbye now\n", "train.csv:3: empty 'label' value"),
    "extra cell": ("text,label\nhello world,a\nbye,now,b\n", "train.csv:3: 3 cells, the header has 2"),
    "no label column": ("text,category\nhello,a\n", "train.csv: no 'label' column (--label_column); it has"),
    "header only": ("text,label\n", "train.csv: no rows below the header"),
    "empty file": ("", "train.csv: empty file"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_run_classification_refuses_a_bad_table(tmp_path, monkeypatch, capsys, case):
    text, error = BAD_TABLES[case]
    (tmp_path / "train.csv").write_text(text)
    message = refused(
        monkeypatch,
        capsys,
        "run_classification",
        "--train_file",
        str(tmp_path / "train.csv"),
        output_dir=tmp_path / "out",
    )
    assert error in message


BAD_VALIDATION_FILES = {  # the validation file's name and text -> the error
    "empty CSV cell": ("dev.csv", "text,label\nhello,a\n,b\n", "dev.csv:3: empty 'text' value"),
    "JSON null": (
        "dev.jsonl",
        '{"text": "hello", "label": "a"}\n{"text": null, "label": "b"}\n',
        "dev.jsonl:2: empty 'text'",
    ),
    "JSON list": ("dev.jsonl", '{"text": ["hello"], "label": "a"}\n', "dev.jsonl:1: the 'text' value is a list"),
    "unseen label": ("dev.csv", "text,label\nhello,c\n", "dev.csv: labels ['c'] do not occur in the training file"),
}


@pytest.mark.parametrize("case", BAD_VALIDATION_FILES)
def test_run_classification_refuses_a_bad_validation_file(tmp_path, monkeypatch, capsys, case):
    name, text, error = BAD_VALIDATION_FILES[case]
    (tmp_path / "train.csv").write_text("text,label\nhello world,a\nbye now,b\n")
    (tmp_path / name).write_text(text)
    message = refused(
        monkeypatch,
        capsys,
        "run_classification",
        "--train_file",
        str(tmp_path / "train.csv"),
        "--validation_file",
        str(tmp_path / name),
        output_dir=tmp_path / "out",
    )
    assert error in message


@pytest.mark.parametrize("short", ["train", "validation"])
def test_run_lm_refuses_a_corpus_shorter_than_one_window(tmp_path, monkeypatch, capsys, short):
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.dev.tsv")]
    files = {"train": tmp_path / "long.txt", "validation": tmp_path / "long.txt", short: tmp_path / "short.txt"}
    (tmp_path / "long.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "short.txt").write_text("a b c\nd e\n")  # 7 tokens with the <eos>s; a window here needs 2 * 20 + 1
    message = refused(
        monkeypatch,
        capsys,
        "run_lm",
        "--train_file",
        str(files["train"]),
        "--validation_file",
        str(files["validation"]),
        "--bptt",
        "20",
        "--per_device_train_batch_size",
        "2",
        "--per_device_eval_batch_size",
        "2",
        output_dir=tmp_path / "out",
    )
    assert f"{tmp_path / 'short.txt'}: 7 tokens" in message and "--bptt 20" in message and "needs 41" in message


def test_run_lm_refuses_an_empty_corpus(tmp_path, monkeypatch, capsys):
    (tmp_path / "train.txt").write_text("\n\n")
    message = refused(
        monkeypatch, capsys, "run_lm", "--train_file", str(tmp_path / "train.txt"), output_dir=tmp_path / "out"
    )
    assert message.startswith(f"{tmp_path / 'train.txt'}:1: no text found")


@pytest.mark.parametrize("fraction", ["1.0", "1.5", "-0.1"])
def test_run_tagging_refuses_a_validation_fraction_outside_0_1(tmp_path, monkeypatch, capsys, fraction):
    train = str(SAMPLE / "sample_pos.train.tsv")
    args = ("--train_file", train, "--validation_fraction", fraction)
    message = refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert f"--validation_fraction {fraction}" in message and "[0, 1)" in message


def test_run_tagging_refuses_a_validation_fraction_that_leaves_no_training_sentence(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.tsv").write_text("Hello\tINTJ\n!\tPUNCT\n")
    args = ("--train_file", str(tmp_path / "tiny.tsv"), "--validation_fraction", "0.5")
    message = refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert f"{tmp_path / 'tiny.tsv'} has 1 sentence" in message and "--validation_fraction 0.5" in message


def test_run_tagging_refuses_a_validation_fraction_next_to_a_validation_file(tmp_path, monkeypatch, capsys):
    train, dev = str(SAMPLE / "sample_pos.train.tsv"), str(SAMPLE / "sample_pos.dev.tsv")
    args = ("--train_file", train, "--validation_file", dev, "--validation_fraction", "0.1")
    message = refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert "--validation_fraction" in message and "--validation_file" in message


OK_LINE = '{"text": "Jean lives in Paris.", "label": [[0, 4, "PER"], [14, 19, "LOC"]]}\n'
BAD_SPAN_LINES = {  # a second line of train.jsonl -> the error after "train.jsonl:2: "
    "boundary inside a word": (
        '{"text": "Jean lives in Paris.", "label": [[14, 17, "LOC"]]}',
        "span [14, 17, 'LOC'] ('Par') ends inside the word 'Paris' (14-19)",
    ),
    "start inside a word": (
        '{"text": "Jean lives", "label": [[1, 4, "PER"]]}',
        "span [1, 4, 'PER'] ('ean') starts inside the word 'Jean' (0-4)",
    ),
    "a clitic's word": ('{"text": "I don\'t", "label": [[2, 5, "X"]]}', 'ends inside the word "n\'t" (4-7)'),
    "overlapping spans": (
        '{"text": "New York City", "label": [[0, 8, "LOC"], [4, 13, "LOC"]]}',
        "span [4, 13, 'LOC'] overlaps span [0, 8, 'LOC']",
    ),
    "nested spans": (
        '{"text": "New York City", "label": [[0, 13, "LOC"], [4, 8, "LOC"]]}',
        "span [4, 8, 'LOC'] overlaps span [0, 13, 'LOC']",
    ),
    "span past the text": ('{"text": "Jean", "label": [[0, 5, "PER"]]}', "needs 0 <= start < end <= 4"),
    "negative start": ('{"text": "Jean", "label": [[-1, 4, "PER"]]}', "needs 0 <= start < end <= 4"),
    "start == end": ('{"text": "Jean", "label": [[2, 2, "PER"]]}', "needs 0 <= start < end <= 4"),
    "start > end": ('{"text": "Jean", "label": [[4, 0, "PER"]]}', "needs 0 <= start < end <= 4"),
    "span over a space only": ('{"text": "a b", "label": [[1, 2, "X"]]}', "span [1, 2, 'X'] (' ') covers no word"),
    "empty type": ('{"text": "Jean", "label": [[0, 4, ""]]}', "the type must be a name without whitespace"),
    "type with a space": ('{"text": "Jean", "label": [[0, 4, "P ER"]]}', "the type must be a name"),
    "offsets as text": ('{"text": "Jean", "label": [["0", 4, "PER"]]}', "a span is [start, end, type]"),
    "offsets as floats or booleans": (
        '{"text": "Jean", "label": [[false, 4.0, "PER"]]}',
        "a span is [start, end, type]",
    ),
    "a two-item span": ('{"text": "Jean", "label": [[0, 4]]}', "a span is [start, end, type]"),
    "spans not a list": ('{"text": "Jean", "label": "PER"}', "the spans must be a list of [start, end, type]"),
    "bad JSON": ('{"text": "Jean" "label": []}', "not valid JSON (Expecting ',' delimiter)"),
    "not an object": ('["Jean", []]', "a line must be a JSON object"),
    "no label key": ('{"text": "Jean"}', "no 'label' or 'labels' key (the spans); the line's keys are ['text']"),
    "no text key": ('{"label": []}', "no 'text' or 'data' key (the text)"),
    "text and data": ('{"text": "a", "data": "b", "label": []}', "both 'text' and 'data'"),
    "text not a string": ('{"text": ["Jean"], "label": []}', "the text must be a string"),
    "blank text": ('{"text": " ", "label": []}', "the text ' ' holds no words"),
    "lone surrogate": ('{"text": "a\\ud800", "label": []}', "the text holds a lone surrogate"),
}


@pytest.mark.parametrize("case", BAD_SPAN_LINES)
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_run_tagging_refuses_a_bad_span_line_at_its_file_and_line(tmp_path, monkeypatch, capsys, case, split):
    line, error = BAD_SPAN_LINES[case]
    good, bad = tmp_path / "good.jsonl", tmp_path / f"{split}.jsonl"
    good.write_text(OK_LINE)
    bad.write_text(OK_LINE + line + "\n")
    files = {"train": good, "validation": good, "test": good, split: bad}
    args = [item for name, path in files.items() for item in (f"--{name}_file", str(path))]
    message = refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert message.startswith(f"{bad}:2: ") and error in message, message


def test_run_tagging_refuses_an_unknown_data_format(tmp_path, monkeypatch, capsys):
    args = ("--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--data_format", "xml")
    message = refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert "--data_format xml: give one of conll, conllu, jsonl, table" in message
    args = ("--dataset_name", str(tmp_path), "--data_format", "jsonl")
    message = refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert "--data_format says how to read --train_file" in message
