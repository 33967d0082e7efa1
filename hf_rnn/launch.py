"""What the example scripts (`examples/run_*.py`) do before they train: parse their flags with defaults that train an
RNN from scratch, and keep torch to one CPU thread unless told otherwise.

`TrainingArguments`' defaults are meant for fine-tuning a pretrained transformer: at lr 5e-5 a tagger trained from
scratch is at 25-35 % accuracy after 3 epochs of the bundled sample, and a language model stays at a perplexity close
to its vocabulary size; with logging every 500 steps a short run logs nothing to plot.
"""

import argparse
import logging
import os
from collections.abc import Callable, Mapping

import torch
from transformers import HfArgumentParser

logger = logging.getLogger(__name__)

# AdamW at 2e-3 (the README's tagging runs), and about 50 logged losses per run whatever its length (a float below 1 is
# a share of the total steps). Length-grouped batches are faster but not a default: with few sentences, batches of
# one length in a row made the bundled sample's loss jump from 1.6 to 3.9, and its dev loss ended 3x higher.
TRAINING_DEFAULTS = {"learning_rate": 2e-3, "logging_steps": 0.02}

Defaults = Mapping[str, object] | Callable[[argparse.Namespace], Mapping[str, object]]


def parse_args(parser: HfArgumentParser, defaults: Defaults, args: list[str] | None = None) -> tuple:
    """`parser.parse_args_into_dataclasses(args)` with the script's `defaults` in place of the dataclasses' own (a
    flag given on the command line still wins). `defaults` may be a function of a first parse, for defaults that
    depend on another flag. Then sets the CPU threads (`set_threads`)."""
    if callable(defaults):
        defaults = defaults(parser.parse_known_args(args)[0])
    parser.set_defaults(**defaults)
    parsed = parser.parse_args_into_dataclasses(args)
    set_threads()
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
