"""What the tests of the example scripts share: the scripts as modules, and ways to run them (in a subprocess or in
this process)."""

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_launched

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "hf_rnn" / "samples"
# a small, fast tagger for the end-to-end runs of the example scripts
TINY_TAGGER = ["--learning_rate", "0.01", "--per_device_train_batch_size", "16", "--embedding_size", "32"]
TINY_TAGGER += ["--hidden_size", "32", "--save_strategy", "no"]


@functools.cache
def example_script(name: str):
    """An example script as a module (the scripts are files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QUIET = ("--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true")


def run_script(
    script: str,
    *args: str,
    launcher: tuple = (),
    env: dict | None = None,
    flags: tuple = QUIET,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run an example script, by default on the CPU without logging integrations; `launcher` prefixes e.g. torchrun.
    OMP_NUM_THREADS is left to `env`, so that the scripts' own default (one thread) applies."""
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, **(env or {})}
    command = [*(launcher or (sys.executable,)), str(ROOT / "examples" / script), *args, *flags]
    result = run_launched(command, timeout=300, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def logged_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def refused(monkeypatch, capsys, script: str, *args: str, output_dir: Path) -> str:
    """Call an example script's `main()` in this process (no subprocess start-up) on input it must refuse; returns
    the error (a parser error's message, or the ValueError's), once sure that output_dir was not created."""
    monkeypatch.setattr(sys, "argv", [script, *args, "--output_dir", str(output_dir), "--use_cpu", "true"])
    with pytest.raises((ValueError, SystemExit)) as caught:
        example_script(script).main()
    assert not output_dir.exists()
    if caught.type is SystemExit:
        assert caught.value.code == 2  # argparse's usage error
        return capsys.readouterr().err
    return str(caught.value)


def run_main(monkeypatch, script: str, *args: str) -> None:
    """Run an example script's `main()` in this process: a subprocess would spend most of its time importing."""
    quiet = ["--use_cpu", "true", "--disable_tqdm", "true", "--save_strategy", "no", "--report_to", "none"]
    monkeypatch.setattr(sys, "argv", [script, *args, *quiet])
    example_script(script).main()


def conll_sentences(path: Path) -> list[list[list[str]]]:
    return [[line.split("\t") for line in block.splitlines()] for block in path.read_text().strip().split("\n\n")]
