"""Metrics as local `evaluate` modules shipped with hf_rnn (no network), and `compute_metrics` helpers for the
Trainer that score the model's own predictions (Viterbi paths with a CRF, through its max-marginal `logits`)."""

from importlib import resources

import evaluate
import numpy as np

from ..schemes import convert, label_scheme

MODULES = ("span_f1", "token_accuracy", "perplexity")


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """`evaluate.load` of one of hf_rnn's modules ("span_f1", "token_accuracy", "perplexity"), offline."""
    if name not in MODULES:
        raise ValueError(f"unknown metric {name!r}; hf_rnn ships {MODULES}")
    return evaluate.load(str(resources.files("hf_rnn") / "metrics" / name), **kwargs)


def predicted_tags(eval_prediction) -> np.ndarray:
    """(N, T) tags from an `EvalPrediction` of concatenated batches: the argmax of the logits, as run_ner.py takes it.

    For `RnnForTokenClassification` that is the model's answer in both heads: with a CRF its `logits` are max-marginal
    scores, whose argmax is the Viterbi path. (With extra outputs kept, the logits come first in a tuple.)
    """
    return _argmax(eval_prediction.predictions)


def _argmax(outputs) -> np.ndarray:
    if isinstance(outputs, tuple):
        outputs = outputs[0]
    return np.asarray(outputs).argmax(-1)


def tagged_rows(eval_prediction) -> list[tuple[np.ndarray, np.ndarray]]:
    """(predicted tags, gold ids) of every row, whether the Trainer concatenated the batches or, with
    `eval_do_concat_batches=False`, passed a list of them (each padded to its own width)."""
    predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    batches = zip(predictions, labels) if isinstance(predictions, list) else [(predictions, labels)]
    return [row for outputs, gold in batches for row in zip(_argmax(outputs), np.asarray(gold))]


class TaggingMetrics:
    """`compute_metrics` for taggers: token accuracy, plus span P/R/F1 (conlleval rules) for chunk labels.

    Positions labelled -100 (padding, later word pieces) are dropped before scoring; the batches may come concatenated
    or, with `eval_do_concat_batches=False`, one by one (`tagged_rows`). With `scheme`, the predicted and gold tags are
    converted to that scheme first: a model trained on converted labels (`run_tagging.py --tag_scheme`) is scored in
    the data's own scheme.
    """

    def __init__(self, label_names: list[str], entity_level: bool = False, scheme: str | None = None):
        self.label_names = list(label_names)
        self.entity_level = entity_level  # also {TYPE}_precision/_recall/_f1/_number, as run_ner.py's option
        self.scheme = scheme
        self.accuracy = load_metric("token_accuracy")
        self.spans = load_metric("span_f1") if label_scheme(self.label_names) else None

    def __call__(self, eval_prediction) -> dict[str, float]:
        names = np.asarray(self.label_names, dtype=object)
        rows = [(tags[gold != -100], gold[gold != -100]) for tags, gold in tagged_rows(eval_prediction)]
        predicted = [names[tags].tolist() for tags, _ in rows]
        gold = [names[ids].tolist() for _, ids in rows]
        if self.scheme is not None:
            predicted = [convert(tags, self.scheme) for tags in predicted]
            gold = [convert(tags, self.scheme) for tags in gold]
        ids = {name: index for index, name in enumerate(sorted({tag for tags in predicted + gold for tag in tags}))}
        results = self.accuracy.compute(
            predictions=[ids[tag] for tags in predicted for tag in tags],
            references=[ids[tag] for tags in gold for tag in tags],
        )
        if self.spans is not None:
            spans = self.spans.compute(predictions=predicted, references=gold)
            results.update(
                precision=spans["overall_precision"], recall=spans["overall_recall"], f1=spans["overall_f1"]
            )
            if self.entity_level:
                for kind, scores in spans.items():
                    if isinstance(scores, dict):
                        results.update({f"{kind}_{name}": value for name, value in scores.items()})
        return results
