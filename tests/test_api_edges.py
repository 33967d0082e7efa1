"""API edges: checkpoints given where another kind is expected."""

import pytest

import hf_rnn


@pytest.mark.parametrize("head", [hf_rnn.RnnForSequenceClassification, hf_rnn.RnnForTokenClassification])
def test_from_language_models_refuses_another_heads_checkpoint(tmp_path, head):
    """A classifier started from a character LM has the LM's config (char_level, unidirectional) but an encoder
    trained for its labels: as a language model it would load silently, its next-character head left random."""
    config = hf_rnn.RnnConfig(vocab_size=20, embedding_size=4, hidden_size=4, char_level=True, num_labels=2)
    head(config).save_pretrained(tmp_path / "classifier")
    hf_rnn.RnnForCausalLM(config).save_pretrained(tmp_path / "lm")
    path = str(tmp_path / "classifier")
    with pytest.raises(
        ValueError, match=f"forward_lm='{path}' is a checkpoint of {head.__name__}, not of RnnForCausalLM"
    ):
        hf_rnn.RnnForTokenClassification.from_language_models(path, vocab_size=9, num_labels=2)
    with pytest.raises(ValueError, match=f"backward_lm='{path}' is a checkpoint of {head.__name__}"):
        hf_rnn.RnnForTokenClassification.from_language_models(str(tmp_path / "lm"), path, vocab_size=9, num_labels=2)
    model = hf_rnn.RnnForTokenClassification.from_language_models(str(tmp_path / "lm"), vocab_size=9, num_labels=2)
    assert model.config.forward_lm.hidden_size == 4
