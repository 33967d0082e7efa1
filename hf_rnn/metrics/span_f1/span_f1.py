"""Span (chunk) precision, recall and F1 for BIO/IOB1/BIOES/BILOU tag sequences, as conlleval and seqeval's default
mode score them: chunks as `hf_rnn.schemes.chunks` reads them (an `I-` that cannot continue the previous chunk opens
a new one; BILOU's `L-`/`U-` are read as `E-`/`S-`, which seqeval's default mode does not know).

A local `evaluate` module: `evaluate.load(<this folder>)` works offline.
"""

import datasets
import evaluate

from hf_rnn.schemes import chunks

_DESCRIPTION = "Entity/chunk-level precision, recall and F1 (conlleval rules), overall and per type."
_KWARGS = """
Args:
    predictions: list of tag sequences (lists of strings such as "B-PER", "I-PER", "O").
    references: list of gold tag sequences, each as long as its prediction.
Returns:
    overall_precision, overall_recall, overall_f1, overall_accuracy (token level), and for every type a dict
    with precision, recall, f1 and number (gold chunks).
"""


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class SpanF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references) -> dict:
        gold_chunks, predicted_chunks = set(), set()
        right = total = 0
        for index, (predicted, gold) in enumerate(zip(predictions, references)):
            if len(predicted) != len(gold):
                raise ValueError(f"sequence {index}: {len(predicted)} predicted tags for {len(gold)} gold tags")
            gold_chunks |= {(index, *chunk) for chunk in chunks(gold)}
            predicted_chunks |= {(index, *chunk) for chunk in chunks(predicted)}
            right += sum(p == g for p, g in zip(predicted, gold))
            total += len(gold)
        correct = gold_chunks & predicted_chunks
        results = {}
        for kind in sorted({chunk[1] for chunk in gold_chunks | predicted_chunks}):
            counts = [sum(chunk[1] == kind for chunk in group) for group in (correct, predicted_chunks, gold_chunks)]
            precision, recall, f1 = _prf(*counts)
            results[kind] = {"precision": precision, "recall": recall, "f1": f1, "number": counts[2]}
        precision, recall, f1 = _prf(len(correct), len(predicted_chunks), len(gold_chunks))
        results.update(
            overall_precision=precision,
            overall_recall=recall,
            overall_f1=f1,
            overall_accuracy=right / total if total else 0.0,
        )
        return results
