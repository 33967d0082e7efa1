"""Test environment: offline, with a throw-away HF_HOME, set before transformers is imported."""

import contextlib
import ctypes
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_EVALUATE_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    TOKENIZERS_PARALLELISM="false",
)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_rnn_test_home_")

import psutil  # noqa: E402
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


def _become_subreaper() -> None:
    """Make this process the one that descendants orphaned by their parent's death are re-parented to (Linux's
    PR_SET_CHILD_SUBREAPER), instead of init: a worker whose launcher died, even in a session of its own (setsid),
    then stays findable as a child of the test session, and killable."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # 36 = PR_SET_CHILD_SUBREAPER


_become_subreaper()


def _descendants(process: psutil.Process) -> set[psutil.Process]:
    try:
        return set(process.children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def _kill(processes: set[psutil.Process]) -> None:
    """SIGKILL each still-running process and reap those that are this process's children (no zombies)."""
    alive = []
    for process in processes:
        try:
            process.kill()  # psutil checks the pid still names the process it recorded (no reused pid)
            alive.append(process)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=30)


def run_launched(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True)` that leaves no process behind: on timeout, on an
    error, and after a normal exit, every process it started is killed. A launcher (torchrun, accelerate) killed alone
    would leave its workers running, waiting for their peer; a worker may also have left the launcher's process group
    and session (setsid). So the tree is walked while it runs (every descendant, whatever its session), and workers
    orphaned by the launcher come back to this process (`_become_subreaper`)."""
    me = psutil.Process()
    children_before = set(me.children())
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    ) as process:
        launcher, tree = psutil.Process(process.pid), set[psutil.Process]()

        def kill_all() -> None:
            tree.update(_descendants(launcher))
            if process.poll() is None:
                process.kill()
                process.wait()  # now its orphans are this process's children
            for orphan in set(me.children()) - children_before - {launcher}:
                tree.update({orphan, *_descendants(orphan)})
            _kill(tree)

        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    stdout, stderr = process.communicate(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
                    break
                except subprocess.TimeoutExpired:
                    tree.update(_descendants(launcher))
                    if process.poll() is not None:  # it exited, and what it left behind holds its output open
                        kill_all()
                        stdout, stderr = process.communicate()
                        break
                    if time.monotonic() >= deadline:
                        raise
        finally:
            kill_all()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="session", autouse=True)
def _no_process_outlives_the_session():
    """After the last test: no process started by the test session is left running (killed, then reported)."""
    yield
    leftovers = _descendants(psutil.Process())
    if leftovers:
        described = []
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                described.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
        _kill(leftovers)
        pytest.fail(f"{len(leftovers)} process(es) started by the tests outlived them (now killed): {described}")


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
