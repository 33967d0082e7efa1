"""hf_rnn.training.finetuning: ULMFiT's layer groups, discriminative learning rates and gradual unfreezing through the Trainer."""

import math

import pytest
import torch
from conftest import tiny_config
from transformers import Trainer, TrainerCallback, TrainingArguments

import hf_rnn
from hf_rnn.training.finetuning import FinetuningArguments, GradualUnfreezing, apply_finetuning, layer_groups

LR, DECAY = 0.01, 2.6


def _depth(name: str) -> int:
    """Layer groups counted from the top, from the parameter's name: the head 0, the top recurrent layer 1, ..."""
    if not name.startswith("model."):
        return 0
    if name.startswith("model.layers."):
        return 2 - int(name.split(".")[2])  # two layers: layers.1 is 1, layers.0 is 2
    return 3  # embeddings, character encoder


def _classifier() -> hf_rnn.RnnForSequenceClassification:
    config = tiny_config(num_layers=2, char_encoder="cnn", char_vocab_size=8, num_labels=3)
    return hf_rnn.RnnForSequenceClassification(config)


def _trainer(tmp_path, model, callbacks=(), **overrides) -> Trainer:
    torch.manual_seed(0)
    rows = [
        {"input_ids": torch.randint(1, 37, (6,)), "char_ids": torch.randint(0, 8, (6, 4)), "labels": i % 3}
        for i in range(24)
    ]
    values = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, learning_rate=LR, weight_decay=0.1,
        report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", num_train_epochs=4,
    )  # fmt: skip
    args = TrainingArguments(**{**values, **overrides})
    return Trainer(model=model, args=args, train_dataset=rows, callbacks=list(callbacks))


def test_layer_groups_run_from_the_input_to_the_head():
    model = _classifier()
    names = [name for name, _ in model.named_parameters()]
    groups = layer_groups(model)
    assert [[_depth(name) for name in group] for group in groups] == [
        [d] * len(g) for d, g in zip((3, 2, 1, 0), groups)
    ]
    assert sorted(name for group in groups for name in group) == sorted(names)
    assert any(name.startswith("model.char_encoder.") for name in groups[0])
    tied = hf_rnn.RnnForCausalLM(
        tiny_config(num_layers=2, tie_word_embeddings=True, embedding_size=16, hidden_size=16)
    )
    assert layer_groups(tied)[-1] == ["lm_head.bias"]  # the tied output matrix is the embeddings', in group 0
    assert len(layer_groups(hf_rnn.RnnModel(tiny_config(num_layers=2)))) == 3  # no head


@pytest.mark.parametrize("optim", ["adamw_torch", "sgd"])
def test_discriminative_learning_rates_divide_by_the_decay_per_group_down(tmp_path, optim):
    """Each weight's lr is LR / DECAY ** (its group's depth); weight decay as the Trainer's (not on biases); the
    optimizer is --optim's; frozen weights are left out; the Trainer's schedule keeps the ratios."""
    model = _classifier()
    model.model.embeddings.weight.requires_grad_(False)
    trainer = _trainer(tmp_path, model, optim=optim, num_train_epochs=1)
    apply_finetuning(trainer, FinetuningArguments(layer_lr_decay=DECAY))
    optimizer = trainer.optimizer
    assert type(optimizer) is {"adamw_torch": torch.optim.AdamW, "sgd": torch.optim.SGD}[optim]
    names = {id(p): name for name, p in model.named_parameters()}
    seen = set()
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            name = names[id(parameter)]
            seen.add(name)
            assert group["lr"] == pytest.approx(LR / DECAY ** _depth(name)), name
            assert group["weight_decay"] == (0.0 if "bias" in name else 0.1), name
    assert seen == {name for name, p in model.named_parameters() if p.requires_grad}
    assert "model.embeddings.weight" not in seen
    trainer.add_callback(rates := _Rates())
    trainer.train()
    assert max(rates.first) < LR and max(rates.first) / min(rates.first) == pytest.approx(DECAY**3)


class _Rates(TrainerCallback):
    """The groups' learning rates after the first optimizer step (the linear schedule has lowered them)."""

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step == 1:
            self.first = [group["lr"] for group in optimizer.param_groups]


class _Gradients(TrainerCallback):
    """Per epoch: the weights that had a gradient at some optimizer step; and the weights after the first epoch."""

    def __init__(self, model):
        self.model, self.seen, self.after_first = model, {}, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        names = {n for n, p in self.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        self.seen.setdefault(int(state.epoch), set()).update(names)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.after_first is None:
            self.after_first = {n: p.detach().clone() for n, p in self.model.named_parameters()}


def test_gradual_unfreezing_trains_one_more_group_per_epoch_from_the_top(tmp_path):
    """Epoch 0 trains the head alone (the rest keeps its weights, weight decay and all), each later epoch one more
    group; weights frozen by the user stay frozen; all the others train again after training."""
    model = _classifier()
    model.model.char_encoder.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    recorder = _Gradients(model)
    trainer = _trainer(tmp_path, model, callbacks=[recorder])
    apply_finetuning(trainer, FinetuningArguments(gradual_unfreezing=True))
    trainer.train()
    names = [n for n, _ in model.named_parameters()]
    trained = {
        epoch: {n for n in names if _depth(n) <= epoch and not n.startswith("model.char_encoder.")}
        for epoch in range(4)
    }
    assert recorder.seen == trained
    for name in names:
        changed = not torch.equal(recorder.after_first[name], before[name])
        assert changed == (_depth(name) == 0), name
    assert all(p.requires_grad != n.startswith("model.char_encoder.") for n, p in model.named_parameters())


def test_gradual_unfreezing_resumes_at_its_epoch():
    """A run resumed in epoch 1 (state.epoch 1.5) trains the top two groups."""
    model = _classifier()
    callback = GradualUnfreezing(model)
    callback.on_train_begin(None, None, None)
    callback.on_epoch_begin(None, type("State", (), {"epoch": 1.5})(), None)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if _depth(n) <= 1
    }


@pytest.mark.parametrize("decay", [0.0, -2.6, math.inf, math.nan])
def test_a_decay_that_is_not_positive_is_refused(decay):
    with pytest.raises(ValueError, match=rf"--layer_lr_decay must be a finite positive number, got {decay}"):
        FinetuningArguments(layer_lr_decay=decay)
