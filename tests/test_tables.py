"""hf_rnn.tables, the one reader of CSV/TSV/JSON tables behind run_classification and run_tagging: bad files are
refused by hf_rnn, naming the file and the line of the cell at fault, through either script."""

import json

import pytest
from example_scripts import refused

from hf_rnn.data import DataFormatError
from hf_rnn.tables import read_labelled_texts, read_tagged_table

BAD_FILES = {  # name -> (file name, classification table, tagging table, the error after the file's name)
    "UTF-16": ("train.csv", "text,label\nhi,a\n", "tokens,tags\nhi,O\n", ":1: the file is UTF-16-LE"),
    "Latin-1": ("train.csv", "text,label\nhi,a\nhé,b\n", "tokens,tags\nhi,O\nhé,O\n", ":3: not valid UTF-8"),
    "NUL": ("train.csv", "text,label\nhi,a\nh\0,b\n", "tokens,tags\nhi,O\nh\0,O\n", ":3: a NUL character"),
    "unbalanced quote": (
        "train.csv",
        'text,label\nhi,a\n"open,b\nbye,c\n',
        'tokens,tags\nhi,O\n"open,O\nbye,O\n',
        ":3: a quoted cell in this row is never closed",
    ),
    "stray quote": ("train.csv", 'text,label\n"a"b,c\n', 'tokens,tags\n"a"b,O\n', ":2: not valid CSV"),
    "empty JSON": ("train.json", "", "", ": empty file"),
    "empty JSON array": ("train.json", "[]", "[]", ": no rows"),
    "lone surrogate": (
        "train.jsonl",
        '{"text": "ok", "label": "a"}\n{"text": "a\\ud800", "label": "b"}\n',
        '{"tokens": ["ok"], "tags": ["O"]}\n{"tokens": ["a\\ud800"], "tags": ["O"]}\n',
        ":2: the '{}' value holds a lone surrogate '\\ud800'",
    ),
    "broken JSON line": (
        "train.jsonl",
        '{"text": "ok", "label": "a"}\n\n{"text": "b" "label": "b"}\n',
        '{"tokens": ["ok"], "tags": ["O"]}\n\n{"tokens": ["b"] "tags": ["O"]}\n',
        ":3: not valid JSON",
    ),
    "NaN, a missing value": (  # before: a text or class 'nan'
        "train.jsonl",
        '{"text": "ok", "label": "a"}\n{"text": "hi", "label": NaN}\n',
        '{"tokens": ["ok"], "tags": ["O"]}\n{"tokens": ["hi"], "tags": [NaN]}\n',
        {
            "classification": ":2: empty 'label' value (nan in the JSON)",
            "tagging": ":2: 'tags' must be a list of tags",
        },
    ),
    "multi-line cell before the empty one": (  # the cell at fault, not the record's last line or the other column
        "train.csv",
        'text,label\n"two\nlines",a\nhi,"x"\n,"multi\nline label"\n',
        'tokens,tags\n"New\nYork",B-LOC I-LOC\nParis,\nBerlin,B-LOC\n',
        {"classification": ":5: empty 'text' value", "tagging": ":4: 'tags' must be a list of tags"},
    ),
}


def write(path, text: str, name: str) -> None:
    path.write_bytes(
        text.encode("utf-16") if name == "UTF-16" else text.encode("latin-1" if name == "Latin-1" else "utf-8")
    )


@pytest.mark.parametrize("name", BAD_FILES)
@pytest.mark.parametrize("script", ["classification", "tagging"])
def test_a_bad_table_is_refused_at_its_file_and_line_by_both_scripts(tmp_path, monkeypatch, capsys, name, script):
    file_name, classification, tagging, error = BAD_FILES[name]
    path = tmp_path / file_name
    write(path, classification if script == "classification" else tagging, name)
    error = (
        error[script] if isinstance(error, dict) else error.format("text" if script == "classification" else "tokens")
    )
    columns = (
        ("--text_column", "text")
        if script == "classification"
        else ("--tokens_column", "tokens", "--tags_column", "tags")
    )
    message = refused(
        monkeypatch, capsys, f"run_{script}", "--train_file", str(path), *columns, output_dir=tmp_path / "out"
    )
    assert f"{path}{error}" in message


def test_every_table_format_reads_the_same_records(tmp_path):
    """A CSV with a BOM, CRLF line ends and a quoted multi-line cell, its TSV, a JSON array, pretty-printed JSON
    objects and JSON lines: the same texts and labels (numbers read as their text), each sentence at its line."""
    records = [{"text": "two\nlines, quoted", "label": "a"}, {"text": "plain", "label": 3}]
    (tmp_path / "t.csv").write_bytes('\ufefftext,label\r\n"two\nlines, quoted",a\r\nplain,3\r\n'.encode())
    (tmp_path / "t.tsv").write_text('text\tlabel\n"two\nlines, quoted"\ta\n\nplain\t3\n')
    (tmp_path / "t.json").write_text(json.dumps(records, indent=2))
    (tmp_path / "pretty.jsonl").write_text("\n".join(json.dumps(r, indent=1) for r in records))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    expected = {"text": ["two\nlines, quoted", "plain"], "label": ["a", "3"]}
    for name in ("t.csv", "t.tsv", "t.json", "pretty.jsonl", "t.jsonl"):
        assert read_labelled_texts(tmp_path / name, "text", "label") == expected, name
    (tmp_path / "tags.csv").write_text('tokens,tags\n"New\tYork",B-LOC I-LOC\nParis,\nx,O\n')
    with pytest.raises(ValueError, match=r"tags\.csv:3: 'tags' must be a list of tags, got \[\]"):
        read_tagged_table(tmp_path / "tags.csv", "tokens", "tags")
    (tmp_path / "twice.csv").write_text("text,text,label\na,b,c\n")
    with pytest.raises(DataFormatError, match=r"twice\.csv:1: the header names the column\(s\) \['text'\] more than"):
        read_labelled_texts(tmp_path / "twice.csv", "text", "label")
