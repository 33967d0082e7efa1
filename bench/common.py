"""Timing helpers shared by the benchmarks: warm-up, device sync, interleaved repeats, medians."""

import platform
import statistics
import time
from collections.abc import Callable

import torch


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
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in functions:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for fn, bucket in zip(functions, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            bucket.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(bucket) for bucket in times]


def alternate_runs(runs: dict[str, Callable[[], object]], device: torch.device, rounds: int) -> tuple[dict, dict]:
    """Median wall time in seconds of each whole run, and each run's last return value.

    The runs alternate round by round, so a slow spell of a shared machine hits all of them alike.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            results[name] = run()
            sync()
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
