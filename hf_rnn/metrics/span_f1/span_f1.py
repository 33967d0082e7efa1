"""Span (chunk) precision, recall and F1 for BIO/IOB1/BIOES tag sequences, as conlleval and seqeval's default mode
score them: a chunk is a maximal run of one type, an `I-` that cannot continue the previous chunk opens a new one.
BILOU's `L-`/`U-` are read as `E-`/`S-` (seqeval's default mode does not know them and treats them as inside tags).

A local `evaluate` module: `evaluate.load(<this folder>)` works offline.
"""

import datasets
import evaluate

_DESCRIPTION = "Entity/chunk-level precision, recall and F1 (conlleval rules), overall and per type."
_KWARGS = """
Args:
    predictions: list of tag sequences (lists of strings such as "B-PER", "I-PER", "O").
    references: list of gold tag sequences, each as long as its prediction.
Returns:
    overall_precision, overall_recall, overall_f1, overall_accuracy (token level), and for every type a dict
    with precision, recall, f1 and number (gold chunks).
"""


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a bare 'PER' is read as inside ('I', 'PER')."""
    if tag in ("O", ""):
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in ("B", "I", "E", "S", "L", "U"):
        return {"L": "E", "U": "S"}.get(prefix, prefix), kind
    return "I", tag


def chunks(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first, last) of every chunk in one sequence.

    A chunk ends after an E-/S- tag, before a B-/S-/O tag, or where the type changes; any other tag opens a chunk
    when none is open (so an I- after O starts one, as in conlleval).
    """
    found, start, current, previous = set(), 0, "", "O"
    for position, tag in enumerate([*tags, "O"]):
        prefix, kind = _split(tag)
        if current and (previous in ("E", "S") or prefix in ("B", "S", "O") or kind != current):
            found.add((current, start, position - 1))
            current = ""
        if prefix != "O" and not current:
            start, current = position, kind
        previous = prefix
    return found


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
