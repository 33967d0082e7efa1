"""Token accuracy over flattened tag ids. A local `evaluate` module: `evaluate.load(<this folder>)` works offline."""

import datasets
import evaluate


class TokenAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Share of tokens whose predicted tag equals the gold tag.",
            citation="",
            inputs_description="predictions, references: equal-length lists of tag ids (padding already removed).",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references) -> dict:
        if not references:
            return {"accuracy": 0.0}
        return {"accuracy": sum(p == r for p, r in zip(predictions, references)) / len(references)}
