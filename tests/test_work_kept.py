"""A user's work is never lost or silently corrupted by the example scripts: another run's output folder, a checkpoint
the resume cannot fully read, and flags that would train the wrong thing (issue 19, items 1-3)."""

import hashlib
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from example_scripts import SAMPLE, example_script, refused
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback, TrainingArguments

import hf_rnn
from hf_rnn.scripts.checkpoints import resolve_resume
from hf_rnn.scripts.launch import train_and_save
from hf_rnn.training.finetuning import FinetuningArguments

QUIET = ["--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none"]
TAGGER = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--embedding_size", "8", "--hidden_size", "8"]
TAGGER += ["--max_train_samples", "64", "--per_device_train_batch_size", "16", "--no_plots"]


def _main(monkeypatch, script: str, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [script, *args, *QUIET])
    example_script(script).main()


def _contents(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by path, and a hash of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# ---- item 1: another run's output folder ----------------------------------------------------------------------------


def test_a_run_into_another_runs_output_dir_is_refused_unless_told_to_overwrite_or_resume(tmp_path, monkeypatch):
    """Before: the second run rotated the first run's checkpoints away (--save_total_limit 1) and overwrote its model,
    exit 0. Now it is refused and the folder is left as it was; --overwrite_output_dir replaces the run (its
    checkpoints too, so that a later resume cannot pick one), --resume_from_checkpoint continues it."""
    out = tmp_path / "out"
    _main(monkeypatch, "run_tagging", *TAGGER, "--max_steps", "4", "--save_steps", "2", "--output_dir", str(out))
    first = _contents(out)
    again = [*TAGGER, "--max_steps", "2", "--save_steps", "1", "--save_total_limit", "1", "--output_dir", str(out)]
    with pytest.raises(ValueError, match=r"--output_dir .*out is not empty \(\d+ entries: checkpoint-4, checkpoint-2"):
        _main(monkeypatch, "run_tagging", *again, "--seed", "7")
    assert _contents(out) == first

    elsewhere = tmp_path / "elsewhere"  # a checkpoint of another folder does not continue the run in this one
    shutil.copytree(out / "checkpoint-2", elsewhere / "checkpoint-2")
    with pytest.raises(ValueError, match=r"is not empty"):
        _main(monkeypatch, "run_tagging", *again, "--resume_from_checkpoint", str(elsewhere / "checkpoint-2"))
    assert _contents(out) == first

    _main(monkeypatch, "run_tagging", *TAGGER, "--max_steps", "6", "--save_steps", "2", "--output_dir", str(out),
          "--resume_from_checkpoint", "True")  # fmt: skip
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6

    _main(monkeypatch, "run_tagging", *again, "--overwrite_output_dir", "true")
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-2"]  # the old 2, 4 and 6 removed
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["max_steps"] == 2


@pytest.mark.parametrize("script", ["run_lm", "run_classification"])
def test_the_other_scripts_refuse_another_runs_output_dir(tmp_path, monkeypatch, script):
    out = tmp_path / "out"
    (out / "checkpoint-9").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"the other run's model")
    with pytest.raises(ValueError, match=r"is not empty .* --overwrite_output_dir .* --resume_from_checkpoint True"):
        _main(monkeypatch, script, "--train_file", str(tmp_path / "absent"), "--output_dir", str(out))
    assert _contents(out) == {"model.safetensors": hashlib.sha256(b"the other run's model").hexdigest()}


def test_overwrite_output_dir_removes_a_symlinked_checkpoint_but_not_the_folder_it_points_to(tmp_path, monkeypatch):
    """Before: shutil.rmtree raised "OSError: Cannot call rmtree on a symbolic link" midway through the removal."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "checkpoint-2").mkdir(parents=True)
    (elsewhere / "keep").mkdir(parents=True)
    (elsewhere / "keep" / "weights").write_bytes(b"another run's")
    (out / "checkpoint-9").symlink_to(elsewhere / "keep")
    with pytest.raises(Exception) as caught:  # the training file is absent: the run stops after the removal
        _main(monkeypatch, "run_lm", "--train_file", str(tmp_path / "absent"), "--output_dir", str(out),
              "--overwrite_output_dir", "true")  # fmt: skip
    assert "symbolic link" not in str(caught.value)
    assert not list(out.glob("checkpoint-*"))
    assert (elsewhere / "keep" / "weights").read_bytes() == b"another run's"


def test_the_quickstart_refuses_another_runs_output_dir_and_make_demo_replaces_its_own(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.safetensors").write_bytes(b"the other run's model")
    monkeypatch.setattr(sys, "argv", ["quickstart.py", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit) as caught:
        example_script("quickstart").main()
    assert caught.value.code == 2 and "is not empty" in capsys.readouterr().err
    assert (tmp_path / "model.safetensors").read_bytes() == b"the other run's model"
    demo = next(
        line for line in (Path(__file__).parents[1] / "Makefile").read_text().splitlines() if "quickstart" in line
    )
    assert "--overwrite_output_dir" in demo.split()  # a second `make demo` replaces the first one's runs/quickstart


# ---- item 2: a checkpoint is complete when every file the resume reads is there and readable ----------------------


def _lm_trainer(output_dir: Path, max_steps: int) -> Trainer:
    torch.manual_seed(0)
    model = hf_rnn.RnnForCausalLM(tiny_config(dropout=0.3))
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(1, 37, (24, 7))]
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, save_steps=1, per_device_train_batch_size=4,
        learning_rate=0.01, report_to="none", use_cpu=True, disable_tqdm=True, seed=3,
    )  # fmt: skip
    return Trainer(model=model, args=args, train_dataset=rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A Trainer's own checkpoints after steps 1 to 4."""
    folder = tmp_path_factory.mktemp("trained")
    _lm_trainer(folder, 4).train()
    return folder


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _nan_weights(path: Path) -> None:
    weights = load_file(path)
    next(iter(weights.values()))[0] = math.nan
    save_file(weights, path, metadata={"format": "pt"})


def _trainer_state(**changes) -> callable:
    def change(path: Path) -> None:
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return change


DAMAGES = {  # file, what is done to it, what the refusal says
    "no optimizer": ("optimizer.pt", Path.unlink, "optimizer.pt: missing"),
    "no scheduler": ("scheduler.pt", Path.unlink, "scheduler.pt: missing"),
    "no rng state": ("rng_state.pth", Path.unlink, "rng_state.pth: missing"),
    "no config": ("config.json", Path.unlink, "config.json: missing"),
    "truncated optimizer": ("optimizer.pt", _truncate, "optimizer.pt: unreadable"),
    "truncated scheduler": ("scheduler.pt", _truncate, "scheduler.pt: unreadable"),
    "truncated rng state": ("rng_state.pth", _truncate, "rng_state.pth: unreadable"),
    "truncated config": ("config.json", _truncate, "config.json: unreadable"),
    "empty trainer state": ("trainer_state.json", lambda p: p.write_text("{}"), "trainer_state.json: no global_step"),
    "null trainer state": ("trainer_state.json", lambda p: p.write_text("null"), "trainer_state.json: no global_step"),
    "negative step": (
        "trainer_state.json",
        _trainer_state(global_step=-5),
        "trainer_state.json: global_step -5, not 2",
    ),
    "another step": ("trainer_state.json", _trainer_state(global_step=3), "trainer_state.json: global_step 3, not 2"),
    "unknown state": ("trainer_state.json", _trainer_state(colour=1), "trainer_state.json: not a trainer state"),
    "nan weights": ("model.safetensors", _nan_weights, r"model.safetensors: .* holds NaN or infinite values"),
}


def test_the_trainers_own_checkpoints_are_complete(trained):
    assert resolve_resume("True", str(trained)) == str(trained / "checkpoint-4")
    assert resolve_resume(str(trained / "checkpoint-3"), "elsewhere") == str(trained / "checkpoint-3")


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_checkpoint_the_resume_cannot_fully_read_is_skipped_or_refused_naming_the_file(
    trained, tmp_path, caplog, damage
):
    """Before: a missing optimizer, scheduler or RNG state resumed silently with fresh ones, NaN weights and a
    negative step resumed, and a truncated file failed inside torch naming no file, with no fallback."""
    name, spoil, reason = DAMAGES[damage]
    for step in (1, 2):
        shutil.copytree(trained / f"checkpoint-{step}", tmp_path / f"checkpoint-{step}")
    spoil(tmp_path / "checkpoint-2" / name)
    assert resolve_resume("True", str(tmp_path)) == str(tmp_path / "checkpoint-1")
    assert f"skipping {tmp_path / 'checkpoint-2'}, not a complete checkpoint" in caplog.text
    assert len([line for line in caplog.text.splitlines() if "skipping" in line]) == 1
    with pytest.raises(ValueError, match=rf"checkpoint-2: not a complete checkpoint \({reason}"):
        resolve_resume(str(tmp_path / "checkpoint-2"), str(tmp_path))


def test_a_run_resumed_past_a_checkpoint_without_its_optimizer_ends_as_the_uninterrupted_one(trained, tmp_path):
    """Before: the resume took checkpoint-3 and went on with a fresh AdamW: other final weights, exit 0."""
    for step in (2, 3):
        shutil.copytree(trained / f"checkpoint-{step}", tmp_path / f"checkpoint-{step}")
    (tmp_path / "checkpoint-3" / "optimizer.pt").unlink()
    trainer = _lm_trainer(tmp_path, 4)
    trainer.train(resume_from_checkpoint=resolve_resume("True", str(tmp_path)))
    expected = load_file(trained / "checkpoint-4" / "model.safetensors")
    for name, weight in trainer.model.state_dict().items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=0, msg=name)


# ---- item 3: flags that would train the wrong thing --------------------------------------------------------------

BAD_FLAGS = [
    ("run_lm", "--lr_decay", "-2"),  # before: a learning rate of -0.5 (gradient ascent), exit 0
    ("run_lm", "--lr_decay", "0.5"),  # before: the learning rate doubled every epoch
    ("run_lm", "--lr_decay", "0"),  # before: ZeroDivisionError
    ("run_lm", "--lr_decay", "nan"),
    ("run_lm", "--lr_decay", "inf"),
    ("run_lm", "--decay_start", "-5"),  # before: started at 1/64 of the rate
    ("run_lm", "--bptt", "0"),
    ("run_lm", "--bptt", "-5"),
    ("run_lm", "--init_range", "-1"),
    ("run_lm", "--max_train_samples", "0"),
    ("run_tagging", "--learning_rate", "nan"),
    ("run_tagging", "--learning_rate", "-1"),
    ("run_tagging", "--per_device_train_batch_size", "0"),
    ("run_tagging", "--per_device_eval_batch_size", "0"),
    ("run_tagging", "--gradient_accumulation_steps", "0"),
    ("run_tagging", "--num_train_epochs", "nan"),
    ("run_tagging", "--num_train_epochs", "0"),
    ("run_tagging", "--max_grad_norm", "nan"),
    ("run_tagging", "--weight_decay", "-1"),
    ("run_tagging", "--adam_beta1", "1.5"),
    ("run_tagging", "--seed", "-1"),
    ("run_tagging", "--data_seed", "4294967296"),
    ("run_tagging", "--dataloader_num_workers", "-1"),
    ("run_tagging", "--logging_steps", "nan"),
    ("run_tagging", "--max_length", "0"),
    ("run_classification", "--per_device_train_batch_size", "0"),
    ("run_classification", "--learning_rate", "inf"),
    ("run_classification", "--max_length", "-5"),
    ("run_classification", "--layer_lr_decay", "inf"),  # before: every group below the head at lr 0
    ("run_classification", "--layer_lr_decay", "nan"),
    ("run_lm", "--layer_lr_decay", "0"),
]


@pytest.mark.parametrize(("script", "flag", "value"), BAD_FLAGS)
def test_a_flag_out_of_its_range_is_a_usage_error_naming_it(tmp_path, monkeypatch, capsys, script, flag, value):
    message = refused(monkeypatch, capsys, script, "--train_file", "x", flag, value, output_dir=tmp_path / "out")
    assert (
        f"error: {flag} {value}" in message
        or f"error: {flag} {float(value)}" in message
        or (f"error: {flag} must be a finite positive number, got {float(value)}" in message)
    )


@pytest.mark.parametrize("decay", ["1e-300", "1e200"])
def test_a_layer_lr_decay_that_leaves_the_floats_is_refused_before_training(tmp_path, decay):
    """Before: 1e-300 ** 2 divided by zero; 1e200 ** 2 overflowed."""
    trainer = _lm_trainer(tmp_path, 1)
    with pytest.raises(
        ValueError, match=re.escape(f"--layer_lr_decay {float(decay)}: the layer group 2 below the head")
    ):
        train_and_save(trainer, FinetuningArguments(layer_lr_decay=float(decay)), None)
    assert trainer.state.global_step == 0


def test_an_error_during_gradual_unfreezing_leaves_no_weight_frozen(tmp_path):
    """Before: the head alone trained again; every other weight stayed frozen on the model object."""

    class Fail(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            raise RuntimeError("out of memory")

    trainer = _lm_trainer(tmp_path, 4)
    trainer.model.model.embeddings.requires_grad_(False)  # frozen by the user: stays frozen
    trainer.add_callback(Fail())
    with pytest.raises(RuntimeError, match="out of memory"):
        train_and_save(trainer, FinetuningArguments(gradual_unfreezing=True), None)
    frozen = {name for name, parameter in trainer.model.named_parameters() if not parameter.requires_grad}
    assert frozen == {"model.embeddings.weight"}
