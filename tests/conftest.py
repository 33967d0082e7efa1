"""Test environment: offline, with a throw-away HF_HOME, set before transformers is imported."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_EVALUATE_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    TOKENIZERS_PARALLELISM="false",
)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_rnn_test_home_")

import pytest  # noqa: E402
import torch  # noqa: E402

import hf_rnn  # noqa: E402
from hf_rnn.cells import CELLS as REGISTRY  # noqa: E402

CELLS = tuple(REGISTRY)  # every cell type gets the same behaviour tests
TORCH_CELLS = tuple(name for name, spec in REGISTRY.items() if issubclass(spec.kind, torch.nn.RNNBase))


def tiny_config(**overrides) -> hf_rnn.RnnConfig:
    """A small config that exercises stacking, dropout sites and labels."""
    values = dict(
        vocab_size=37,
        embedding_size=6,
        hidden_size=5,
        num_layers=2,
        pad_token_id=0,
        id2label={0: "A", 1: "B", 2: "C"},
        label2id={"A": 0, "B": 1, "C": 2},
    )
    values.update(overrides)
    return hf_rnn.RnnConfig(**values)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def run_launched(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True)` in a session of its own, killed whole on timeout: a
    launcher (torchrun, accelerate) killed alone would leave its worker processes running, waiting for their peer."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_without_hf_rnn(
    code: str, *args: str, cwd, timeout: float = 180, check: bool = True
) -> subprocess.CompletedProcess:
    """Run Python `code` with `args` (sys.argv[1:]) in a fresh process where `import hf_rnn` fails, from `cwd` and
    without PYTHONPATH: what a machine with only transformers and torch sees (remote code). `check`: assert it succeeded."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    hidden = 'import sys\nsys.modules["hf_rnn"] = None  # any `import hf_rnn` now raises ImportError\n'
    result = subprocess.run(
        [sys.executable, "-c", hidden + textwrap.dedent(code), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result
