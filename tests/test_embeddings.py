import pytest
import torch

import hf_rnn
from hf_rnn.data import DataFormatError
from hf_rnn.embeddings import load_word_vectors
from hf_rnn.vocabulary import build_word_tokenizer


def setup():
    tokenizer = build_word_tokenizer([["Paris", "is", "big"], ["paris", "Oslo"]])
    config = hf_rnn.RnnConfig(vocab_size=tokenizer.vocab_size, embedding_size=3, hidden_size=4, pad_token_id=0)
    return hf_rnn.RnnModel(config), tokenizer


@pytest.mark.parametrize("header", ["", "4 3\n"])
def test_vectors_fill_exact_then_lowercased_rows(tmp_path, header):
    model, tokenizer = setup()
    before = model.embeddings.weight.detach().clone()
    (tmp_path / "vectors.txt").write_text(header + "paris 1 2 3\nis 4 5 6\noslo 7 8 9\nunused 0 0 1\n")
    stats = load_word_vectors(model, tokenizer, tmp_path / "vectors.txt", freeze=True)
    vocab, weight = tokenizer.get_vocab(), model.embeddings.weight
    assert weight[vocab["paris"]].tolist() == [1, 2, 3] and weight[vocab["Paris"]].tolist() == [1, 2, 3]
    assert weight[vocab["Oslo"]].tolist() == [7, 8, 9] and weight[vocab["is"]].tolist() == [4, 5, 6]
    assert torch.equal(weight[vocab["big"]], before[vocab["big"]])  # not in the file: kept
    assert torch.all(weight[0] == 0) and not weight.requires_grad
    assert (stats.exact, stats.lowercased, stats.file_words) == (2, 2, 4)
    assert stats.missing == tokenizer.vocab_size - 4 and 0 < stats.coverage < 1


def test_wrong_width_names_the_line(tmp_path):
    model, tokenizer = setup()
    (tmp_path / "vectors.txt").write_text("paris 1 2 3\nis 4 5\n")
    with pytest.raises(DataFormatError, match="embedding_size is 3") as error:
        load_word_vectors(model, tokenizer, tmp_path / "vectors.txt")
    assert str(error.value).startswith(f"{tmp_path / 'vectors.txt'}:2:")


def test_tabs_runs_of_spaces_and_a_bom_are_read(tmp_path):
    model, tokenizer = setup()
    (tmp_path / "vectors.txt").write_text("\ufeffParis\t1\t2\t3\nis  4 5 6 \r\n")
    stats = load_word_vectors(model, tokenizer, tmp_path / "vectors.txt")
    vocab, weight = tokenizer.get_vocab(), model.embeddings.weight
    assert weight[vocab["Paris"]].tolist() == [1, 2, 3] and weight[vocab["is"]].tolist() == [4, 5, 6]
    assert (stats.exact, stats.file_words) == (2, 2)


@pytest.mark.parametrize(
    "text, line, message",
    [
        *(
            (f"paris 1 2 3\nis 4 {bad} 6\n", 2, "'is' has a value that is not finite")
            for bad in ["nan", "inf", "1e999", "-1e39"]
        ),
        ("paris 1 2 3\nis 4 x 6\n", 2, "'is' has a value that is not a number: 'x'"),
        (b"paris 1 2 3\nis\xff 4 5 6\n", 2, "not valid UTF-8"),
        ("paris 1 2 3\nis\n", 2, "vector of 0 values for 'is'"),
        ("paris 1 2 3\nis 4 5 6\nparis 7 8 9\n", 3, "'paris' again, first on line 1"),
        ("4 5\nparis 1 2 3\n", 1, "header says 5 dimensions, the model's embedding_size is 3"),
        ("9 3\nparis 1 2 3\n", 1, "header says 9 words, the file has 1"),
        ("", 1, "no vectors found"),
        ("2 3\n\n", 1, "no vectors found"),
    ],
)
def test_bad_vector_files_name_the_line(tmp_path, text, line, message):
    model, tokenizer = setup()
    path = tmp_path / "vectors.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = model.embeddings.weight.detach().clone()
    with pytest.raises(DataFormatError, match=message) as error:
        load_word_vectors(model, tokenizer, path)
    assert str(error.value).startswith(f"{path}:{line}:")
    assert torch.equal(model.embeddings.weight, before)  # nothing copied from a bad file


def test_a_file_sharing_no_word_with_the_vocabulary_is_an_error(tmp_path):
    model, tokenizer = setup()
    (tmp_path / "vectors.txt").write_text("london 1 2 3\nrome 4 5 6\n")
    with pytest.raises(ValueError, match="none of the 2 words of .*vectors.txt is in the vocabulary"):
        load_word_vectors(model, tokenizer, tmp_path / "vectors.txt")
