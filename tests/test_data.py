"""Column-file readers, the word-level tokenizer, and the README's main job."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from transformers import AutoTokenizer, DataCollatorForTokenClassification

from hf_rnn.data import (
    DataFormatError,
    encode_for_tagging,
    load_sample_pos,
    read_conll,
    read_conllu,
    read_text,
    standardize_tagging_dataset,
    tagging_dataset,
)
from hf_rnn.vocabulary import build_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def write(tmp_path, text: str, name="f.conll", encoding="utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_read_conll_sentences_separators_and_docstart(tmp_path):
    path = write(tmp_path, "-DOCSTART- O\n\nJohn B-PER\nruns O\n\t\nParis B-LOC\n")
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["John", "runs"], ["Paris"]]
    assert [s.tags for s in sentences] == [["B-PER", "O"], ["B-LOC"]]
    assert [s.lines for s in sentences] == [[3, 4], [6]]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("a X\nb Y Z\n", 2, "expected 2 columns"),
        ("a\n", 1, "expected a token and a tag"),
        ("", 1, "no sentences"),
        ("\n\n  \n", 1, "no sentences"),
    ],
)
def test_read_conll_errors_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError, match=message) as error:
        read_conll(path)
    assert str(error.value).startswith(f"{path}:{line}:")


def test_read_conll_bad_encoding_names_the_line(tmp_path):
    path = write(tmp_path, b"ok O\n\nbad\xff O\n")
    with pytest.raises(DataFormatError, match="UTF-8") as error:
        read_conll(path)
    assert str(error.value).startswith(f"{path}:3:")


def test_unknown_tag_is_an_error_or_mapped(tmp_path):
    train = read_conll(write(tmp_path, "a O\nb B-X\n", "train.txt"))
    dev = read_conll(write(tmp_path, "a O\nc I-LST\n", "dev.txt"))
    with pytest.raises(DataFormatError, match="I-LST") as error:
        tagging_dataset({"train": train, "dev": dev})
    assert str(error.value).startswith(f"{tmp_path / 'dev.txt'}:2:")
    data = tagging_dataset({"train": train, "dev": dev}, unknown_tag="O")
    names = data["dev"].features["tags"].feature.names
    assert [names[i] for i in data["dev"][0]["tags"]] == ["O", "O"]


def test_word_tokenizer_round_trip(tmp_path):
    tokenizer = build_word_tokenizer(
        [["The", "cat", "sat"], ["the", "Cat", "7", "42"]], lowercase=True, normalize_digits=True
    )
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1
    encoding = tokenizer([["THE", "dog", "13"]], is_split_into_words=True)
    vocab = tokenizer.get_vocab()
    assert encoding["input_ids"][0] == [vocab["the"], tokenizer.unk_token_id, vocab["00"]]
    assert encoding.word_ids(0) == [0, 1, 2] and "token_type_ids" not in encoding
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded([["THE", "dog", "13"]], is_split_into_words=True)["input_ids"] == encoding["input_ids"]
    min_freq = build_word_tokenizer([["a", "a", "b"]], min_frequency=2)
    assert "a" in min_freq.get_vocab() and "b" not in min_freq.get_vocab()


def test_sample_encodes_and_collates():
    raw = load_sample_pos()
    assert len(raw["train"]) == 600 and len(raw["dev"]) == 150
    tokenizer = build_word_tokenizer(raw["train"]["tokens"])
    data = encode_for_tagging(raw, tokenizer)
    first = data["train"][0]
    assert len(first["input_ids"]) == len(first["labels"]) == len(raw["train"][0]["tokens"])
    assert first["labels"] == raw["train"][0]["tags"]
    batch = DataCollatorForTokenClassification(tokenizer)([data["train"][i] for i in range(4)])
    assert batch["labels"].shape == batch["input_ids"].shape and (batch["labels"] == -100).any()


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (real corpora, not shipped) is absent")
def test_real_wnut17_file_reads_with_tab_only_separators():
    sentences = read_conll(SHARED / "wnut17" / "wnut17train.conll", separator="\t")
    assert len(sentences) == 3394 and sum(len(s.tokens) for s in sentences) == 62730


def test_quickstart_main_job_end_to_end(tmp_path):
    """What `make demo` runs (the char-BiLSTM-CRF), on fewer epochs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    demo = ["--use_crf", "--char_encoder", "lstm", "--epochs", "2"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--output_dir", str(tmp_path), *demo],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(result.stdout.split("dev accuracy ")[1].split()[0])
    assert accuracy > 0.9
    assert "reloaded RnnForTokenClassification" in result.stdout
    tagged = result.stdout.strip().splitlines()[-1].split()
    assert tagged[0] == "The/DET" and len(tagged) == 11


CONLLU_WORD = "{id}\t{form}\t_\t{upos}\t_\t_\t_\t_\t_\t_\n"


def conllu(*words: tuple[str, str, str]) -> str:
    return "".join(CONLLU_WORD.format(id=i, form=f, upos=u) for i, f, u in words)


@pytest.mark.parametrize(
    "text, kwargs, line, message",
    [
        ("a\tX\nb\t\n", {"separator": "\t"}, 2, "empty tag"),
        ("a\t\tO\n", {"separator": "\t", "tag_column": 1}, 1, "empty tag"),
        ("\tNOUN\n", {"separator": "\t"}, 1, "empty token"),
        ("a\tX\n \tNOUN\n", {"separator": "\t"}, 2, "empty token"),
        ("a X\n", {"tag_column": 5}, 1, "no column 5"),
        ("a X\n", {"tag_column": -2}, 1, "same column"),
        ("-DOCSTART- -X- O O\n\n", {}, 1, "no sentences"),
    ],
)
def test_read_conll_bad_cells_name_the_line(tmp_path, text, kwargs, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError, match=message) as error:
        read_conll(path, **kwargs)
    assert str(error.value).startswith(f"{path}:{line}:")


def test_read_conll_strips_a_bom_line_ends_and_tag_whitespace(tmp_path):
    sentences = read_conll(write(tmp_path, "\ufeffJohn\tB-PER \r\nruns\t O\r\rParis\tB-LOC"), separator="\t")
    assert [s.tokens for s in sentences] == [["John", "runs"], ["Paris"]]
    assert [s.tags for s in sentences] == [["B-PER", "O"], ["B-LOC"]]


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_only_newlines_end_a_line_other_breaks_stay_in_the_token(tmp_path, char):
    for separator in (None, "\t"):
        sentences = read_conll(write(tmp_path, f"a\tX\nb{char}c\tY\n\nd\tZ\n"), separator=separator)
        assert [s.tokens for s in sentences] == [["a", f"b{char}c"], ["d"]]
        assert [s.lines for s in sentences] == [[1, 2], [4]]
    assert read_text(write(tmp_path, f"\ufeffa b{char}c\nd\n")) == [["a", "b", "c", "<eos>"], ["d", "<eos>"]]
    sentences = read_conllu(write(tmp_path, conllu((1, f"b{char}c", "X"), (2, "d", "Y")), "f.conllu"))
    assert sentences[0].tokens == [f"b{char}c", "d"]


@pytest.mark.parametrize(
    "text, line, message",
    [
        (conllu((1, "", "NOUN")), 1, "empty word form"),
        (conllu((1, " ", "NOUN")), 1, "empty word form"),
        (conllu((1, "a", ""), (2, "b", "X")), 1, "no UPOS tag"),
        (conllu((1, "a", "X"), (2, "b", "_")), 2, "no UPOS tag"),
        *((conllu((1, "a", "X"), (bad, "b", "Y")), 2, "word ID") for bad in ["3-", "-4", "3-x", "2-2", "3-2", "1.x"]),
        *((conllu((bad, "b", "Y")), 1, "word ID") for bad in ["a.1", ".1", "1.", "0", "\u00b2", "01"]),
        (conllu((1, "a", "X"), (3, "b", "Y")), 2, "word ID 3 where 2"),
        (conllu((1, "a", "X"), (2, "b", "Y"), (1, "c", "Z")), 3, "word ID 1 where 3"),
        ("\ufeff1\ta\n", 1, "expected 10 TAB-separated fields"),
    ],
)
def test_read_conllu_errors_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text, "f.conllu")
    with pytest.raises(DataFormatError, match=message) as error:
        read_conllu(path)
    assert str(error.value).startswith(f"{path}:{line}:")


def test_conllu_errors_name_each_tokens_own_line(tmp_path):
    text = (
        "\ufeff# sent_id = 1\n1\tI\t_\tPRON\t_\t_\t_\t_\t_\t_\n2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "2\tdo\t_\tAUX\t_\t_\t_\t_\t_\t_\n# inside\n3\tn't\t_\tPART\t_\t_\t_\t_\t_\t_\n"
        "3.1\tgo\t_\tVERB\t_\t_\t_\t_\t_\t_\n4\tgo\t_\tVERB\t_\t_\t_\t_\t_\t_\n"
    )
    path = write(tmp_path, text, "f.conllu")
    [sentence] = read_conllu(path)
    assert sentence.tokens == ["I", "do", "n't", "go"] and sentence.lines == [2, 4, 6, 8]
    with pytest.raises(DataFormatError, match="'VERB'") as error:
        tagging_dataset({"train": [sentence]}, label_names=["AUX", "PART", "PRON"])
    assert str(error.value).startswith(f"{path}:8:")


def hub_dataset(tokens, tags, names=("O", "B-X")) -> DatasetDict:
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=list(names)))})
    return DatasetDict({"train": Dataset.from_dict({"tokens": tokens, "ner_tags": tags}, features=features)})


@pytest.mark.parametrize(
    "tokens, tags, message",
    [
        ([["a"], ["b", "c"]], [[0], [1, -1]], r"split 'train' row 1: tag -1 of word 1 'c'"),
        ([["a"], []], [[0], []], "split 'train' row 1 has no tokens"),
        ([["a"], ["b", " "]], [[0], [1, 0]], r"split 'train' row 1: word 1 ' ' gives the tokenizer no tokens"),
        ([["a"], ["b", ""]], [[0], [1, 0]], r"split 'train' row 1: word 1 '' gives the tokenizer no tokens"),
        ([["a"], ["b", "c"]], [[0], [1]], "split 'train' row 1 has 2 tokens but 1 tags"),
    ],
)
def test_hub_rows_that_would_train_wrongly_are_errors(tokens, tags, message):
    data = standardize_tagging_dataset(hub_dataset(tokens, tags), tags_column="ner_tags")
    tokenizer = build_word_tokenizer([["a", "b", "c"]])
    with pytest.raises(ValueError, match=message):
        encode_for_tagging(data, tokenizer)


def test_hub_string_tags_name_the_split_and_row():
    features = Features({"tokens": List(Value("string")), "tags": List(Value("string"))})
    rows = {
        "train": {"tokens": [["a", "b"]], "tags": [["O", "B-X"]]},
        "validation": {"tokens": [["c"]], "tags": [["I-Y"]]},
    }
    data = DatasetDict({split: Dataset.from_dict(part, features=features) for split, part in rows.items()})
    with pytest.raises(ValueError, match=r"split 'validation' row 0: tag 'I-Y' of word 0 'c' is not one of"):
        standardize_tagging_dataset(data)
    rows["train"]["tags"] = [["O", ""]]
    data = DatasetDict({split: Dataset.from_dict(part, features=features) for split, part in rows.items()})
    with pytest.raises(ValueError, match=r"split 'train' row 0: tag '' of word 1 'b' is not one of"):
        standardize_tagging_dataset(data)


def test_truncation_is_not_a_lost_word():
    data = standardize_tagging_dataset(hub_dataset([["a", "b", "c"]], [[0, 1, 0]]), tags_column="ner_tags")
    tokenizer = build_word_tokenizer([["a", "b", "c"]])
    assert encode_for_tagging(data, tokenizer, max_length=2)["train"][0]["labels"] == [0, 1]
    data = standardize_tagging_dataset(hub_dataset([["a", "", "c"]], [[0, 1, 0]]), tags_column="ner_tags")
    with pytest.raises(ValueError, match="word 1 '' gives the tokenizer no tokens"):
        encode_for_tagging(data, tokenizer, max_length=2)


def test_hub_tag_ids_without_names_keep_working():
    data = DatasetDict({"train": Dataset.from_dict({"tokens": [["a", "b"], ["c"]], "tags": [[0, 1], [1]]})})
    assert standardize_tagging_dataset(data)["train"]["tags"] == [[0, 1], [1]]


def test_concatenated_files_keep_docstart_out_of_the_sentences(tmp_path):
    """`cat a.conll b.conll`: the second file's byte-order mark starts a line mid-file; -DOCSTART- stays skipped and
    the first token is the word, as in each file read alone."""
    part = "\ufeff-DOCSTART- -X- O O\n\nEU B-ORG\nrejects O\n\n"
    joined = read_conll(write(tmp_path, (part + part).encode("utf-8")))
    alone = read_conll(write(tmp_path, part, "alone.conll"))
    assert [(s.tokens, s.tags) for s in joined] == [(s.tokens, s.tags) for s in alone] * 2


def test_a_tab_separated_file_keeps_the_spaces_in_its_tokens(tmp_path):
    """Every token line holds one TAB: columns split on TABs only, so 'New York' stays one token (read as the
    explicit separator="\\t" reads it); a space-separated file still splits on spaces."""
    text = "-DOCSTART-\n\nNew York\tB-LOC\r\nis\tO\n \t\nfine\tO\n"
    expected = read_conll(write(tmp_path, text, "explicit.conll"), separator="\t")
    sentences = read_conll(write(tmp_path, text))
    assert [(s.tokens, s.tags, s.lines) for s in sentences] == [(s.tokens, s.tags, s.lines) for s in expected]
    assert sentences[0].tokens == ["New York", "is"]
    assert [s.tokens for s in read_conll(write(tmp_path, "EU NNP B-ORG\nrejects VBZ O\n"))] == [["EU", "rejects"]]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("EU\tNNP B-NP\nrejects\tVBZ O\n", 1, r"tag 'NNP B-NP' holds whitespace \(columns split on TABs\)"),
        ("a\tX\nb c d\n", 2, r"expected 2 columns .* got 3 \(split on runs of spaces and TABs\)"),
    ],
)
def test_mixed_separators_are_refused_saying_how_the_file_was_split(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError, match=message) as error:
        read_conll(path, tag_column=1)
    assert str(error.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize("tag, meant", [("b-per", "B-per"), ("B_PER", "B-PER"), ("i.LOC", "I-LOC")])
def test_a_misspelt_chunk_tag_is_refused_at_its_line(tmp_path, tag, meant):
    """Read as POS-style labels, these would train without the scheme's constraints and be scored by accuracy."""
    path = write(tmp_path, f"John\t{tag}\nruns\tO\n")
    with pytest.raises(DataFormatError, match=f"tag '{tag}' looks like the chunk tag '{meant}' misspelt") as error:
        tagging_dataset({"train": read_conll(path)})
    assert str(error.value).startswith(f"{path}:1:")
    assert tagging_dataset({"train": read_conll(write(tmp_path, "The\tDET\nin\tIN\n"))})["train"].num_rows == 1


@pytest.mark.parametrize(
    "data, line, message",
    [
        ("a\tX\nb\tY\n".encode("utf-16"), 1, "the file is UTF-16-LE"),
        ("a\tX\nb\tY\n".encode("utf-16-le"), 1, "a NUL character"),
        ("a\tX\n\nbé\tY\n".encode("latin-1"), 3, "not valid UTF-8 .*Latin-1"),
        (b"a\tX\nb\x00\tY\n", 2, "a NUL character"),
    ],
)
def test_other_encodings_and_nul_bytes_name_the_file_and_line(tmp_path, data, line, message):
    path = write(tmp_path, data)
    with pytest.raises(DataFormatError, match=message) as error:
        read_conll(path)
    assert str(error.value).startswith(f"{path}:{line}:")


def test_run_tagging_refuses_misspelt_chunk_tags_in_files_and_datasets(tmp_path, monkeypatch, capsys):
    """Through the script: a CoNLL file at its line; a dataset's ClassLabel names (no file to name)."""
    from example_scripts import refused

    path = write(tmp_path, "-DOCSTART- O\n\nJohn B_PER\nruns O\n")
    message = refused(monkeypatch, capsys, "run_tagging", "--train_file", str(path), output_dir=tmp_path / "out")
    assert f"{path}:3: tag 'B_PER' looks like the chunk tag 'B-PER' misspelt" in message
    names = ["O", "b-per", "i-per"]
    features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=names))})
    data = DatasetDict({"train": Dataset.from_dict({"tokens": [["John"]], "tags": [[1]]}, features=features)})
    with pytest.raises(ValueError, match="the dataset's tag 'b-per' looks like the chunk tag 'B-per' misspelt"):
        standardize_tagging_dataset(data)


def test_format_of_reads_every_file_as_before_and_span_lines_as_jsonl(tmp_path):
    """By name, as run_tagging read files before the registry: CoNLL-U, tables (JSON, JSON lines, CSV; pretty-printed
    JSON lines and a table with a 'text' column too), CoNLL for the rest (.tsv included); span lines by content."""
    import json

    from hf_rnn.data import READERS, format_of, read_tagged

    record = {"tokens": ["Jean", "left"], "ner_tags": ["B-PER", "O"]}
    files = {
        "a.conllu": ("conllu", "1\tJean\t_\tPROPN\t_\t_\t0\troot\t_\t_\n"),
        "a.conll": ("conll", "Jean B-PER\nleft O\n"),
        "a.tsv": ("conll", "Jean\tB-PER\nleft\tO\n"),
        "a.txt": ("conll", "Jean B-PER\nleft O\n"),
        "a.csv": ("table", "tokens,ner_tags\nJean left,B-PER O\n"),
        "a.json": ("table", json.dumps([record])),
        "a.jsonl": ("table", json.dumps(record) + "\n"),
        "pretty.jsonl": ("table", json.dumps(record, indent=1)),
        "texts.jsonl": ("table", json.dumps({**record, "text": "Jean left"}) + "\n"),
        "spans.jsonl": ("jsonl", '\n{"text": "Jean left", "label": [[0, 4, "PER"]]}\n'),
        "flair.jsonl": ("jsonl", '{"data": "Jean left", "label": [[0, 4, "PER"]]}\n'),
    }
    for name, (expected, text) in files.items():
        path = write(tmp_path, text, name)
        assert format_of(path) == expected, name
        sentences = read_tagged(path, token_column=0, tag_column=-1, tag_field="upos", tokens_column="tokens")
        assert [(s.tokens, s.tags) for s in sentences] == [(s.tokens, s.tags) for s in READERS[expected](path)]
        if expected != "conllu":
            assert [(s.tokens, s.tags) for s in sentences] == [(["Jean", "left"], ["B-PER", "O"])], name
    assert format_of(tmp_path / "spans.jsonl", tokens_column="text") == "table"  # --tokens_column text: a table
    with pytest.raises(ValueError, match=r"a\.conll: unknown format 'xml'; the formats are \['conll', 'conllu'"):
        read_tagged(tmp_path / "a.conll", "xml")


def test_a_new_format_is_a_reader_in_READERS_and_run_tagging_reads_it(tmp_path, monkeypatch):
    """The walk-through of a new input format: one function registered, nothing else. run_tagging's --data_format
    picks it, and the reader gets the script's flags its signature names (here --tag_column)."""
    from example_scripts import TINY_TAGGER, conll_sentences, run_main

    from hf_rnn.data import READERS, TaggedSentence

    def read_pipes(path, tag_column: int = -1) -> list[TaggedSentence]:
        """One sentence per line, `word|tag` pairs."""
        lines = Path(path).read_text().splitlines()
        pairs = [[pair.split("|") for pair in line.split()] for line in lines]
        return [
            TaggedSentence([p[0] for p in s], [p[tag_column] for p in s], str(path), [n] * len(s))
            for n, s in enumerate(pairs, 1)
        ]

    monkeypatch.setitem(READERS, "pipes", read_pipes)
    path = write(tmp_path, "Jean|x|B-PER left|x|O\nMarie|x|B-PER came|x|O .|x|O\n", "train.txt")
    flags = ["--train_file", str(path), "--test_file", str(path), "--data_format", "pipes", "--tag_column", "2"]
    run_main(
        monkeypatch,
        "run_tagging",
        *flags,
        *TINY_TAGGER,
        "--max_steps",
        "1",
        "--no_plots",
        "--do_predict",
        "--output_dir",
        str(tmp_path / "out"),
    )
    predicted = conll_sentences(tmp_path / "out" / "predictions.conll")
    assert [[row[:2] for row in sentence] for sentence in predicted] == [
        [["Jean", "B-PER"], ["left", "O"]],
        [["Marie", "B-PER"], ["came", "O"], [".", "O"]],
    ]
