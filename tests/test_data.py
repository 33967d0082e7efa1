"""Column-file readers, the word-level tokenizer, and the README's main job."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer, DataCollatorForTokenClassification

from hf_rnn.data import DataFormatError, encode_for_tagging, load_sample_pos, read_conll, tagging_dataset
from hf_rnn.tokenization import build_word_tokenizer

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
    assert sentences[1].line == 6


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
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
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
