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
