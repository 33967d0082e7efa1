"""Resuming the example scripts: from a checkpoint as if never interrupted, and past an interrupted save."""

import os
import shutil
from pathlib import Path

import pytest
import torch
from example_scripts import (
    SAMPLE,
    run_script,
)

import hf_rnn
from hf_rnn.scripts.checkpoints import last_complete_checkpoint, resolve_resume

RESUMABLE_TAGGER = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--learning_rate", "0.01"]
RESUMABLE_TAGGER += ["--per_device_train_batch_size", "32", "--embedding_size", "16", "--hidden_size", "16"]
RESUMABLE_TAGGER += ["--dropout", "0.3", "--use_crf", "--seed", "3"]


def _same_weights(folder: Path, reference: Path) -> None:
    expected = hf_rnn.RnnForTokenClassification.from_pretrained(reference).state_dict()
    got = hf_rnn.RnnForTokenClassification.from_pretrained(folder).state_dict()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    common = [*RESUMABLE_TAGGER, "--num_train_epochs", "2", "--save_strategy", "epoch"]
    run_script("run_tagging.py", *common, "--output_dir", str(tmp_path / "full"))
    checkpoint = sorted((tmp_path / "full").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    run_script(
        "run_tagging.py",
        *common,
        "--output_dir",
        str(tmp_path / "resumed"),
        "--resume_from_checkpoint",
        str(checkpoint),
    )
    _same_weights(tmp_path / "resumed", tmp_path / "full")


# ---- interrupted training: resume from the last complete checkpoint ------------------------------------------------


def _checkpoint(folder: Path, max_shard_size: int | str = "50GB") -> Path:
    """A checkpoint as Trainer._save_checkpoint leaves it: the model's files first, then the optimizer, scheduler and
    random states, trainer_state.json last (its global_step the N of checkpoint-N)."""
    import random

    import numpy as np
    from transformers import TrainerState

    model = hf_rnn.RnnForCausalLM(hf_rnn.RnnConfig(vocab_size=10, embedding_size=4, hidden_size=4))
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(torch.optim.lr_scheduler.ConstantLR(optimizer).state_dict(), folder / "scheduler.pt")
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(rng, folder / "rng_state.pth")
    step = int(folder.name.split("-")[1]) if folder.name.startswith("checkpoint-") else 1
    TrainerState(global_step=step).save_to_json(str(folder / "trainer_state.json"))
    return folder


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


INTERRUPTIONS = {  # what a SIGKILL during the save may leave
    "no trainer state": lambda folder: (folder / "trainer_state.json").unlink(),
    "no weights": lambda folder: (folder / "model.safetensors").unlink(),
    "truncated weights": lambda folder: _truncate(folder / "model.safetensors"),
}


@pytest.mark.parametrize("interruption", INTERRUPTIONS)
def test_the_last_complete_checkpoint_skips_an_interrupted_save(tmp_path, caplog, interruption):
    from transformers.trainer_utils import get_last_checkpoint

    for step in (4, 10, 20):  # ordered by step, not by name
        _checkpoint(tmp_path / f"checkpoint-{step}")
    INTERRUPTIONS[interruption](tmp_path / "checkpoint-20")
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")  # what transformers would pick
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert f"skipping {tmp_path / 'checkpoint-20'}" in caplog.text
    for value in ("True", "true", str(tmp_path)):  # the last complete one in output_dir, or in the given folder
        assert resolve_resume(value, str(tmp_path)) == str(tmp_path / "checkpoint-10")


def test_a_checkpoint_folder_of_any_name_resumes_from_itself(tmp_path):
    """E.g. the `last-checkpoint` that hub_strategy="checkpoint" keeps; an incomplete one is refused."""
    _checkpoint(tmp_path / "last-checkpoint")
    assert resolve_resume(str(tmp_path / "last-checkpoint"), "elsewhere") == str(tmp_path / "last-checkpoint")
    (tmp_path / "last-checkpoint" / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match=r"last-checkpoint: not a complete checkpoint \(trainer_state\.json"):
        resolve_resume(str(tmp_path / "last-checkpoint"), "elsewhere")


def test_a_sharded_checkpoint_is_complete_when_every_shard_opens(tmp_path):
    shards = sorted(_checkpoint(tmp_path / "checkpoint-3", max_shard_size=300).glob("model-*.safetensors"))
    assert len(shards) > 1 and last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    _truncate(shards[-1])
    assert last_complete_checkpoint(tmp_path) is None


def test_resuming_from_an_interrupted_or_absent_checkpoint_is_an_error(tmp_path):
    _truncate(_checkpoint(tmp_path / "checkpoint-2") / "model.safetensors")
    with pytest.raises(ValueError, match=r"checkpoint-2: not a complete checkpoint \(model\.safetensors"):
        resolve_resume(str(tmp_path / "checkpoint-2"), str(tmp_path))
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint True: no complete checkpoint in .*checkpoint-2"):
        resolve_resume("True", str(tmp_path))
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint .*nowhere: no such folder"):
        resolve_resume(str(tmp_path / "nowhere"), str(tmp_path))
    assert resolve_resume(None, str(tmp_path)) is None and resolve_resume("False", str(tmp_path)) is None


def test_an_interrupted_run_resumes_from_its_last_complete_checkpoint(tmp_path):
    """Killed while saving checkpoint-4: the rerun skips it, resumes from checkpoint-2 and ends as the full run."""
    common = [*RESUMABLE_TAGGER, "--max_steps", "6", "--save_steps", "2"]
    run_script("run_tagging.py", *common, "--output_dir", str(tmp_path / "full"))
    for step in (2, 4):
        shutil.copytree(tmp_path / "full" / f"checkpoint-{step}", tmp_path / "killed" / f"checkpoint-{step}")
    _truncate(tmp_path / "killed" / "checkpoint-4" / "model.safetensors")
    result = run_script(
        "run_tagging.py", *common, "--output_dir", str(tmp_path / "killed"), "--resume_from_checkpoint", "True"
    )
    assert f"skipping {tmp_path / 'killed' / 'checkpoint-4'}" in result.stderr
    _same_weights(tmp_path / "killed", tmp_path / "full")
