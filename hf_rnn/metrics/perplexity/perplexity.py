"""Perplexity from summed negative log-likelihoods: exp(sum of NLL / number of tokens).

Takes per-batch (or per-sequence) sums so that it can be fed incrementally with `add_batch` and combined across
processes. A local `evaluate` module: `evaluate.load(<this folder>)` works offline.
"""

import math

import datasets
import evaluate


class Perplexity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Word-level perplexity from summed negative log-likelihoods (natural log).",
            citation="",
            inputs_description="nll: summed negative log-likelihoods; tokens: how many tokens each sum covers.",
            features=datasets.Features({"nll": datasets.Value("float64"), "tokens": datasets.Value("int64")}),
        )

    def _compute(self, nll, tokens) -> dict:
        count = sum(tokens)
        if count == 0:
            raise ValueError("perplexity over zero tokens")
        mean = sum(nll) / count
        return {"perplexity": math.exp(mean), "nll_per_token": mean}
