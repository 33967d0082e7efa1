"""Word- or character-level language modelling with truncated BPTT through the Trainer (Zaremba et al. 2014 style).

    python examples/run_lm.py --train_file ptb.train.txt --validation_file ptb.valid.txt --output_dir runs/ptb \
        --cell_type lstm --hidden_size 650 --embedding_size 650 --num_layers 2 --dropout 0.5 --zaremba
    python examples/run_lm.py --char_level --reverse --train_file ... # a backward character LM (flair's kind)

A word LM reads one sentence per line, its words split at whitespace and an `<eos>` after each line. `--char_level`
trains on characters instead (hf_rnn.vocabulary.build_char_tokenizer): every character of the file is a token,
spaces and line ends ("\n") too, and evaluation also reports bits per character (`eval_bpc`, the mean NLL over
ln 2). `--reverse` trains a backward LM: each file's token stream is read last token first, which is the text read
right to left (a character LM reads the reversed text; a word LM each line's words backwards with `<eos>` now before
each line, the last line first). The checkpoint's config records both (`char_level`, `reverse`).

Truncated BPTT (hf_rnn.training.tbptt): the token stream is cut into `batch_size` parallel rows; batch k holds window k of
every row, so each row continues the previous batch's row. The recurrent state is carried from batch to batch
(detached: gradients stop at the window), reset at every epoch start and for evaluation.

By default the model trains with the paper's recipe (`--zaremba`): the loss summed over the unrolled steps and averaged
over the batch (the model's per-token mean times `bptt`), plain SGD at lr 1, gradient-norm clipping at 5,
U[-init, init] weights, and the lr divided by `lr_decay` every epoch after `decay_start` epochs (a torch scheduler,
`hf_rnn.training.tbptt.zaremba_schedule`, so that a resumed run continues the schedule). A new `--char_level` LM
under the recipe defaults to batches of 32 and `--decay_start` a third of the epochs (at least 1). With a per-token mean
loss the same lr trains ~35x slower, which is why the scale matters (a bare-PyTorch rerun that way reached 136 test perplexity instead of 82.8). `--no_zaremba` trains
on the per-token mean with the Trainer's AdamW and linear decay, from lr 2e-3. Every flag can be set, the recipe's
included (`--optim`, `--learning_rate`, `--max_grad_norm`); a loss is logged every 2 % of the steps, a checkpoint
saved per epoch (only the newest kept) unless a --save_* flag is given, and torch uses one CPU thread unless
OMP_NUM_THREADS is set (hf_rnn.scripts.launch).

As in transformers' run_ner.py: `--do_train`, `--do_eval`, `--do_predict` choose the steps (by default: train,
evaluate when a validation file is given, report the test perplexity when a test file is; predict_results.json),
`--max_{train,eval,predict}_samples N` keep the first N windows of a file (N x bptt tokens, taken before
`--reverse` turns them round), `--dataset_name` (with `--dataset_config_name`) reads a Hub dataset or a local dataset
folder instead of files (its 'text' column, else its first, one line per row), and `--model_name_or_path` (at
`--model_revision`) continues from an hf_rnn language model (its architecture,
vocabulary, `--char_level` and `--reverse`). `--layer_lr_decay` and `--gradual_unfreezing` (hf_rnn.training.finetuning) are
ULMFiT's fine-tuning schedules.

Checkpoints do not hold the carried state: a run resumed mid-epoch restarts its rows from a zero state, as at an
epoch start.
"""

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field

import torch
from datasets import load_dataset
from transformers import HfArgumentParser, TrainingArguments

import hf_rnn
from hf_rnn.data import read_characters, read_text
from hf_rnn.hub import push_trained
from hf_rnn.scripts.launch import (
    TRAINING_DEFAULTS,
    RunArguments,
    at_least,
    card_dataset,
    check_steps,
    data_sources,
    default_steps,
    load_pretrained,
    parse_args,
    refuse_fixed,
    refuse_stored_tables,
    start,
    train_and_save,
)
from hf_rnn.training.finetuning import FinetuningArguments
from hf_rnn.training.tbptt import TbpttTrainer, bptt_windows
from hf_rnn.vocabulary import build_char_tokenizer, build_word_tokenizer

logger = logging.getLogger(__name__)
# Zaremba et al.'s optimiser; their schedule (constant, then decayed per epoch) is TbpttTrainer's decay_start
ZAREMBA = {"optim": "sgd", "learning_rate": 1.0, "max_grad_norm": 5.0, "lr_scheduler_type": "constant"}
# what a checkpoint fixes
ARCHITECTURE = ("cell_type", "embedding_size", "hidden_size", "num_layers", "dropout", "locked_dropout")
ARCHITECTURE += ("tie_word_embeddings", "init_range", "char_level", "reverse")


@dataclass
class LmArguments:
    train_file: str | None = field(
        default=None, metadata={"help": "Plain text, one sentence per line (an <eos> is appended to each)."}
    )
    validation_file: str | None = None
    test_file: str | None = field(default=None, metadata={"help": "--do_predict: its perplexity."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Instead of files: a Hub dataset (e.g. wikitext) or a local dataset folder, its 'text' column (else"
            " its first), one line per row."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "--dataset_name's configuration (e.g. wikitext-2-raw-v1)."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue from an hf_rnn language model (folder or Hub id), its vocabulary."}
    )
    model_revision: str = field(
        default="main",
        metadata={
            "help": "The revision of --model_name_or_path to load: a branch (e.g. a --hub_revision), tag or commit."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N windows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N windows."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Score the first N windows."})
    bptt: int = field(default=35, metadata={"help": "Unrolled steps per window."})
    cell_type: str = "lstm"
    embedding_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.0
    locked_dropout: bool = field(
        default=False, metadata={"help": "One dropout mask per sequence, reused at every step (variational)."}
    )
    tie_word_embeddings: bool = False
    init_range: float = field(default=0.1, metadata={"help": "U[-init_range, init_range] for every weight."})
    zaremba: bool = field(
        default=True, metadata={"help": "Zaremba et al.'s recipe (module doc); --no_zaremba: AdamW."}
    )
    decay_start: int = field(
        default=4, metadata={"help": "--zaremba: epochs at the initial lr (--char_level: a third of the epochs)."}
    )
    lr_decay: float = field(default=2.0, metadata={"help": "--zaremba: divide the lr by this every later epoch."})
    char_level: bool = field(
        default=False, metadata={"help": "A character LM: every character is a token; reports bits per character."}
    )
    reverse: bool = field(default=False, metadata={"help": "A backward LM: the text read last token first."})


# --char_level's batch: 4x the Trainer's 8 trains ~20 % faster on a CPU thread and, decayed as below, ends as low (3
# epochs on examples/pretraining_text.py's 1.3 MB: 2.245 bits per character against 2.284; README, "Contextual string
# embeddings")
CHAR_LEVEL = {"per_device_train_batch_size": 32}


def defaults(given: argparse.Namespace) -> dict:
    """The recipe's optimiser, or with --no_zaremba the other scripts' AdamW at 2e-3. A new --char_level LM under
    --zaremba (where they were measured) also takes batches of 32 and starts its lr decay after a third of the epochs
    (at least one): at a constant lr 1 a character LM's loss stalls (2.56 bits per character after 3 epochs, 2.28 with
    the decay from the second epoch)."""
    steps = default_steps(bool(given.validation_file or given.dataset_name), bool(given.test_file))
    recipe = {**TRAINING_DEFAULTS, **(ZAREMBA if given.zaremba else {}), **steps}
    if given.char_level and given.zaremba:
        recipe |= CHAR_LEVEL | {"decay_start": max(1, round(given.num_train_epochs / 3))}
    return recipe


# --lr_decay divides the lr every epoch after --decay_start: below 1 it grows it, 0 divides by zero
RANGES = {
    "bptt": at_least(1),
    "decay_start": at_least(0),
    "lr_decay": (lambda value: 1 <= value < math.inf, "a finite number >= 1 (1: a constant lr)"),
    "init_range": (lambda value: 0 < value < math.inf, "a finite number > 0"),
}


def parse(args: list[str] | None = None) -> tuple[LmArguments, FinetuningArguments, TrainingArguments]:
    """The flags (hf_rnn.scripts.launch's defaults, and the recipe's unless --no_zaremba); contradictions are usage errors."""
    parser = HfArgumentParser((LmArguments, FinetuningArguments, RunArguments))
    lm_args, finetuning_args, training_args = parse_args(parser, defaults, args, RANGES)
    given = {f"--{split}_file": getattr(lm_args, f"{split}_file") for split in ("train", "validation", "test")}
    refuse_stored_tables(parser, given)
    if lm_args.zaremba and (training_args.lr_scheduler_type != "constant" or training_args.warmup_steps):
        parser.error(
            f"--lr_scheduler_type {training_args.lr_scheduler_type.value} --warmup_steps {training_args.warmup_steps}:"
            " --zaremba decays the lr its own way (--decay_start, --lr_decay); pass --no_zaremba for the Trainer's"
            " schedules"
        )
    data, flags = data_sources(parser, lm_args)
    check_steps(parser, training_args, lm_args.model_name_or_path, data, flags)
    refuse_fixed(parser, lm_args.model_name_or_path, (lm_args, ARCHITECTURE))
    return lm_args, finetuning_args, training_args


def dataset_texts(name: str, config_name: str | None, char_level: bool, steps: dict[str, bool]) -> dict[str, list]:
    """The splits asked for (`steps`) of a dataset, as `read_characters` or `read_text` read a file: each row of its
    'text' column (else its first, as transformers' run_clm.py takes it) a line."""
    data = load_dataset(name, config_name)
    texts = {}
    for split, wanted in steps.items():
        if not wanted:
            continue
        if split not in data:
            raise ValueError(f"--dataset_name {name} has no {split!r} split (it has {list(data)})")
        part = data[split]
        column = "text" if "text" in part.column_names else part.column_names[0]
        lines = part[column]
        for row, line in enumerate(lines):
            if not isinstance(line, str):
                raise ValueError(f"--dataset_name {name}: {split} row {row}: {column!r} is {line!r}, not text")
        if not any(line.strip() for line in lines):
            raise ValueError(f"--dataset_name {name}: its {split!r} split has no text in column {column!r}")
        if char_level:
            texts[split] = [line if line.endswith("\n") else line + "\n" for line in lines]
        else:
            texts[split] = [line.split() + ["<eos>"] for line in lines if line.strip()]
    return texts


def token_stream(text: list, tokenizer, char_level: bool, limit: int | None, reverse: bool) -> torch.Tensor:
    """A file's text (`read_characters`' lines, or `read_text`'s words) as one stream of token ids: its first `limit`
    tokens (all: None), last token first with `reverse`."""
    if char_level:
        ids = torch.tensor([i for line in tokenizer(text, add_special_tokens=False).input_ids for i in line])
    else:
        vocab = tokenizer.get_vocab()
        ids = torch.tensor([vocab.get(word, tokenizer.unk_token_id) for line in text for word in line])
    ids = ids[:limit]
    return ids.flip(0) if reverse else ids


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lm_args, finetuning_args, training_args = parse()
    resume, push = start(training_args)
    # TBPTT needs the batches in stream order (TbpttTrainer checks), and our own columns kept
    training_args.train_sampling_strategy = "sequential"
    training_args.remove_unused_columns = False
    training_args.prediction_loss_only = True

    files = {"train": lm_args.train_file, "validation": lm_args.validation_file, "test": lm_args.test_file}
    steps = {"train": training_args.do_train, "validation": training_args.do_eval, "test": training_args.do_predict}
    if lm_args.model_name_or_path:
        model, tokenizer = load_pretrained(lm_args.model_name_or_path, hf_rnn.RnnForCausalLM, lm_args.model_revision)
        char_level, reverse = model.config.char_level, model.config.reverse
    else:
        char_level, reverse = lm_args.char_level, lm_args.reverse
    if lm_args.dataset_name:
        texts = dataset_texts(lm_args.dataset_name, lm_args.dataset_config_name, char_level, steps)
        files = {split: f"{lm_args.dataset_name} ({split})" for split in texts}
    else:
        read = read_characters if char_level else read_text
        texts = {split: read(path) for split, path in files.items() if path and steps[split]}
    if not lm_args.model_name_or_path:
        if char_level:
            tokenizer = build_char_tokenizer(texts["train"])
        else:
            tokenizer = build_word_tokenizer(texts["train"], language_model=True)  # prompts start a sentence
        config = hf_rnn.RnnConfig(
            cell_type=lm_args.cell_type,
            vocab_size=tokenizer.vocab_size,
            embedding_size=lm_args.embedding_size,
            hidden_size=lm_args.hidden_size,
            num_layers=lm_args.num_layers,
            dropout=lm_args.dropout,
            locked_dropout=lm_args.locked_dropout,
            tie_word_embeddings=lm_args.tie_word_embeddings,
            initializer_range=lm_args.init_range,
            forget_bias=0.0 if lm_args.zaremba else 1.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            char_level=char_level,
            reverse=reverse,
        )
        model = hf_rnn.RnnForCausalLM(config)
    batch_sizes = {"train": training_args.per_device_train_batch_size}
    batch_sizes["validation"] = batch_sizes["test"] = training_args.per_device_eval_batch_size
    limits = {"train": lm_args.max_train_samples, "validation": lm_args.max_eval_samples}
    limits["test"] = lm_args.max_predict_samples
    windows = {}
    for split, text in texts.items():
        limit = None if limits[split] is None else limits[split] * lm_args.bptt + 1
        ids = token_stream(text, tokenizer, char_level, limit, reverse)
        windows[split] = bptt_windows(files[split], ids, batch_sizes[split], training_args.world_size, lm_args.bptt)
    logger.info(
        "%d parameters; vocabulary %d; windows of %d: %s",
        model.num_parameters(),
        tokenizer.vocab_size,
        lm_args.bptt,
        ", ".join(f"{part.windows} {split}" for split, part in windows.items()),
    )
    trainer = TbpttTrainer(
        model=model,
        args=training_args,
        train_dataset=windows.get("train"),
        eval_dataset=windows.get("validation"),
        processing_class=tokenizer,
        loss_scale=lm_args.bptt if lm_args.zaremba else 1.0,
        decay_start=lm_args.decay_start if lm_args.zaremba else None,
        lr_decay=lm_args.lr_decay,
    )
    if training_args.do_train:
        train_and_save(trainer, finetuning_args, resume)
    scores = {}
    for split, prefix in (("validation", "eval"), ("test", "predict")):
        if split in windows:  # asked for (parse() checked that it is given)
            scores[prefix] = trainer.evaluate(windows[split], metric_key_prefix=prefix)
            trainer.log_metrics(prefix, scores[prefix])
            trainer.save_metrics(prefix, scores[prefix])
            if trainer.is_world_process_zero():
                print(f"{split} perplexity {scores[prefix][f'{prefix}_perplexity']:.2f}")
                if char_level:
                    print(f"{split} bits per character {scores[prefix][f'{prefix}_bpc']:.3f}")
    if push:
        push_trained(trainer, scores.get("eval"), dataset=card_dataset(lm_args.dataset_name, lm_args.train_file))
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
