"""What the example scripts (`examples/run_*.py`) do before they train: parse their flags with defaults that train an
RNN from scratch, keep torch to one CPU thread unless told otherwise, and catch a launch that does not start the
processes asked for.

`TrainingArguments`' defaults are meant for fine-tuning a pretrained transformer: at lr 5e-5 a tagger trained from
scratch is at 25-35 % accuracy after 3 epochs of the bundled sample, and a language model stays at a perplexity close
to its vocabulary size; with logging every 500 steps a short run logs nothing to plot.
"""

import argparse
import logging
import os
from collections.abc import Callable, Mapping

import torch
from transformers import HfArgumentParser, TrainingArguments

logger = logging.getLogger(__name__)

# AdamW at 2e-3 (the README's tagging runs), and about 50 logged losses per run whatever its length (a float below 1 is
# a share of the total steps). Length-grouped batches are faster but not a default: with few sentences, batches of
# one length in a row made the bundled sample's loss jump from 1.6 to 3.9, and its dev loss ended 3x higher.
TRAINING_DEFAULTS = {"learning_rate": 2e-3, "logging_steps": 0.02}

CPU_PROCESSES = (
    "On CPUs, N processes train together with\n"
    "    accelerate launch --multi_gpu --num_processes N --num_machines 1 --mixed_precision no --dynamo_backend no"
    " {script} ... --use_cpu true\n"
    "or\n"
    "    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N {script} ... --use_cpu true"
)

Defaults = Mapping[str, object] | Callable[[argparse.Namespace], Mapping[str, object]]


def parse_args(parser: HfArgumentParser, defaults: Defaults, args: list[str] | None = None) -> tuple:
    """`parser.parse_args_into_dataclasses(args)` with the script's `defaults` in place of the dataclasses' own (a
    flag given on the command line still wins). `defaults` may be a function of a first parse, for defaults that
    depend on another flag. Then sets the CPU threads (`set_threads`) and checks the launch (`check_processes`);
    a launch whose processes would each train alone is a usage error."""
    if callable(defaults):
        defaults = defaults(parser.parse_known_args(args)[0])
    parser.set_defaults(**defaults)
    parsed = parser.parse_args_into_dataclasses(args)
    set_threads()
    training_args = next(arguments for arguments in parsed if isinstance(arguments, TrainingArguments))
    try:
        check_processes(training_args.world_size, script=parser.prog)
    except ValueError as error:
        parser.error(str(error))
    return parsed


def set_threads(environ: Mapping[str, str] = os.environ) -> None:
    """One intra-op thread, unless OMP_NUM_THREADS sets the number.

    torch takes one thread per core. These models are small enough that a second thread gains little, and where the
    cores are shared with other work, threads that wait for each other made training 13-45x slower (2 threads on
    2 busy cores: 200 s against 15 s for the bundled tagging sample). torchrun sets OMP_NUM_THREADS=1 itself.
    """
    if "OMP_NUM_THREADS" not in environ:
        torch.set_num_threads(1)
        logger.info("torch uses 1 CPU thread; set OMP_NUM_THREADS=N for N")


def check_processes(world_size: int, environ: Mapping[str, str] = os.environ, script: str = "SCRIPT") -> None:
    """Refuse a launch whose processes each train alone; warn when accelerate started one process instead of several.

    torchrun or `accelerate launch --multi_gpu` on a machine without GPUs start N processes (WORLD_SIZE=N), and
    without `--use_cpu true` each one trains the whole model alone, all writing the same output_dir.
    `accelerate launch --cpu --num_processes N` (or without a multi-process config) starts the script once and exits
    0: it sets MASTER_ADDR for the processes it would start, but no WORLD_SIZE.
    """
    launched = int(environ.get("WORLD_SIZE", "1"))
    if launched > world_size:
        raise ValueError(
            f"the launcher started {launched} processes (WORLD_SIZE={launched}) but each one trains alone (world size"
            f" {world_size}): on a machine without GPUs pass --use_cpu true (or set ACCELERATE_USE_CPU=1). "
            + CPU_PROCESSES.format(script=script)
        )
    by_accelerate = "ACCELERATE_MIXED_PRECISION" in environ  # set by every `accelerate launch`
    if world_size == 1 and by_accelerate and "MASTER_ADDR" in environ and "WORLD_SIZE" not in environ:
        logger.warning(
            "ONE PROCESS: accelerate launch was asked for several processes but started only this one (it does so"
            " with --cpu, or without --multi_gpu): this run trains alone. %s",
            CPU_PROCESSES.format(script=script),
        )
