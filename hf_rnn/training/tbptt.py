"""Truncated backpropagation through time (TBPTT) with the Trainer, for language models.

The token stream is cut into `batch_size * processes` parallel rows, and batch k holds window k of every row
(`BpttWindows`), so each row continues the previous batch's row. `TbpttTrainer` carries the recurrent state from
batch to batch (detached: gradients stop at the window), resets it at every epoch start and for evaluation, and
reports perplexity (and bits per character for a character LM). Under several processes each process owns its own
rows, so the carry stays exact. A `BpttWindows` is always batched by its own rows: evaluating it with another
`per_device_eval_batch_size` would hand one row's state to another (the loss does not depend on the batch size, so
its own is used); training with another is refused, as it would change the optimisation asked for. `zaremba_schedule` is the learning-rate schedule of Zaremba et al. (2014) as a torch
scheduler.

Checkpoints do not hold the carried state: a run resumed mid-epoch restarts its rows from a zero state, as at an
epoch start.
"""

import math

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback


class BpttWindows(Dataset):
    """Items ordered so that the Trainer's batches (in order: `train_sampling_strategy="sequential"`) are TBPTT
    windows: `{"input_ids", "shift_labels"}` of `bptt` tokens each, the targets crossing window borders.

    The stream becomes `rows = batch_size * processes` rows. Accelerate hands global batch g to process
    g % processes, so global batch k * processes + p holds window k of process p's rows.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, processes: int, bptt: int):
        rows = batch_size * processes
        usable = (ids.numel() - 1) // rows * rows
        self.inputs = ids[:usable].view(rows, -1)  # (rows, L)
        self.targets = ids[1 : usable + 1].view(rows, -1)  # next tokens, across window borders too
        self.batch_size, self.processes, self.bptt = batch_size, processes, bptt
        self.windows = self.inputs.size(1) // bptt  # batches per epoch in each process

    def __len__(self) -> int:
        return self.windows * self.processes * self.batch_size

    def __getitem__(self, index: int) -> dict:
        batch, row_in_batch = divmod(index, self.batch_size)
        window, process = divmod(batch, self.processes)
        row = process * self.batch_size + row_in_batch
        span = slice(window * self.bptt, (window + 1) * self.bptt)
        return {"input_ids": self.inputs[row, span], "shift_labels": self.targets[row, span]}


def bptt_windows(source: str, ids: torch.Tensor, batch_size: int, processes: int, bptt: int) -> BpttWindows:
    """`BpttWindows`, refusing a stream (read from `source`, named in the error) too short for one window: the
    Trainer would train on nothing, or evaluate nothing and report no perplexity."""
    windows = BpttWindows(ids, batch_size, processes, bptt)
    if windows.windows == 0:
        rows = batch_size * processes
        raise ValueError(
            f"{source}: {ids.numel()} tokens, but one window of --bptt {bptt} in each of {rows} rows (batch size"
            f" {batch_size} x {processes} processes) needs {rows * bptt + 1}; lower --bptt or the batch size"
        )
    return windows


def zaremba_schedule(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, decay_start: int, decay: float
) -> LambdaLR:
    """The initial lr for `decay_start` epochs, then divided by `decay` at the start of every later epoch: epoch e
    (counted from 0, `steps_per_epoch` optimizer steps each) trains at lr / decay ** max(0, e - decay_start + 1).
    Zaremba et al.'s small model: 4 epochs at lr 1, then halved every epoch."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    return LambdaLR(optimizer, lambda step: decay ** -max(0, step // steps_per_epoch - decay_start + 1))


class TbpttTrainer(Trainer):
    """A Trainer for `BpttWindows`: carries the recurrent state between consecutive batches (one state for training,
    reset at every epoch start, one for evaluation, reset at every `evaluate`) and adds `eval_perplexity`; for a
    `config.char_level` model also `eval_bpc`, bits per character (the mean NLL in nats over ln 2).

    `loss_scale` multiplies the model's per-token mean loss (Zaremba et al. sum it over the window: `bptt`); the
    perplexity is computed from the unscaled loss. With `decay_start`, the lr follows `zaremba_schedule` (the
    optimizer steps of one epoch: the windows over `gradient_accumulation_steps`) instead of `lr_scheduler_type`.
    The windows must come in order: `train_sampling_strategy="sequential"`, or the carried state would be another
    row's. `label_names` defaults to `["shift_labels"]`, the windows' targets.
    """

    def __init__(
        self, *args, loss_scale: float = 1.0, decay_start: int | None = None, lr_decay: float = 2.0, **kwargs
    ):
        super().__init__(*args, **kwargs)
        if self.args.train_sampling_strategy != "sequential":
            raise ValueError(
                "TbpttTrainer needs the windows in order: train_sampling_strategy='sequential', not"
                f" {self.args.train_sampling_strategy!r} (the carried state would continue another row)"
            )
        if self.args.label_names is None:
            self.label_names = ["shift_labels"]
        self.loss_scale, self.decay_start, self.lr_decay = loss_scale, decay_start, lr_decay
        self.carried = {True: None, False: None}  # keyed by model.training
        self.add_callback(_ResetStateEachEpoch(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = model.training
        outputs = model(**inputs, cache=self.carried[mode], use_cache=True)
        self.carried[mode] = outputs.cache.detach()
        loss = outputs.loss * self.loss_scale
        return (loss, outputs) if return_outputs else loss

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.decay_start is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        steps_per_epoch = math.ceil(self.train_dataset.windows / self.args.gradient_accumulation_steps)
        optimizer = optimizer or self.optimizer
        self.lr_scheduler = zaremba_schedule(optimizer, steps_per_epoch, self.decay_start, self.lr_decay)
        self._created_lr_scheduler = True  # as the Trainer's own: a later train() builds a fresh one
        return self.lr_scheduler

    def _get_dataloader(self, dataset, description: str, batch_size: int, *args, is_training: bool = False, **kwargs):
        """Batches of `dataset`'s own rows for a `BpttWindows` (module doc), for the processes it was cut for."""
        if isinstance(dataset, BpttWindows):
            if dataset.processes != self.args.world_size:
                raise ValueError(
                    f"{description}: the windows were cut for {dataset.processes} process(es), this run has"
                    f" {self.args.world_size}: the carried state would continue another process's rows"
                )
            if is_training and batch_size != dataset.batch_size:
                raise ValueError(
                    f"{description}: the windows hold {dataset.batch_size} rows per batch, the train batch size is"
                    f" {batch_size}: the carried state would continue another row; cut them with the batch size"
                )
            batch_size = dataset.batch_size
        return super()._get_dataloader(dataset, description, batch_size, *args, is_training=is_training, **kwargs)

    def evaluation_loop(self, *args, **kwargs):
        """`evaluate` and `predict`: each run starts its rows from a zero state."""
        self.carried[False] = None
        return super().evaluation_loop(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        key = f"{kwargs.get('metric_key_prefix', 'eval')}_loss"
        if key in metrics:
            nats = metrics[key] / self.loss_scale  # per token: every window holds batch x bptt of them
            metrics[key.replace("loss", "perplexity")] = math.exp(nats)
            if self.model.config.char_level:
                metrics[key.replace("loss", "bpc")] = nats / math.log(2)
        return metrics


class _ResetStateEachEpoch(TrainerCallback):
    def __init__(self, trainer: TbpttTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.carried[True] = None
