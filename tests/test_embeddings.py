import pytest
import torch

import hf_rnn
from hf_rnn.data import DataFormatError
from hf_rnn.embeddings import load_word_vectors
from hf_rnn.tokenization import build_word_tokenizer


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
