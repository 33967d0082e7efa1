"""PNG plots of a finished run: learning curves, a tagging confusion matrix, the CRF transition matrix.

Needs matplotlib (the `plots` extra: `pip install -e ".[plots]"` in a clone); it is imported only when a plot is drawn.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            f'hf_rnn.plots needs matplotlib (the plots extra: pip install -e ".[plots]" in a clone): {error}'
        ) from error

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(log_history: Sequence[dict], path: str | Path) -> Path:
    """Training loss per logging step and every `eval_*` metric per evaluation, from `trainer.state.log_history`."""
    plt = _pyplot()
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [entry for entry in log_history if any(key.startswith("eval_") for key in entry)]
    names = sorted(
        {
            key
            for entry in evals
            for key in entry
            if key.startswith("eval_") and not key.endswith(("runtime", "per_second", "preparation_time"))
        }
    )
    figure, axes = plt.subplots(1, 1 + len(names), figsize=(4 * (1 + len(names)), 3.2), squeeze=False)
    axes = axes[0]
    if train:
        axes[0].plot(*zip(*train), label="train loss")
    axes[0].set(xlabel="step", title="training loss")
    for axis, name in zip(axes[1:], names):
        points = [(entry["step"], entry[name]) for entry in evals if name in entry and "step" in entry]
        if points:
            axis.plot(*zip(*points), marker="o")
        axis.set(xlabel="step", title=name)
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion_matrix(
    gold: Sequence[int], predicted: Sequence[int], label_names: Sequence[str], path: str | Path
) -> Path:
    """Row-normalised confusion matrix (rows: gold tag, columns: predicted tag) with counts on the diagonal."""
    plt = _pyplot()
    size = len(label_names)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (np.asarray(gold), np.asarray(predicted)), 1)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1.2 + 0.45 * size, 1 + 0.45 * size))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(size), label_names, rotation=90)
    axis.set_yticks(range(size), label_names)
    axis.set(xlabel="predicted", ylabel="gold", title="confusion (row-normalised)")
    for i in range(size):
        axis.text(
            i,
            i,
            str(counts[i, i]),
            ha="center",
            va="center",
            fontsize=6,
            color="white" if rates[i, i] > 0.5 else "black",
        )
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return _save(figure, path)


def plot_transitions(crf, label_names: Sequence[str], path: str | Path) -> Path:
    """Heatmap of the CRF's transition scores (row: previous tag, column: next tag); forbidden moves left blank."""
    plt = _pyplot()
    scores = crf.transitions.detach().float().cpu().numpy().copy()
    scores[~crf.allowed_transitions.cpu().numpy()] = np.nan
    size = len(label_names)
    figure, axis = plt.subplots(figsize=(1.2 + 0.45 * size, 1 + 0.45 * size))
    limit = np.nanmax(np.abs(scores)) if np.isfinite(scores).any() else 1.0
    image = axis.imshow(scores, cmap="coolwarm", vmin=-limit, vmax=limit)
    axis.set_xticks(range(size), label_names, rotation=90)
    axis.set_yticks(range(size), label_names)
    axis.set(xlabel="next tag", ylabel="previous tag", title="CRF transitions")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    _pyplot().close(figure)
    return path
