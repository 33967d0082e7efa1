"""What the example scripts (`examples/run_*.py`) share: parsing their flags with defaults that train an RNN from
scratch, keeping torch to one CPU thread unless told otherwise, catching a launch that does not start the processes
asked for, and starting from a checkpoint (`--model_name_or_path`).

`TrainingArguments`' defaults are meant for fine-tuning a pretrained transformer: at lr 5e-5 a tagger trained from
scratch is at 25-35 % accuracy after 3 epochs of the bundled sample, and a language model stays at a perplexity close
to its vocabulary size; with logging every 500 steps a short run logs nothing to plot.
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from datasets import Dataset
from torch.utils.data import Sampler, SequentialSampler
from transformers import (
    AutoConfig,
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import has_length

from ..training.finetuning import FinetuningArguments, finetuning_schedules
from .checkpoints import checkpoints, resolve_resume

logger = logging.getLogger(__name__)

# AdamW at 2e-3 (the README's tagging runs), and about 50 logged losses per run whatever its length (a float below 1 is
# a share of the total steps). Length-grouped batches are faster but not a default: with few sentences, batches of
# one length in a row made the bundled sample's loss jump from 1.6 to 3.9, and its dev loss ended 3x higher.
TRAINING_DEFAULTS = {"learning_rate": 2e-3, "logging_steps": 0.02}
# Unless a saving flag is given: one checkpoint per epoch (aligned with per-epoch evaluation), the newest kept. The
# Trainer's every-500-steps without a limit wrote nine 28 MB checkpoints for a 101-second WNUT-17 tagger run; the
# model is saved in output_dir at the end anyway, and the Trainer deletes the older checkpoint only after writing the
# newer, so a run killed while saving still resumes from a complete one (hf_rnn.scripts.checkpoints).
SAVING_DEFAULTS = {"save_strategy": "epoch", "save_total_limit": 1}
SAVING_FLAGS = ("--save_strategy", "--save_steps", "--save_total_limit")

CPU_PROCESSES = (
    "On CPUs, N processes train together with\n"
    "    accelerate launch --multi_gpu --num_processes N --num_machines 1 --mixed_precision no --dynamo_backend no"
    " {script} ... --use_cpu true\n"
    "or\n"
    "    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N {script} ... --use_cpu true"
)

Defaults = Mapping[str, object] | Callable[[argparse.Namespace], Mapping[str, object]]
# A flag's valid values: a test, and what to give instead.
Range = tuple[Callable[[float], bool], str]


def at_least(low: int) -> Range:
    return (lambda value: value >= low, f"a whole number >= {low}")


FINITE = (lambda value: 0 <= value < math.inf, "a finite number >= 0")
SHARE = (lambda value: 0 <= value < 1, "a number in [0, 1)")
SEED = (lambda value: 0 <= value < 2**32, "a whole number in [0, 2**32)")  # numpy's
# Numbers that transformers 5.x or the scripts take as given but that train the wrong thing or fail deep inside training:
# a negative or NaN learning rate (gradient ascent, NaN weights), a batch size of 0 (ZeroDivisionError), a NaN
# logging interval, a seed numpy refuses after the run started. A learning rate of 0 is allowed (it evaluates a loaded
# model through the training loop), as is a max_grad_norm of 0 (no clipping).
RANGES: dict[str, Range] = {
    "per_device_train_batch_size": at_least(1),
    "per_device_eval_batch_size": at_least(1),
    "gradient_accumulation_steps": at_least(1),
    "eval_accumulation_steps": at_least(1),
    "learning_rate": FINITE,
    "num_train_epochs": FINITE,
    "weight_decay": FINITE,
    "max_grad_norm": FINITE,
    "adam_beta1": SHARE,
    "adam_beta2": SHARE,
    "adam_epsilon": FINITE,
    "label_smoothing_factor": SHARE,
    "warmup_steps": FINITE,
    "logging_steps": FINITE,
    "eval_steps": FINITE,
    "save_steps": FINITE,
    "eval_delay": FINITE,
    "seed": SEED,
    "data_seed": SEED,
    "dataloader_num_workers": at_least(0),
    "dataloader_prefetch_factor": at_least(1),
    "torch_empty_cache_steps": at_least(1),
    "max_train_samples": at_least(1),
    "max_eval_samples": at_least(1),
    "max_predict_samples": at_least(1),
    "max_length": at_least(1),
    "max_word_length": at_least(1),
}


@dataclasses.dataclass
class RunArguments(TrainingArguments):
    """`TrainingArguments` with transformers 4.x's `--overwrite_output_dir`, which 5.x dropped: the scripts refuse to
    train into a folder that holds another run (`check_output_dir`) unless told to replace it."""

    overwrite_output_dir: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Train into a non-empty --output_dir, replacing the run there (its checkpoint-N folders are"
            " removed, so that a later --resume_from_checkpoint True cannot pick one of them)."
        },
    )


def parse_args(
    parser: HfArgumentParser,
    defaults: Defaults,
    args: list[str] | None = None,
    ranges: Mapping[str, Range] | None = None,
) -> tuple:
    """`parser.parse_args_into_dataclasses(args)` with the script's `defaults` in place of the dataclasses' own (a
    flag given on the command line still wins), and `saving_defaults`. `defaults` may be a function of a first parse,
    for defaults that depend on another flag. A value a dataclass refuses, or outside `RANGES` and the script's own
    `ranges`, is a usage error. Then sets the CPU threads (`set_threads`) and checks the launch (`check_processes`);
    a launch whose processes would each train alone is a usage error."""
    first_parse = parser.parse_known_args(args)[0]
    if callable(defaults):
        defaults = defaults(first_parse)
    parser.set_defaults(**saving_defaults(first_parse, sys.argv[1:] if args is None else args), **defaults)
    try:
        parsed = parser.parse_args_into_dataclasses(args)
    except ValueError as error:  # a __post_init__'s check (TrainingArguments', FinetuningArguments')
        parser.error(str(error))
    ranges = {**RANGES, **(ranges or {})}
    wrong = [
        f"--{name} {value}: give {ranges[name][1]}"
        for arguments in parsed
        for name, value in vars(arguments).items()
        if name in ranges and isinstance(value, int | float) and not ranges[name][0](value)
    ]
    training_args = next(arguments for arguments in parsed if isinstance(arguments, TrainingArguments))
    if training_args.do_train and training_args.max_steps <= 0 and not training_args.num_train_epochs:
        wrong.append("--num_train_epochs 0: training would take no step; give a number of epochs > 0 or --max_steps")
    if wrong:
        parser.error("; ".join(wrong))
    set_threads()
    try:
        check_processes(training_args.world_size, script=parser.prog)
    except ValueError as error:
        parser.error(str(error))
    return parsed


def saving_defaults(given: argparse.Namespace, command_line: list[str]) -> dict:
    """`SAVING_DEFAULTS`, unless the command line sets how to save (then the Trainer's defaults stand for the rest);
    with evaluation every N steps, checkpoints follow it (`--load_best_model_at_end` needs the two to match)."""
    if any(arg.split("=")[0] in SAVING_FLAGS for arg in command_line):
        return {}
    if getattr(given.eval_strategy, "value", given.eval_strategy) == "steps":
        return {"save_total_limit": SAVING_DEFAULTS["save_total_limit"]}
    return SAVING_DEFAULTS


def set_threads(environ: Mapping[str, str] = os.environ) -> None:
    """One intra-op thread, unless OMP_NUM_THREADS sets the number.

    torch takes one thread per core. These models are small enough that a second thread gains little, and where the
    cores are shared with other work, threads that wait for each other made training 4-45x slower (2 threads on
    2 busy cores: 200 s against 15 s for the bundled tagging sample). torchrun sets OMP_NUM_THREADS=1 itself.
    """
    if "OMP_NUM_THREADS" not in environ:
        torch.set_num_threads(1)
        logger.info("torch uses 1 CPU thread; set OMP_NUM_THREADS=N for N")


def start(training_args: RunArguments) -> tuple[str | None, bool]:
    """The scripts' common opening: seed, the checkpoint to resume from, an output folder that holds another run
    refused (`check_output_dir`), and the push taken over from the Trainer (hf_rnn pushes once at the end, with its
    own model card; the Trainer's push would write another card)."""
    set_seed(training_args.seed)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    if training_args.do_train:
        main_process = training_args.process_index == 0
        check_output_dir(training_args.output_dir, resume, training_args.overwrite_output_dir, main_process)
    push, training_args.push_to_hub = training_args.push_to_hub, False
    return resume, push


def check_output_dir(output_dir: str, resume: str | None, overwrite: bool, main_process: bool = True) -> None:
    """Refuse to train into a folder that holds another run, as transformers' run_ner.py does: the Trainer would
    overwrite its model, rotate its checkpoints away (`--save_total_limit`) or mix them with this run's, and a later
    `--resume_from_checkpoint True` would pick the other run's. Resuming from a checkpoint inside the folder continues
    its run; `overwrite` replaces the run (the main process removes its `checkpoint-N` folders, the rest is
    overwritten as this run writes it)."""
    folder = Path(output_dir)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"--output_dir {output_dir}: a file, not a folder")
    content = sorted(path.name for path in folder.iterdir())
    if not content or (resume is not None and folder.resolve() in Path(resume).resolve().parents):
        return
    saved = checkpoints(folder)
    if not overwrite:
        shown = [path.name for path in saved] + [name for name in content if name not in {p.name for p in saved}]
        hint = ", or --resume_from_checkpoint True to continue its run" if saved else ""
        raise ValueError(
            f"--output_dir {output_dir} is not empty ({len(content)} entries: {', '.join(shown[:4])}"
            f"{', ...' if len(shown) > 4 else ''}): training would overwrite the run there; pass another"
            f" --output_dir, --overwrite_output_dir to replace it{hint}"
        )
    if main_process:
        for checkpoint in saved:
            logger.warning("--overwrite_output_dir: removing the previous run's %s", checkpoint)
            if checkpoint.is_symlink():  # the link only: the folder it points to is not this run's to delete
                checkpoint.unlink()
            else:
                shutil.rmtree(checkpoint)


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


def load_pretrained(
    path: str, model_class: type[PreTrainedModel], revision: str = "main"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`--model_name_or_path`: the model and the tokenizer saved with it, from a folder or a Hub id (at `revision`,
    `--model_revision`: a branch, tag or commit). A checkpoint of another head is refused: `from_pretrained` would
    start that head from random weights (and default labels); a language model's encoder starts a new head through
    `start_from_language_model`."""
    architectures = AutoConfig.from_pretrained(path, revision=revision).architectures or []
    if model_class.__name__ not in architectures:
        raise ValueError(
            f"--model_name_or_path {path}: a checkpoint of {', '.join(architectures) or 'no known head'}, not of"
            f" {model_class.__name__}; start from one of those, or train from scratch without --model_name_or_path"
        )
    return (
        model_class.from_pretrained(path, revision=revision),
        AutoTokenizer.from_pretrained(path, revision=revision),
    )


def is_language_model(path: str, revision: str = "main") -> bool:
    """Whether `path` (at `revision`) is a language model's checkpoint (a path that does not load is not: loading it
    says why)."""
    try:
        return "RnnForCausalLM" in (AutoConfig.from_pretrained(path, revision=revision).architectures or [])
    except OSError:
        return False


def start_from_language_model(
    path: str, model_class: type[PreTrainedModel], new_head: Mapping[str, object], revision: str = "main"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A `model_class` whose encoder (`model.*`: embeddings and recurrent layers, the LM's architecture) and tokenizer
    come from the language model at `path` (at `revision`), with a new head configured by `new_head`. Logs which
    weights were loaded, which are new and which of the checkpoint's were left out (its output layer)."""
    config = AutoConfig.from_pretrained(path, revision=revision)
    if config.reverse:
        raise ValueError(
            f"--model_name_or_path {path}: a backward language model (config.reverse), whose encoder reads text right"
            f" to left; start {model_class.__name__} from a forward one"
        )
    # the LM's auto_map names its own head: saving the new model writes its own
    config = type(config)(**{**config.to_diff_dict(), **new_head, "architectures": None, "auto_map": None})
    model, info = model_class.from_pretrained(path, config=config, output_loading_info=True, revision=revision)
    loaded = [name for name in model.state_dict() if name not in info["missing_keys"]]
    logger.info(
        "%s from the language model %s: %d weights loaded (%s); new: %s; left out: %s",
        model_class.__name__,
        path,
        len(loaded),
        ", ".join(sorted({".".join(name.split(".")[:2]) for name in loaded})),
        ", ".join(sorted(info["missing_keys"])) or "none",
        ", ".join(sorted(info["unexpected_keys"])) or "none",
    )
    return model, AutoTokenizer.from_pretrained(path, revision=revision)


def check_labels(path: str, model_labels: Iterable[str], data_labels: Iterable[str]) -> None:
    """Refuse data with labels the checkpoint's head has no output for (a new label set needs a new head)."""
    missing = sorted(set(data_labels) - set(model_labels))
    if missing:
        raise ValueError(
            f"--model_name_or_path {path}: the data has labels {missing} that the model does not know (its labels:"
            f" {sorted(model_labels)}); train a new model without --model_name_or_path for another label set"
        )


def refuse_fixed(parser: HfArgumentParser, checkpoint: str | None, *groups: tuple[object, Iterable[str]]) -> None:
    """With `--model_name_or_path` the checkpoint fixes the architecture and the tokenizer: the flags among each
    group's (dataclass instance, field names) set to other than their defaults are a usage error, not ignored."""
    if checkpoint is None:
        return
    fixed = []
    for arguments, names in groups:
        defaults = {field.name: field.default for field in dataclasses.fields(arguments)}
        fixed += [f"--{name}" for name in names if getattr(arguments, name) != defaults[name]]
    if fixed:
        parser.error(
            f"{' '.join(fixed)}: the model and its tokenizer come from --model_name_or_path {checkpoint}; drop these"
            " flags"
        )


class RowOrderTrainer(Trainer):
    """A `Trainer` whose evaluation and prediction outputs come in the dataset's row order, whatever
    `train_sampling_strategy` says: the scripts write row i's prediction next to input row i.

    transformers' Trainer also groups evaluation and prediction batches by length under `group_by_length`, so
    `predict(dataset).predictions[i]` would be another row's answer (its metrics stay right: they pair predictions with
    the labels batched with them). One process reads the rows in order; several get transformers' own default (no
    sampler: accelerate shards the rows in order and gathers them back in order).
    """

    def _get_eval_sampler(self, eval_dataset: Dataset) -> Sampler | None:
        if eval_dataset is None or not has_length(eval_dataset) or self.args.world_size > 1:
            return None
        return SequentialSampler(eval_dataset)


def train_and_save(trainer: Trainer, finetuning: FinetuningArguments, resume: str | bool | None) -> None:
    """The scripts' training step, as run_ner.py's: with the fine-tuning schedules asked for, then the model, the train
    metrics and trainer_state.json (the logged losses, for plots) saved in the output folder."""
    with finetuning_schedules(trainer, finetuning):
        result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()


def print_metrics(trainer: Trainer, metrics: Mapping[str, object]) -> None:
    """One JSON line on stdout (the main process's), floats rounded: what a caller of the script parses."""
    if trainer.is_world_process_zero():
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))


STORED_FORMATS = {".parquet": "Parquet", ".arrow": "Arrow", ".feather": "Arrow"}  # binary tables, not text


def refuse_stored_tables(parser: HfArgumentParser, files: Mapping[str, str | None]) -> None:
    """A Parquet or Arrow file given where a script reads text (its bytes would read as "not valid UTF-8") is a usage
    error that says how such data loads: `--dataset_name` on its folder (`load_dataset` reads it)."""
    for flag, path in files.items():
        kind = STORED_FORMATS.get(os.path.splitext(path or "")[1].lower())
        if kind:
            parser.error(
                f"{flag} {path}: a {kind} file; {flag} reads text files. Put it in a folder as train{Path(path).suffix}"
                f" (validation..., test...) and pass the folder as --dataset_name"
            )


def card_dataset(dataset_name: str | None, train_file: str | None) -> str | None:
    """The model card's `datasets:` entry: a Hub dataset's id, else the name of the local folder the data came from
    (`--dataset_name` folder, or the training file's folder); never a path, which names this machine's folders."""
    if dataset_name:
        return Path(dataset_name).name if Path(dataset_name).exists() else dataset_name
    return (Path(train_file).parent.name or None) if train_file else None


def first(dataset: Dataset, count: int | None) -> Dataset:
    """The first `count` rows (`--max_train_samples` and co.; None: all)."""
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


def default_steps(evaluation: bool, test: bool) -> dict[str, bool]:
    """run_ner.py's --do_train/--do_eval/--do_predict, by default the steps the data given asks for: train, evaluate
    when evaluation data is named, predict when test data is (run_ner.py does nothing unless asked)."""
    return {"do_train": True, "do_eval": evaluation, "do_predict": test}


def data_sources(parser: HfArgumentParser, arguments) -> tuple[dict[str, object], dict[str, str]]:
    """What each step reads (`--train_file`, `--validation_file`, `--test_file`, or `--dataset_name`'s splits) and the
    flags that give it, for `check_steps`; files and a dataset together: a usage error."""
    files = {"train": arguments.train_file, "eval": arguments.validation_file, "predict": arguments.test_file}
    if arguments.dataset_name and any(files.values()):
        parser.error("pass --dataset_name or files (--train_file, --validation_file, --test_file), not both")
    data = {step: file or arguments.dataset_name for step, file in files.items()}
    flags = {"train": "--train_file", "eval": "--validation_file", "predict": "--test_file"}
    return data, {step: f"{flag} or --dataset_name" for step, flag in flags.items()}


def check_steps(
    parser: HfArgumentParser,
    training_args: TrainingArguments,
    checkpoint: str | None,
    data: Mapping[str, object],
    flags: Mapping[str, str],
    new_head: bool = False,
) -> None:
    """Usage errors: a step without its data (`data["train"]`, `["eval"]`, `["predict"]`: true when given; `flags`:
    what gives it), and no training without a checkpoint, or with a `new_head` on a language model's encoder (that
    would evaluate random weights)."""
    for step in ("train", "eval", "predict"):
        if getattr(training_args, f"do_{step}") and not data[step]:
            parser.error(f"--do_{step} needs {flags[step]}")
    if not (training_args.do_train or checkpoint):
        parser.error("--do_train false: pass --model_name_or_path, the model to evaluate")
    if new_head and not training_args.do_train:
        parser.error(
            f"--do_train false: --model_name_or_path {checkpoint} is a language model, its new head needs training"
        )
