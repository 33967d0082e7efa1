"""Span F1 equals seqeval's (random sequences and the real dev sets), accuracy and perplexity from scratch."""

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import EvalPrediction

from hf_rnn.data import read_conll
from hf_rnn.metrics import TaggingMetrics, load_metric

seqeval_metrics = pytest.importorskip("seqeval.metrics")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-PER", "S-LOC"]


def assert_like_seqeval(predictions, references):
    ours = load_metric("span_f1").compute(predictions=predictions, references=references)
    report = seqeval_metrics.classification_report(references, predictions, output_dict=True, zero_division=0)
    assert ours["overall_precision"] == pytest.approx(
        seqeval_metrics.precision_score(references, predictions, zero_division=0)
    )
    assert ours["overall_recall"] == pytest.approx(
        seqeval_metrics.recall_score(references, predictions, zero_division=0)
    )
    assert ours["overall_f1"] == pytest.approx(seqeval_metrics.f1_score(references, predictions, zero_division=0))
    for kind, scores in report.items():
        if kind.endswith("avg"):
            continue
        assert ours[kind]["f1"] == pytest.approx(scores["f1-score"]) and ours[kind]["number"] == scores["support"]


@settings(max_examples=60, deadline=None, derandomize=True)  # the same cases in CI
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from(TAGS), st.sampled_from(TAGS)), min_size=1, max_size=8),
        min_size=1,
        max_size=4,
    )
)
def test_span_f1_equals_seqeval_on_random_sequences(pairs):
    predictions = [[p for p, _ in row] for row in pairs]
    references = [[g for _, g in row] for row in pairs]
    if not any(tag != "O" for row in references for tag in row):
        references[0][0] = "B-PER"
    assert_like_seqeval(predictions, references)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (real corpora, not shipped) is absent")
@pytest.mark.parametrize("path", ["wnut17/emerging.dev.conll", "conll2000/train.txt"])
def test_span_f1_equals_seqeval_on_real_data(path):
    gold = [s.tags for s in read_conll(SHARED / path)][:3000]
    rng = np.random.default_rng(0)
    names = sorted({t for tags in gold for t in tags})
    # a noisy "prediction": a quarter of the tags replaced at random (creates broken I- runs too)
    predicted = [[names[rng.integers(len(names))] if rng.random() < 0.25 else t for t in tags] for tags in gold]
    assert_like_seqeval(predicted, gold)


def test_tagging_metrics_read_the_argmax_of_the_logits_and_skip_ignored_positions():
    """The model's `logits` argmax is its decision (max-marginals with a CRF), as run_ner.py reads it."""
    names = ["O", "B-X", "I-X"]
    labels = np.array([[1, 2, 0, -100], [0, 1, -100, -100]])
    decision = np.array([[1, 2, 0, 0], [0, 2, 0, 0]])  # the model's (Viterbi) tags
    logits = np.eye(3)[decision] * 5.0 - 2.0
    for predictions in (logits, (logits, decision)):  # a bare array, or logits first in a tuple
        results = TaggingMetrics(names)(EvalPrediction(predictions=predictions, label_ids=labels))
        assert results["accuracy"] == pytest.approx(4 / 5)
        # gold spans: (0, X, 0-1), (1, X, 1); predicted: (0, X, 0-1), (1, X, 1) via a lone I-X -> both right
        assert results["f1"] == pytest.approx(1.0)
    pos = TaggingMetrics(["NOUN", "VERB"])(EvalPrediction(predictions=logits[..., :2], label_ids=labels.clip(-100, 1)))
    assert "f1" not in pos


def test_perplexity_from_summed_nll():
    metric = load_metric("perplexity")
    metric.add_batch(nll=[10.0, 5.0], tokens=[4, 2])
    metric.add_batch(nll=[3.0], tokens=[3])
    result = metric.compute()
    assert result["perplexity"] == pytest.approx(math.exp(18.0 / 9))
    with pytest.raises(ValueError, match="zero tokens"):
        load_metric("perplexity").compute(nll=[1.0], tokens=[0])
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("bleu")


def test_tagging_metrics_per_entity_type_as_run_ner_returns_them():
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    labels = np.array([[1, 2, 0, 3], [3, 0, 1, -100]])
    decision = np.array([[1, 2, 0, 0], [3, 0, 1, 0]])  # PER 2/2 right; LOC: one of two found
    results = TaggingMetrics(names, entity_level=True)(
        EvalPrediction(predictions=np.eye(4)[decision], label_ids=labels)
    )
    assert results["PER_f1"] == 1.0 and results["PER_number"] == 2
    assert results["LOC_precision"] == 1.0 and results["LOC_recall"] == 0.5 and results["LOC_number"] == 2
    assert "PER_f1" not in TaggingMetrics(names)(EvalPrediction(predictions=np.eye(4)[decision], label_ids=labels))


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_tagging_metrics_score_batches_passed_one_by_one_as_concatenated(tmp_path, head):
    """`eval_do_concat_batches=False` hands `compute_metrics` a list of batches, each padded to its own width."""
    import torch
    from trainer_run import _dataset, _tokenizer
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    import hf_rnn

    torch.manual_seed(0)
    labels = {"id2label": {0: "O", 1: "B-X", 2: "I-X"}, "label2id": {"O": 0, "B-X": 1, "I-X": 2}}
    crf = {"use_crf": True, "crf_constraints": "BIO"} if head == "crf" else {}
    config = hf_rnn.RnnConfig(vocab_size=37, embedding_size=8, hidden_size=8, **labels, **crf)
    model = hf_rnn.RnnForTokenClassification(config)
    results = {}
    for concat in (True, False):
        args = TrainingArguments(
            output_dir=str(tmp_path), per_device_eval_batch_size=5, use_cpu=True, report_to="none",
            eval_do_concat_batches=concat,
        )  # fmt: skip
        trainer = Trainer(
            model=model,
            args=args,
            eval_dataset=_dataset(head),
            data_collator=DataCollatorForTokenClassification(_tokenizer()),
            compute_metrics=TaggingMetrics(["O", "B-X", "I-X"]),
        )
        results[concat] = {k: v for k, v in trainer.evaluate().items() if k in ("eval_accuracy", "eval_f1")}
    assert results[False] == results[True] and len(results[True]) == 2
