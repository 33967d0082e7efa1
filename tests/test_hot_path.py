"""The hot path (issue 22): a training or evaluation step reads the device on the host at most once (every value check
fused into one read), and compiles whole under `torch.compile(fullgraph=True)`, matching eager."""

import copy

import pytest
import torch
from conftest import CELLS, tiny_config

import hf_rnn
import hf_rnn.crf as hf_crf
from hf_rnn.masking import MaskCompaction
from hf_rnn.profiling import count_host_reads

HEADS = ("softmax", "crf", "semicrf")
BIO = {"id2label": {0: "O", 1: "B-X", 2: "I-X"}, "label2id": {"O": 0, "B-X": 1, "I-X": 2}}


def tagger(head: str, cell: str = "lstm") -> hf_rnn.RnnForTokenClassification:
    extra = {**BIO, "crf_constraints": "BIO"} if head == "crf" else BIO if head == "semicrf" else {}
    config = tiny_config(head_type=head, cell_type=cell, bidirectional=True, dropout=0.0, **extra)
    return hf_rnn.RnnForTokenClassification(config)


def tagger_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ragged rows (left padding, right padding, a full row), BIO-valid labels with an unlabelled position."""
    ids = torch.randint(1, 37, (3, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    labels = torch.tensor([[-100, -100, 1, 2, 0, 1], [0, 1, -100, 2, -100, -100], [1, 2, 2, 0, 0, 1]])
    return ids, mask, labels


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head", HEADS)
def test_a_tagger_step_reads_the_device_once(head, cell):
    model = tagger(head, cell)
    ids, mask, labels = tagger_batch()
    with count_host_reads() as training:
        model(ids, attention_mask=mask, labels=labels).loss.backward()
    model.eval()
    with count_host_reads() as evaluation, torch.no_grad():
        output = model(ids, attention_mask=mask, labels=labels)
    assert (len(training), len(evaluation)) == (1, 1), (training, evaluation)
    assert output.predictions is not None and (head == "softmax" or output.logits is not None)


@pytest.mark.parametrize("cell", CELLS)
def test_an_lm_and_a_classifier_step_read_the_device_once(cell):
    config = tiny_config(cell_type=cell)
    ids = torch.randint(1, 37, (3, 6))
    lm, classifier = hf_rnn.RnnForCausalLM(config), hf_rnn.RnnForSequenceClassification(config)
    for mask in (None, torch.ones_like(ids)):  # a truncated-BPTT window: the state is returned (use_cache)
        with count_host_reads() as calls:
            lm(ids, attention_mask=mask, labels=ids, use_cache=True).loss.backward()
        assert len(calls) == 1, calls
    with count_host_reads() as calls:
        classifier(ids, attention_mask=tagger_batch()[1], labels=torch.tensor([0, 2, 1])).loss.backward()
    assert len(calls) == 1, calls


def test_the_first_bad_input_is_named_after_one_read():
    """Every check is read together, and the first that fired (in the order of the forward) is the one raised."""
    model = tagger("crf")
    ids, mask, labels = tagger_batch()
    ids[1, 3], labels[2, 4] = 40, 7
    with count_host_reads() as calls, pytest.raises(ValueError, match=r"input_ids\[1, 3\] = 40 is not a token id"):
        model(ids, attention_mask=mask, labels=labels)
    assert calls[0] == "tolist" and calls.count("tolist") >= 1  # the fused read; the message's own reads follow it
    ids[1, 3] = 1
    with pytest.raises(ValueError, match=r"labels\[2, 4\] = 7 is not -100"):
        model(ids, attention_mask=mask, labels=labels)


def test_a_crf_underflow_found_at_the_read_gives_the_exact_loss(monkeypatch):
    """The scaled recursion's underflow flag is read with the checks; when it holds, the tagger's loss (and its
    gradient) come from the exact log-space recursion, equal to the fast path's where both are exact."""
    model = tagger("crf")
    ids, mask, labels = tagger_batch()
    expected = model(ids, attention_mask=mask, labels=labels)
    (expected_grad,) = torch.autograd.grad(expected.loss, [model.crf.transitions])
    chain = hf_crf._chain
    monkeypatch.setattr(hf_crf, "_chain", lambda *args: (*chain(*args)[:2], torch.tensor(True)))
    with count_host_reads() as calls:
        output = model(ids, attention_mask=mask, labels=labels)
    (grad,) = torch.autograd.grad(output.loss, [model.crf.transitions])
    torch.testing.assert_close(output.loss, expected.loss)
    torch.testing.assert_close(grad, expected_grad)
    assert len(calls) == 2  # the checks, then the exact route's own checks


def test_the_crf_evaluation_shares_viterbi_with_the_max_marginals():
    """`predict` (one Viterbi forward, one backward) gives what `decode` and `max_marginals(path)` give apart."""
    model = tagger("crf")
    emissions = torch.randn(3, 6, 3) * 3
    mask = tagger_batch()[1].bool()
    tags, logits = model.head.predict(emissions, MaskCompaction(mask))
    decoded = model.crf.decode(emissions, mask)
    assert torch.equal(tags, decoded)
    torch.testing.assert_close(logits, model.crf.max_marginals(emissions, mask, decoded))
    assert torch.equal(logits.argmax(-1)[mask], tags[mask])


@pytest.mark.slow
@pytest.mark.parametrize(("head", "cell"), [("softmax", "minlstm"), ("crf", "lstm"), ("semicrf", "mingru")])
@torch._dynamo.config.patch(allow_rnn=True)  # trace torch's own RNN modules too
def test_a_tagger_step_compiles_whole_and_matches_eager(head, cell):
    model = tagger(head, cell)
    ids, mask, labels = tagger_batch()

    def train_step(ids, mask, labels):
        return model(ids, attention_mask=mask, labels=labels).loss

    def eval_step(ids, mask, labels):
        output = model(ids, attention_mask=mask, labels=labels, return_predictions=True)
        return output.loss, output.predictions, output.logits

    expected = train_step(ids, mask, labels)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    loss = torch.compile(train_step, fullgraph=True)(ids, mask, labels)  # fullgraph: a graph break fails
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-3, atol=1e-5)
    model.eval()
    with torch.no_grad():
        expected = eval_step(ids, mask, labels)
        found = torch.compile(eval_step, fullgraph=True)(ids, mask, labels)
    for value, expected_value in zip(found, expected):
        torch.testing.assert_close(value, expected_value, rtol=1e-4, atol=1e-5)


def test_value_checks_can_be_left_to_the_first_forwards():
    """`set_value_checks(n)`: the next n forwards check their inputs, the later ones read nothing and trust them (a
    bad id then meets torch's own error, as documented); `True` restores the checks."""
    model, (ids, mask, labels) = tagger("softmax"), tagger_batch()
    bad = ids.clone()
    bad[0, 4] = 99
    try:
        hf_rnn.set_value_checks(1)
        with pytest.raises(ValueError, match=r"input_ids\[0, 4\] = 99 is not a token id"):
            model(bad, attention_mask=mask, labels=labels)
        with count_host_reads() as calls:
            model(ids, attention_mask=mask, labels=labels).loss.backward()
        assert calls == []
        with pytest.raises(IndexError, match="index out of range"):
            model(bad, attention_mask=mask, labels=labels)
    finally:
        hf_rnn.set_value_checks(True)
    with pytest.raises(ValueError, match=r"input_ids\[0, 4\] = 99"):
        model(bad, attention_mask=mask, labels=labels)
    with pytest.raises(ValueError, match="set_value_checks takes True, False or a number"):
        hf_rnn.set_value_checks(-1)


def test_a_semicrf_scores_given_segments_as_its_path_score_by_hand():
    """`SemiMarkovCRF.score` (segments as tuples) equals the sum of its parts: segment scores, length scores,
    transitions, start and end (it built bool starts as integers, which `torch.where` refused)."""
    semicrf = tagger("semicrf").semicrf
    for parameter in semicrf.parameters():
        torch.nn.init.normal_(parameter)
    scores = torch.randn(2, 4, semicrf.max_segment_length, semicrf.num_labels)
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]]).bool()
    segments = [[(0, 1, 1), (2, 2, 0), (3, 3, 0)], [(0, 0, 1), (1, 2, 1)]]
    expected = []
    for row, found in enumerate(segments):
        positions = mask[row].nonzero().squeeze(1).tolist()
        total = semicrf.start_transitions[found[0][2]] + semicrf.end_transitions[found[-1][2]]
        for index, (first, last, label) in enumerate(found):
            length = last - first
            total = total + scores[row, positions[last], length, label] + semicrf.length_scores[length, label]
            if index:
                total = total + semicrf.transitions[found[index - 1][2], label]
        expected.append(total)
    torch.testing.assert_close(semicrf.score(scores, mask, segments), torch.stack(expected))


@pytest.mark.parametrize("head", HEADS[1:])
def test_uint8_labels_train_a_sequence_head_as_int64_labels_do(head):
    model = tagger(head)
    ids, mask, _ = tagger_batch()
    labels = torch.tensor([[0, 0, 1, 2, 0, 1], [0, 1, 2, 2, 0, 0], [1, 2, 2, 0, 0, 1]])  # BIO-valid on every row
    expected = model(ids, attention_mask=mask, labels=labels)
    found = model(ids, attention_mask=mask, labels=labels.to(torch.uint8))
    torch.testing.assert_close(found.loss, expected.loss)


@pytest.mark.parametrize("head", HEADS)
def test_a_zero_length_batch_gives_loss_0_and_empty_predictions(head):
    """README: a zero-length sequence gets empty outputs and predictions, loss 0 (the semi-CRF indexed position 0)."""
    model = tagger(head)
    ids = torch.zeros(2, 0, dtype=torch.long)
    for training in (True, False):
        model.train(training)
        output = model(ids, labels=ids, return_predictions=True)
        assert float(output.loss) == 0.0 and output.predictions.shape == (2, 0)


def test_float64_emissions_in_a_float32_crf_score_as_in_a_float64_crf():
    """Emissions in float64 (a user's own scores) with float32 transitions: the fast recursion's matrix products
    mixed the two dtypes (torch's "expected m1 and m2 to have the same dtype")."""
    crf = tagger("crf").crf
    reference = copy.deepcopy(crf).double()
    emissions = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = tagger_batch()[1][:, :5].bool()
    tags = reference.decode(emissions, mask).clamp(min=0)
    for length in (1, 5):
        found = crf.log_likelihood(emissions[:, :length], tags[:, :length], mask[:, :length])
        expected = reference.log_likelihood(emissions[:, :length], tags[:, :length], mask[:, :length])
        torch.testing.assert_close(found, expected.to(found.dtype))
        torch.testing.assert_close(
            crf.marginals(emissions[:, :length], mask[:, :length]),
            reference.marginals(emissions[:, :length], mask[:, :length]).to(found.dtype),
        )
        found.sum().backward()


def test_a_sequence_head_refuses_a_trainer_step_without_labels_even_with_no_count():
    """The Trainer passes `num_items_in_batch` (possibly None) when it calls the model: without labels in training a
    CRF tagger refuses either way, rather than return no loss for the Trainer to replace by a cross-entropy."""
    model, (ids, mask, _) = tagger("crf"), tagger_batch()
    for count in (None, torch.tensor(5)):
        with pytest.raises(ValueError, match="took the labels away"):
            model(ids, attention_mask=mask, num_items_in_batch=count)
