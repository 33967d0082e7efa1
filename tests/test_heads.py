"""The tagger's output layers behind one interface: checkpoints saved before it answer as they did, and both heads
score, decode and give probabilities as their definitions say."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForTokenClassification, AutoTokenizer

import hf_rnn
from hf_rnn.heads import CrfHead, SoftmaxHead
from hf_rnn.masking import MaskCompaction

FIXTURES = Path(__file__).parent / "fixtures" / "pre_seams"
BIO = dict(id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})


@pytest.mark.parametrize("name", ["softmax", "crf_bio_chars"])
def test_checkpoints_saved_before_the_head_seam_answer_as_they_did(name):
    """Saved by main 030a4ee (fixtures/pre_seams/make_fixtures.py): the same weights load, with the same outputs."""
    folder = FIXTURES / name
    expected = json.loads((folder / "expected.json").read_text())
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert isinstance(model, hf_rnn.RnnForTokenClassification)
    assert (model.crf is not None) == (name != "softmax")
    batch = tokenizer(expected["sentences"], is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**batch, labels=torch.tensor(expected["labels"]))
        probabilities = model.tag_probabilities(output.emissions, batch["attention_mask"].bool())
    assert output.predictions.tolist() == expected["predictions"]
    for field, actual in (
        ("logits", output.logits),
        ("emissions", output.emissions),
        ("probabilities", probabilities),
    ):
        torch.testing.assert_close(actual, torch.tensor(expected[field]), rtol=1e-6, atol=1e-6, msg=field)
    assert output.loss.item() == pytest.approx(expected["loss"], rel=1e-6)


def test_the_config_picks_the_head_and_the_crf_keeps_its_weight_names():
    softmax = hf_rnn.RnnForTokenClassification(tiny_config(**BIO))
    crf = hf_rnn.RnnForTokenClassification(tiny_config(use_crf=True, crf_constraints="BIO", **BIO))
    assert isinstance(softmax.head, SoftmaxHead) and softmax.crf is None and softmax.config.head_type == "softmax"
    assert isinstance(crf.head, CrfHead) and crf.head.crf is crf.crf and isinstance(crf.crf, hf_rnn.LinearChainCRF)
    assert crf.config.head_type == "crf" and crf.config.use_crf
    assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions"} <= set(crf.state_dict())
    assert {"classifier.weight", "classifier.bias"} <= set(crf.state_dict()) & set(softmax.state_dict())
    assert not any(key.startswith("crf.") for key in softmax.state_dict())
    assert hf_rnn.RnnConfig(head_type="crf", id2label=BIO["id2label"]).use_crf


def test_a_use_crf_set_after_construction_is_refused_not_ignored():
    config = tiny_config(**BIO)
    config.use_crf = True  # the old way to ask for a CRF; head_type decides now
    with pytest.raises(ValueError, match="use_crf=True disagrees with head_type='softmax'"):
        hf_rnn.RnnForTokenClassification(config)


@pytest.mark.parametrize("head_type", ["crf", "semicrf"])
def test_loss_and_decoding_use_the_same_chain_for_a_word_split_into_pieces(head_type):
    """A word's second piece (labelled -100) leaves the chain of the loss and of decoding alike; without labels,
    `word_mask` gives the same chain."""
    torch.manual_seed(0)
    model = hf_rnn.RnnForTokenClassification(tiny_config(head_type=head_type, **BIO)).eval()
    ids = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 10, 11]])
    mask = (ids != 0).long()
    labels = torch.tensor([[1, -100, 2, 0, -100], [0, 1, -100, 2, 0]])  # a word in two pieces per row
    chain = (labels != -100) & mask.bool()
    with torch.no_grad():
        output = model(ids, attention_mask=mask, labels=labels, return_predictions=True)
        by_words = model(ids, attention_mask=mask, word_mask=chain)
    expected = model.decode(output.emissions, chain)
    assert torch.equal(output.predictions, expected) and (output.predictions[~chain] == -100).all()
    assert torch.equal(by_words.predictions, expected)
    torch.testing.assert_close(by_words.logits, output.logits)
    if head_type == "crf":  # the loss is the NLL of the labels over that chain
        nll = -model.crf.log_likelihood(output.emissions, labels.clamp(min=0), chain).sum() / chain.sum()
        assert output.loss.item() == pytest.approx(nll.item(), rel=1e-6)


@pytest.mark.parametrize(
    "word_mask, message",
    [
        ([[1, 0, 1, 2]], r"word_mask\[0, 3\] = 2 is not 0 or 1"),
        ([[1.0, 0.5, 1.0, 1.0]], r"word_mask\[0, 1\] = 0.5 is not 0 or 1"),
        ([[float("nan"), 0.0, 1.0, 1.0]], r"word_mask\[0, 0\] = nan is not 0 or 1"),
        ([[1, 0, 1]], r"word_mask must be of shape \(1, 4\), got \(1, 3\)"),
    ],
)
def test_a_word_mask_that_is_not_0_or_1_is_refused_as_the_attention_mask_is(word_mask, message):
    model = hf_rnn.RnnForTokenClassification(tiny_config(use_crf=True, **BIO)).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.tensor([[3, 4, 5, 6]]), word_mask=torch.tensor(word_mask))
    bools = model(torch.tensor([[3, 4, 5, 6]]), word_mask=torch.tensor([[True, False, True, True]]))
    assert bools.predictions[0, 1] == -100 and (bools.predictions[0, [0, 2, 3]] != -100).all()


@pytest.mark.parametrize("use_crf", [False, True])
def test_padding_is_never_scored_even_when_labelled(use_crf):
    """Both heads score the labelled real tokens only: a label under the padding changes nothing."""
    model = hf_rnn.RnnForTokenClassification(tiny_config(use_crf=use_crf, **BIO)).eval()
    ids, mask = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]]), torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    clean = torch.tensor([[1, 2, 0, -100], [0, 1, -100, -100]])
    dirty = torch.where(mask.bool(), clean, 2)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask, labels=clean).loss
        assert model(ids, attention_mask=mask, labels=dirty).loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_softmax_head_against_its_definition():
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([[1, 2, 0, -100], [0, -100, -100, -100]])
    head = SoftmaxHead(tiny_config())
    log_p = emissions.log_softmax(-1)
    expected = -(log_p[0, 0, 1] + log_p[0, 1, 2] + log_p[0, 2, 0] + log_p[1, 0, 0]) / 4
    torch.testing.assert_close(head.loss(emissions, labels, MaskCompaction(labels != -100), 4), expected)
    assert head.decode(emissions, MaskCompaction(mask)).tolist() == [
        [int(emissions[row, t].argmax()) if mask[row, t] else -100 for t in range(4)] for row in range(2)
    ]
    probabilities = head.probabilities(emissions, MaskCompaction(mask))
    torch.testing.assert_close(probabilities.sum(-1), mask.float())
    assert head.logits(emissions, MaskCompaction(mask), None) is emissions
