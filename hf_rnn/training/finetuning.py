"""ULMFiT's fine-tuning schedules (Howard & Ruder 2018) for any `Trainer`: discriminative learning rates and gradual
unfreezing, over a model's layer groups.

The layer groups, bottom to top: the encoder's input (word embeddings, a character encoder), each recurrent layer,
and the head (every other weight: classifier, CRF, language-model output layer). A pretrained encoder's lower layers
hold general features that a large learning rate or a random head's first gradients would wreck; discriminative
learning rates train each group at the lr of the group above divided by `layer_lr_decay` (ULMFiT: 2.6), and gradual
unfreezing trains only the head in the first epoch, then one more group per epoch from the top.

    trainer = Trainer(model=model, args=args, ...)
    with finetuning_schedules(trainer, FinetuningArguments(layer_lr_decay=2.6, gradual_unfreezing=True)):
        trainer.train()

The optimizer is the one `args` names (`--optim`, its betas and eps, `--weight_decay` but on biases), built before
training, as the Trainer's `optimizers=` argument would be: not with DeepSpeed or FSDP, which build their own.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback


@dataclass
class FinetuningArguments:
    layer_lr_decay: float | None = field(
        default=None,
        metadata={
            "help": "Discriminative learning rates: the head trains at --learning_rate, each layer group below at"
            " the lr of the group above divided by this (ULMFiT: 2.6)."
        },
    )
    gradual_unfreezing: bool = field(
        default=False,
        metadata={"help": "Train only the head in the first epoch, then unfreeze one layer group per epoch down."},
    )

    def __post_init__(self):
        if self.layer_lr_decay is not None and not 0 < self.layer_lr_decay < math.inf:
            raise ValueError(f"--layer_lr_decay must be a finite positive number, got {self.layer_lr_decay}")


def layer_groups(model: PreTrainedModel) -> list[list[str]]:
    """The names of `model`'s parameters by layer group, bottom to top (the module docstring); a bare encoder has no
    head group."""
    encoder = model.base_model
    prefix = "" if encoder is model else f"{model.base_model_prefix}."
    groups = [[] for _ in range(len(encoder.layers) + 2)]
    for name, _ in model.named_parameters():
        if not name.startswith(prefix):
            groups[-1].append(name)
        elif name.startswith(f"{prefix}layers."):
            groups[1 + int(name.split(".")[prefix.count(".") + 1])].append(name)
        else:
            groups[0].append(name)
    return [group for group in groups if group]


def discriminative_optimizer(trainer: Trainer, layer_lr_decay: float) -> torch.optim.Optimizer:
    """The optimizer `trainer` would build, with layer group g counted from the top (the head: 0) at
    `learning_rate / layer_lr_decay ** g`. Parameters frozen now (`requires_grad` False) are left out, as the Trainer
    leaves them out."""
    model, args = trainer.model, trainer.args
    decayed = set(trainer.get_decay_parameter_names(model))
    parameters = dict(model.named_parameters())
    groups = []
    for depth, names in enumerate(reversed(layer_groups(model))):
        lr = _group_lr(args.learning_rate, layer_lr_decay, depth)
        for decay in (True, False):
            chosen = [parameters[n] for n in names if (n in decayed) == decay and parameters[n].requires_grad]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "weight_decay": args.weight_decay if decay else 0.0})
    optimizer_class, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    return optimizer_class(groups, **kwargs)


def _group_lr(learning_rate: float, layer_lr_decay: float, depth: int) -> float:
    """`learning_rate / layer_lr_decay ** depth`, refused where it leaves the floats (a decay far from 1 in a deep
    model: 1e-300 ** 2 is 0, 1e200 ** 2 overflows) and a group would train at lr 0, infinity or NaN."""
    try:
        lr = learning_rate / layer_lr_decay**depth
    except ZeroDivisionError:
        lr = math.inf
    except OverflowError:
        lr = 0.0
    if learning_rate and not 0 < lr < math.inf:
        raise ValueError(
            f"--layer_lr_decay {layer_lr_decay}: the layer group {depth} below the head would train at lr"
            f" {learning_rate} / {layer_lr_decay} ** {depth}, which is {lr} as a float; give a decay closer to 1"
        )
    return lr


class GradualUnfreezing(TrainerCallback):
    """Epoch e (counted from 0) trains the top e + 1 layer groups; the groups below are frozen (`requires_grad`
    False: no gradient, so the optimizer leaves them and their weight decay alone). Weights frozen before training
    (`--freeze_embeddings`) stay frozen; the others all train again once training ends. A resumed run unfreezes as
    its epoch asks."""

    def __init__(self, model: PreTrainedModel):
        parameters = dict(model.named_parameters())
        self.groups = [[parameters[name] for name in names] for names in reversed(layer_groups(model))]  # top first
        self.trainable: list[torch.nn.Parameter] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainable = [p for group in self.groups for p in group if p.requires_grad]

    def on_epoch_begin(self, args, state, control, **kwargs):
        trains = int(state.epoch or 0) + 1  # groups from the top
        trainable = {id(p) for p in self.trainable}
        for depth, group in enumerate(self.groups):
            for parameter in group:
                parameter.requires_grad_(depth < trains and id(parameter) in trainable)

    def on_train_end(self, args, state, control, **kwargs):
        for parameter in self.trainable:
            parameter.requires_grad_(True)


def apply_finetuning(trainer: Trainer, arguments: FinetuningArguments) -> None:
    """`--layer_lr_decay` and `--gradual_unfreezing`, on a `trainer` that has not trained yet."""
    if arguments.layer_lr_decay is not None:
        trainer.optimizer = discriminative_optimizer(trainer, arguments.layer_lr_decay)
    if arguments.gradual_unfreezing:
        trainer.add_callback(GradualUnfreezing(trainer.model))


@contextmanager
def finetuning_schedules(trainer: Trainer, arguments: FinetuningArguments) -> Iterator[None]:
    """`apply_finetuning` for a `with` block around training: leaving it, an exception included, every weight that
    trained before it trains again (gradual unfreezing's `on_train_end` is not called when training raises, and the
    model would keep most of its weights frozen)."""
    trainable = [parameter for parameter in trainer.model.parameters() if parameter.requires_grad]
    apply_finetuning(trainer, arguments)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
