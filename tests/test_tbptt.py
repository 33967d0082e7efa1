"""hf_rnn.training.tbptt: TBPTT windows, the carried state, Zaremba et al.'s schedule, against a hand-written loop."""

import math

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

import hf_rnn
from hf_rnn.training.tbptt import BpttWindows, TbpttTrainer, zaremba_schedule

BPTT, BATCH = 10, 4


def _arguments(tmp_path, **overrides) -> TrainingArguments:
    values = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        train_sampling_strategy="sequential",
        save_strategy="no",
        logging_steps=1,
    )
    return TrainingArguments(**{**values, **overrides})


def _model(**overrides) -> hf_rnn.RnnForCausalLM:
    torch.manual_seed(0)
    values = dict(vocab_size=50, embedding_size=8, hidden_size=8, num_layers=2, forget_bias=0.0)
    config = hf_rnn.RnnConfig(**{**values, **overrides})
    return hf_rnn.RnnForCausalLM(config)


def _windows() -> BpttWindows:
    return BpttWindows(torch.randint(1, 50, (1001,), generator=torch.Generator().manual_seed(0)), BATCH, 1, BPTT)


def old_lr(lr: float, epoch: int, decay_start: int, decay: float) -> float:
    """The lr that examples/run_lm.py's callback set at each epoch start before the schedule became a scheduler."""
    return lr / decay ** max(0, epoch - decay_start + 1)


class _LearningRates(TrainerCallback):
    """The lr each optimizer step used."""

    def __init__(self):
        self.used = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.used.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("processes", [1, 2])
def test_bptt_batches_continue_each_row(processes):
    """Concatenating one process's batches row by row gives back contiguous slices of the stream."""
    ids = torch.arange(1000)
    data = BpttWindows(ids, batch_size=3, processes=processes, bptt=7)
    rows = 3 * processes
    global_batches = [[data[g * 3 + i] for i in range(3)] for g in range(len(data) // 3)]
    for process in range(processes):
        mine = global_batches[process::processes]  # what accelerate gives this process
        for i in range(3):
            row = torch.cat([batch[i]["input_ids"] for batch in mine])
            targets = torch.cat([batch[i]["shift_labels"] for batch in mine])
            start = row[0].item()
            assert torch.equal(row, torch.arange(start, start + len(row)))
            assert torch.equal(targets, row + 1)
    starts = {batch[i]["input_ids"][0].item() for batch in global_batches[:processes] for i in range(3)}
    assert len(starts) == rows  # every row is owned by exactly one process and one batch slot


def test_tbptt_evaluation_equals_one_pass_over_each_row(tmp_path):
    """Carried state: evaluating window by window gives the loss of one long forward over every row."""
    model = _model().eval()
    data = _windows()
    trainer = TbpttTrainer(model=model, args=_arguments(tmp_path), eval_dataset=data)
    metrics = trainer.evaluate()
    with torch.no_grad():
        span = slice(0, data.windows * BPTT)
        whole = model(data.inputs[:, span].contiguous(), shift_labels=data.targets[:, span].contiguous()).loss
    assert metrics["eval_loss"] == pytest.approx(whole.item(), rel=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(whole.item()), rel=1e-5)


@pytest.mark.parametrize("eval_batch_size", [1, 2, 8])
def test_evaluating_with_another_batch_size_keeps_each_rows_state(tmp_path, eval_batch_size):
    """Windows cut for 4 rows, evaluated with a batch size that divides (or is a multiple of) 4, then predicted: each
    run equals the step-by-step loop over the windows, every row carrying only its own state from a zero start."""
    model, data = _model().eval(), _windows()
    cache, losses = None, []
    with torch.no_grad():
        for window in range(data.windows):
            span = slice(window * BPTT, (window + 1) * BPTT)
            outputs = model(data.inputs[:, span], shift_labels=data.targets[:, span], cache=cache, use_cache=True)
            cache, losses = outputs.cache, [*losses, outputs.loss.item()]
    expected = sum(losses) / len(losses)
    args = _arguments(tmp_path, per_device_eval_batch_size=eval_batch_size)
    trainer = TbpttTrainer(model=model, args=args, eval_dataset=data)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-6)
    assert trainer.predict(data).metrics["test_loss"] == pytest.approx(expected, rel=1e-6)


def test_training_with_another_batch_size_is_refused(tmp_path):
    trainer = TbpttTrainer(
        model=_model(), args=_arguments(tmp_path, per_device_train_batch_size=2, max_steps=1), train_dataset=_windows()
    )
    with pytest.raises(ValueError, match="the windows hold 4 rows per batch, the train batch size is 2"):
        trainer.train()


@pytest.mark.parametrize("loss_scale", [1.0, BPTT])
def test_a_character_model_reports_bits_per_character(tmp_path, loss_scale):
    """eval_bpc: the NLL of every target character, in bits, averaged, computed here from the logits of one long
    forward; the loss scale (Zaremba et al.'s) does not change it. A word model reports none."""
    data = _windows()
    model = _model(char_level=True).eval()
    args = _arguments(tmp_path)
    metrics = TbpttTrainer(model=model, args=args, eval_dataset=data, loss_scale=loss_scale).evaluate()
    with torch.no_grad():
        span = slice(0, data.windows * BPTT)
        logits = model(data.inputs[:, span].contiguous()).logits
    targets = data.targets[:, span]
    nll = -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # nats, one per character
    assert metrics["eval_bpc"] == pytest.approx((nll / math.log(2)).mean().item(), rel=1e-5)
    assert "eval_bpc" not in TbpttTrainer(model=_model().eval(), args=args, eval_dataset=data).evaluate()


@pytest.mark.parametrize("steps_per_epoch, decay_start, decay", [(7, 4, 2.0), (1, 1, 1.2), (25, 0, 3.0)])
def test_the_zaremba_schedule_gives_the_old_learning_rates(steps_per_epoch, decay_start, decay):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.7)
    schedule = zaremba_schedule(optimizer, steps_per_epoch, decay_start, decay)
    for step in range(8 * steps_per_epoch):
        expected = old_lr(0.7, step // steps_per_epoch, decay_start, decay)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12), step
        optimizer.step()
        schedule.step()


def test_tbptt_training_equals_a_hand_written_loop(tmp_path):
    """Zaremba et al.'s recipe through the Trainer (summed window loss, SGD, clipping, the state carried and reset each
    epoch, the lr decayed from the second epoch) takes the same steps as the loop written out."""
    data, epochs, decay_start, decay = _windows(), 3, 1, 2.0
    arguments = _arguments(tmp_path, learning_rate=1.0, optim="sgd", max_grad_norm=5.0, num_train_epochs=epochs)
    trainer = TbpttTrainer(
        model=_model(), args=arguments, train_dataset=data, loss_scale=BPTT, decay_start=decay_start, lr_decay=decay
    )
    learning_rates = _LearningRates()
    trainer.add_callback(learning_rates)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    model = _model().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    expected_losses, expected_rates = [], []
    for epoch in range(epochs):
        cache = None
        for group in optimizer.param_groups:
            group["lr"] = old_lr(1.0, epoch, decay_start, decay)
        for window in range(data.windows):
            span = slice(window * BPTT, (window + 1) * BPTT)
            outputs = model(
                input_ids=data.inputs[:, span], shift_labels=data.targets[:, span], cache=cache, use_cache=True
            )
            cache = outputs.cache.detach()
            optimizer.zero_grad()
            (outputs.loss * BPTT).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            expected_losses.append(outputs.loss.item() * BPTT)
            expected_rates.append(optimizer.param_groups[0]["lr"])
    assert learning_rates.used == pytest.approx(expected_rates, rel=1e-12)
    assert losses == pytest.approx(expected_losses, rel=1e-5)


def test_the_decay_counts_epochs_in_optimizer_steps(tmp_path):
    """With gradient accumulation an epoch of 25 windows is ceil(25 / 3) = 9 optimizer steps."""
    data = _windows()
    assert data.windows == 25
    arguments = _arguments(tmp_path, optim="sgd", learning_rate=1.0, num_train_epochs=4, gradient_accumulation_steps=3)
    trainer = TbpttTrainer(model=_model(), args=arguments, train_dataset=data, decay_start=2, lr_decay=2.0)
    learning_rates = _LearningRates()
    trainer.add_callback(learning_rates)
    trainer.train()
    assert learning_rates.used == [old_lr(1.0, step // 9, 2, 2.0) for step in range(36)]


def test_a_resumed_run_continues_the_schedule(tmp_path):
    """The schedule is the scheduler's state, saved in checkpoints: resuming mid-epoch keeps each step's lr."""
    data = _windows()

    def run(output_dir, resume: str | None = None, **overrides) -> list[float]:
        arguments = _arguments(output_dir, optim="sgd", learning_rate=1.0, num_train_epochs=3, **overrides)
        trainer = TbpttTrainer(model=_model(), args=arguments, train_dataset=data, decay_start=1, lr_decay=2.0)
        learning_rates = _LearningRates()
        trainer.add_callback(learning_rates)
        trainer.train(resume_from_checkpoint=resume)
        return learning_rates.used

    full = run(tmp_path / "full", save_strategy="steps", save_steps=40)  # past the middle of the second epoch
    resumed = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-40"))
    assert resumed == full[40:] and len(set(resumed)) == 2


def test_shuffled_windows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="train_sampling_strategy='sequential', not 'random'"):
        TbpttTrainer(model=_model(), args=_arguments(tmp_path, train_sampling_strategy="random"))
