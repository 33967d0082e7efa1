"""Loss scaling: the Trainer's gradient accumulation and multi-process runs must train exactly like one big batch."""

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_launched, tiny_config
from trainer_run import train

import hf_rnn

HERE = Path(__file__).parent


def test_token_loss_uses_num_items_in_batch():
    model = hf_rnn.RnnForTokenClassification(tiny_config()).eval()
    ids = torch.randint(1, 37, (3, 5))
    labels = torch.randint(0, 3, (3, 5))
    labels[0, 3:] = -100
    logits = model(ids).logits
    token_losses = torch.nn.functional.cross_entropy(logits.view(-1, 3), labels.view(-1), reduction="none")
    torch.testing.assert_close(model(ids, labels=labels).loss, token_losses.sum() / 13)
    torch.testing.assert_close(
        model(ids, labels=labels, num_items_in_batch=torch.tensor(40)).loss, token_losses.sum() / 40
    )


def test_crf_loss_is_the_summed_sequence_nll_per_labelled_token():
    config = tiny_config(use_crf=True, bidirectional=True)
    model = hf_rnn.RnnForTokenClassification(config).eval()
    ids = torch.randint(1, 37, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    labels = torch.randint(0, 3, (3, 5)).masked_fill(mask == 0, -100)
    labels[0, 4] = -100  # an unlabelled real token: the chain skips it
    out = model(ids, attention_mask=mask, labels=labels)
    scored = (mask == 1) & (labels != -100)
    nll = -sum(
        model.crf.log_likelihood(out.emissions[row : row + 1, scored[row]], labels[row : row + 1, scored[row]]).sum()
        for row in range(3)
    )
    torch.testing.assert_close(out.loss, nll / scored.sum())
    torch.testing.assert_close(model(ids, attention_mask=mask, labels=labels, num_items_in_batch=20).loss, nll / 20)
    assert torch.equal(out.predictions, model.crf.decode(out.emissions, scored))  # the loss's chain


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("head", ["tagger", "crf", "lm"])
def test_gradient_accumulation_equals_one_big_batch(head, tmp_path):
    train(str(tmp_path / "big"), head, batch_size=8, accumulation=1)
    train(str(tmp_path / "accumulated"), head, batch_size=4, accumulation=2)
    big, accumulated = _weights(tmp_path / "big"), _weights(tmp_path / "accumulated")
    _assert_same_weights(big, accumulated)


@pytest.mark.parametrize("head", ["tagger", "crf", "lm"])
def test_two_processes_equal_one_process_with_the_same_global_batch(head, tmp_path):
    """Both runs are fresh processes with one thread each, so only the process count differs. Each takes ~10 s on an
    idle 2-core machine and ~60 s beside 3 other CPU-bound jobs: 600 s bounds a run that hangs, not a slow one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(HERE)}
    script = str(HERE / "trainer_run.py")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command in (
        [*launch, script, str(tmp_path / "ddp"), head, "4", "1"],
        [sys.executable, script, str(tmp_path / "single"), head, "8", "1"],
    ):
        result = run_launched(command, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_weights(_weights(tmp_path / "single"), _weights(tmp_path / "ddp"))
