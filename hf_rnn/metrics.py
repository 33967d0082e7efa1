"""Metrics for the Trainer's `compute_metrics`, reading the model's own predictions (Viterbi with a CRF)."""

import numpy as np


def predicted_tags(eval_prediction) -> np.ndarray:
    """(N, T) tags from an `EvalPrediction`.

    `RnnForTokenClassification` returns `(logits, predictions)` in eval mode; `predictions` is the Viterbi path when
    the model has a CRF, so it is used whenever present. A bare logits array (another model) falls back to argmax.
    """
    outputs = eval_prediction.predictions
    if isinstance(outputs, (tuple, list)):
        return np.asarray(outputs[1])
    return np.asarray(outputs).argmax(-1)


def token_accuracy(eval_prediction) -> dict[str, float]:
    """Share of labelled tokens (label != -100) whose predicted tag is right."""
    predictions, labels = predicted_tags(eval_prediction), np.asarray(eval_prediction.label_ids)
    scored = labels != -100
    return {"accuracy": float((predictions[scored] == labels[scored]).mean())}
