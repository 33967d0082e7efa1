"""Helpers shared by the benchmarks: the `--device` option, device sync, interleaved repeats, medians, and the goal
lines that `bench/run_all.py` collects into its table."""

import argparse
import atexit
import platform
import statistics
import time
from collections.abc import Callable

import torch

GOAL_MARK = "goal row: "  # prefix of the lines run_all.py collects; the rest is one Markdown table row


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="cpu",
        type=chosen_device,
        help="cpu (the default) or cuda[:N]: models and data move there and timers are read after a CUDA sync",
    )


def chosen_device(name: str) -> torch.device:
    """`--device`'s value as a device, refused with a clear message where this torch cannot run on it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{name!r} is not a device: pass cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{name!r}: the benchmarks run on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{name!r}: torch {torch.__version__} sees no CUDA device (a CPU-only build, or no GPU visible); "
            "run with --device cpu"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer read next measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def goal_row(bench: str, figure: str, ratio: float, goal: str = "", met: bool | None = None, unit: str = "x") -> None:
    """Keep one row of run_all.py's summary, printed below the benchmark's own table when it exits: `ratio` is
    hf_rnn's figure against its peer (a count with `unit=""`), `goal` the README's."""
    verdict = "" if met is None else ("yes" if met else "**no**")
    if not _GOAL_ROWS:
        atexit.register(lambda: print("", *(GOAL_MARK + row for row in _GOAL_ROWS), sep="\n", flush=True))
    figure_text = f"{ratio:.2f}x" if unit == "x" else f"{ratio:g}{unit}"
    _GOAL_ROWS.append(f"| {bench} | {figure} | {figure_text} | {goal} | {verdict} |")


_GOAL_ROWS: list[str] = []


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def compare_ms(
    functions: list[Callable[[], object]], device: torch.device, repeats: int = 20, warmup: int = 3
) -> list[float]:
    """Median wall time of each function in milliseconds.

    The functions run round-robin (one call of each per round), so a slow spell of a shared machine hits all of them
    alike and their ratios stay meaningful.
    """
    for fn in functions:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for fn, bucket in zip(functions, times):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            bucket.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(bucket) for bucket in times]


def alternate_runs(runs: dict[str, Callable[[], object]], device: torch.device, rounds: int) -> tuple[dict, dict]:
    """Median wall time in seconds of each whole run, and each run's last return value.

    The runs alternate round by round, so a slow spell of a shared machine hits all of them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            results[name] = run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, results


def quiet_training_args(device: torch.device, output_dir: str, **overrides):
    """`TrainingArguments` for a timed one-epoch Trainer run: data in order, constant lr, no saving, logging or
    progress bar; `overrides` set the rest."""
    from transformers import TrainingArguments

    settings = dict(
        output_dir=output_dir,
        num_train_epochs=1,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        train_sampling_strategy="sequential",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        use_cpu=device.type == "cpu",
        dataloader_pin_memory=False,
    )
    return TrainingArguments(**{**settings, **overrides})
