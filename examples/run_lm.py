"""Word-level language modelling with truncated BPTT through the Trainer (Zaremba et al. 2014 style).

    python examples/run_lm.py --train_file ptb.train.txt --validation_file ptb.valid.txt --output_dir runs/ptb \
        --cell_type lstm --hidden_size 650 --embedding_size 650 --num_layers 2 --dropout 0.5 --zaremba

Truncated BPTT: the token stream is cut into `batch_size` parallel rows; batch k holds window k of every row, so each
row continues the previous batch's row. The recurrent state is carried from batch to batch (detached: gradients stop
at the window), reset at every epoch start and for evaluation. Under several processes each process owns its own
rows, so the carry stays exact.

By default the model trains with the paper's recipe (`--zaremba`): the loss summed over the unrolled steps and averaged
over the batch (the model's per-token mean times `bptt`), plain SGD at lr 1, gradient-norm clipping at 5,
U[-init, init] weights, and the lr divided by `lr_decay` every epoch after `decay_start` epochs. With a per-token mean
loss the same lr trains ~35x slower, which is why the scale matters (../shared/docs/DESIGN.md). `--no_zaremba` trains
on the per-token mean with the Trainer's AdamW and linear decay, from lr 2e-3. Every flag can be set, the recipe's
included (`--optim`, `--learning_rate`, `--max_grad_norm`); a loss is logged every 2 % of the steps, and torch uses
one CPU thread unless OMP_NUM_THREADS is set (hf_rnn.launch).

Checkpoints do not hold the carried state: a run resumed mid-epoch restarts its rows from a zero state, as at an
epoch start.
"""

import argparse
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

import hf_rnn
from hf_rnn.checkpoints import resolve_resume
from hf_rnn.data import read_text
from hf_rnn.hub import push_trained
from hf_rnn.launch import TRAINING_DEFAULTS, parse_args
from hf_rnn.tokenization import build_word_tokenizer

logger = logging.getLogger(__name__)
# Zaremba et al.'s optimiser; their schedule (constant, then decayed per epoch) is added by the script
ZAREMBA = {"optim": "sgd", "learning_rate": 1.0, "max_grad_norm": 5.0, "lr_scheduler_type": "constant"}


@dataclass
class LmArguments:
    train_file: str = field(metadata={"help": "Plain text, one sentence per line (an <eos> is appended to each)."})
    validation_file: str | None = None
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
    decay_start: int = field(default=4, metadata={"help": "--zaremba: epochs at the initial lr."})
    lr_decay: float = field(default=2.0, metadata={"help": "--zaremba: divide the lr by this every later epoch."})


class BpttWindows(Dataset):
    """Items ordered so that the Trainer's batches are TBPTT windows.

    The stream becomes `rows = batch_size * processes` rows. Accelerate hands global batch g to process
    g % processes, so global batch k * processes + p holds window k of process p's rows.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, processes: int, bptt: int):
        rows = batch_size * processes
        usable = (ids.numel() - 1) // rows * rows
        self.inputs = ids[:usable].view(rows, -1)  # (rows, L)
        self.targets = ids[1 : usable + 1].view(rows, -1)  # next tokens, across window borders too
        self.batch_size, self.processes, self.bptt = batch_size, processes, bptt
        self.windows = self.inputs.size(1) // bptt

    def __len__(self) -> int:
        return self.windows * self.processes * self.batch_size

    def __getitem__(self, index: int) -> dict:
        batch, row_in_batch = divmod(index, self.batch_size)
        window, process = divmod(batch, self.processes)
        row = process * self.batch_size + row_in_batch
        span = slice(window * self.bptt, (window + 1) * self.bptt)
        return {"input_ids": self.inputs[row, span], "shift_labels": self.targets[row, span]}


def bptt_windows(path: str, ids: torch.Tensor, batch_size: int, processes: int, bptt: int) -> BpttWindows:
    """The file's windows; a corpus too short for one is refused here, before anything is trained or saved (the
    Trainer would train on nothing, or evaluate nothing and report no perplexity)."""
    windows = BpttWindows(ids, batch_size, processes, bptt)
    if windows.windows == 0:
        rows = batch_size * processes
        raise ValueError(
            f"{path}: {ids.numel()} tokens, but one window of --bptt {bptt} in each of {rows} rows (batch size"
            f" {batch_size} x {processes} processes) needs {rows * bptt + 1}; lower --bptt or the batch size"
        )
    return windows


class TbpttTrainer(Trainer):
    """Carries the recurrent state between consecutive batches (one state for training, one for evaluation)."""

    def __init__(self, *args, loss_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_scale = loss_scale
        self.carried = {True: None, False: None}  # keyed by model.training
        self.add_callback(_ResetStateEachEpoch(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = model.training
        outputs = model(**inputs, cache=self.carried[mode], use_cache=True)
        self.carried[mode] = outputs.cache.detach()
        loss = outputs.loss * self.loss_scale
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, *args, **kwargs):
        self.carried[False] = None
        metrics = super().evaluate(*args, **kwargs)
        key = f"{kwargs.get('metric_key_prefix', 'eval')}_loss"
        if key in metrics:
            metrics[key.replace("loss", "perplexity")] = math.exp(metrics[key] / self.loss_scale)
        return metrics


class _ResetStateEachEpoch(TrainerCallback):
    def __init__(self, trainer: TbpttTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.carried[True] = None


class _ZarembaDecay(TrainerCallback):
    """lr = lr0 / decay ** max(0, epoch - decay_start + 1), set at each epoch start."""

    def __init__(self, trainer: Trainer, decay_start: int, decay: float):
        self.trainer, self.decay_start, self.decay = trainer, decay_start, decay

    def on_epoch_begin(self, args, state, control, **kwargs):
        lr = args.learning_rate / self.decay ** max(0, int(round(state.epoch)) - self.decay_start + 1)
        # the (constant) scheduler recomputes every step's lr from its base_lrs, so change those too
        self.trainer.lr_scheduler.base_lrs = [lr] * len(self.trainer.lr_scheduler.base_lrs)
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = lr


def defaults(first: argparse.Namespace) -> dict:
    """The recipe's optimiser, or with --no_zaremba the other scripts' AdamW at 2e-3."""
    return {**TRAINING_DEFAULTS, **(ZAREMBA if first.zaremba else {})}


def parse(args: list[str] | None = None) -> tuple[LmArguments, TrainingArguments]:
    """The flags (hf_rnn.launch's defaults, and the recipe's unless --no_zaremba); contradictions are usage errors."""
    parser = HfArgumentParser((LmArguments, TrainingArguments))
    lm_args, training_args = parse_args(parser, defaults, args)
    if lm_args.zaremba and (training_args.lr_scheduler_type != "constant" or training_args.warmup_steps):
        parser.error(
            f"--lr_scheduler_type {training_args.lr_scheduler_type.value} --warmup_steps {training_args.warmup_steps}:"
            " --zaremba decays the lr its own way (--decay_start, --lr_decay); pass --no_zaremba for the Trainer's"
            " schedules"
        )
    return lm_args, training_args


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lm_args, training_args = parse()
    set_seed(training_args.seed)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    # hf_rnn pushes once at the end, with its own model card (the Trainer's push would write another card)
    push, training_args.push_to_hub = training_args.push_to_hub, False
    # TBPTT needs the batches in stream order, and our own columns kept
    training_args.train_sampling_strategy = "sequential"
    training_args.remove_unused_columns = False
    training_args.label_names = ["shift_labels"]
    training_args.prediction_loss_only = True

    train_lines = read_text(lm_args.train_file)
    tokenizer = build_word_tokenizer(train_lines)
    vocab = tokenizer.get_vocab()

    def stream(lines: list[list[str]]) -> torch.Tensor:
        return torch.tensor([vocab.get(word, tokenizer.unk_token_id) for line in lines for word in line])

    processes = training_args.world_size
    train = bptt_windows(
        lm_args.train_file, stream(train_lines), training_args.per_device_train_batch_size, processes, lm_args.bptt
    )
    validation = None
    if lm_args.validation_file:
        validation = bptt_windows(
            lm_args.validation_file,
            stream(read_text(lm_args.validation_file)),
            training_args.per_device_eval_batch_size,
            processes,
            lm_args.bptt,
        )
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
    )
    model = hf_rnn.RnnForCausalLM(config)
    logger.info(
        "%d parameters; vocabulary %d; %d training windows of %d",
        model.num_parameters(),
        tokenizer.vocab_size,
        train.windows,
        lm_args.bptt,
    )
    trainer = TbpttTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        loss_scale=lm_args.bptt if lm_args.zaremba else 1.0,
    )
    if lm_args.zaremba:
        trainer.add_callback(_ZarembaDecay(trainer, lm_args.decay_start, lm_args.lr_decay))
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_state()  # trainer_state.json: the logged losses, for plots
    if validation is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        if trainer.is_world_process_zero():
            print(f"validation perplexity {metrics['eval_perplexity']:.2f}")
    if push:
        push_trained(
            trainer, metrics if validation is not None else None, dataset=Path(lm_args.train_file).parent.name or None
        )
    trainer.accelerator.end_training()  # tears down the process group under torchrun/accelerate launch


if __name__ == "__main__":
    sys.exit(main())
