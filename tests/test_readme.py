"""Every ```python block of README.md runs as written, each in a fresh interpreter, so that the snippets cannot rot.

Each block runs in its own subprocess, in an empty working folder with an empty HF_HOME, offline (HF_HUB_OFFLINE=1
and the other offline variables) and with one torch thread. A block using `LoopbackHub` runs online instead, as a
user would run it, but may reach only 127.0.0.1: in every block, a connection to (or a name lookup of) any other
address is refused and recorded, and a recorded attempt fails the test even when the block swallowed the error.
A block fails its test when it raises (exit status not 0).

A block preceded by `<!-- readme-test: slow -->` is marked slow (run by `make test-slow`). The blocks run two at a
time (one per core of the 2-core development machine): the first test starts them all.
"""

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^(?P<mark><!-- readme-test: (?P<tag>\w+) -->\n)?```python\n(?P<code>.*?)^```$", re.M | re.S)
HEADING = re.compile(r"^#+ (.+)$", re.M)
OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")
TIMEOUT = 300  # seconds per block; on an idle 2-core machine each takes well under 30

# Installed before the block runs (the block itself runs as __main__ via runpy, so its tracebacks name block.py).
RUNNER = """
import os, runpy, socket, sys

LOG, LOCAL = os.environ.pop("README_TEST_NETWORK_LOG"), {"127.0.0.1", "::1", "localhost"}

def refuse(what):
    with open(LOG, "a") as log:
        log.write(what + "\\n")
    raise ConnectionRefusedError(f"test_readme: only 127.0.0.1 may be reached, not {what}")

def guarded(original, check):
    def wrapper(*args, **kwargs):
        check(*args)
        return original(*args, **kwargs)
    return wrapper

def check_connect(sock, address, *rest):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
        refuse(f"a connection to {address[:2]}")

def check_lookup(host, *rest):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in LOCAL:
        refuse(f"a lookup of {name!r}")

socket.socket.connect = guarded(socket.socket.connect, check_connect)
socket.socket.connect_ex = guarded(socket.socket.connect_ex, check_connect)
socket.getaddrinfo = guarded(socket.getaddrinfo, check_lookup)
socket.gethostbyname = guarded(socket.gethostbyname, check_lookup)
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def readme_blocks(text: str) -> list:
    """(id, code, tag) for every ```python block, the id naming its position and the heading it is under."""
    blocks = []
    for number, match in enumerate(FENCE.finditer(text), 1):
        headings = HEADING.findall(text, 0, match.start())
        where = re.sub(r"[^a-z0-9]+", "-", headings[-1].lower()).strip("-") if headings else "top"
        blocks.append((f"{number}-{where}", match["code"], match["tag"]))
    return blocks


def uses_loopback_hub(code: str) -> bool:
    return "LoopbackHub(" in code


def run_block(code: str, folder: Path, timeout: int = TIMEOUT) -> tuple[subprocess.CompletedProcess, str]:
    """Run `code` as a fresh `python block.py` in `folder`; returns the process and the refused network attempts."""
    work, home = folder / "work", folder / "hf_home"
    work.mkdir(parents=True)
    home.mkdir()
    (folder / "block.py").write_text(code)
    (folder / "runner.py").write_text(RUNNER)
    log = folder / "network.log"
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE + ("HF_ENDPOINT", "PYTHONPATH")}
    env.update(
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        README_TEST_NETWORK_LOG=str(log),
    )
    if not uses_loopback_hub(code):
        env.update(dict.fromkeys(OFFLINE, "1"))
    result = subprocess.run(
        [sys.executable, str(folder / "runner.py"), str(folder / "block.py")],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, log.read_text() if log.exists() else ""


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def started(tmp_path_factory, request):
    """The blocks that this session runs, started two at a time; each test waits for its own."""
    runs = [item for item in request.session.items if getattr(item, "originalname", None) == "test_block_runs"]
    wanted = {item.callspec.params["block"][0] for item in runs}
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {
        name: pool.submit(run_block, code, tmp_path_factory.mktemp(name)) for name, code, _ in BLOCKS if name in wanted
    }
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize(
    "block",
    [pytest.param(block, id=block[0], marks=[pytest.mark.slow] if block[2] == "slow" else []) for block in BLOCKS],
)
def test_block_runs(block, started):
    name, code, _ = block
    result, refused = started[name].result()
    assert result.returncode == 0, f"README block {name} failed:\n{code}\n--- stderr ---\n{result.stderr[-4000:]}"
    assert not refused, f"README block {name} tried to leave 127.0.0.1:\n{refused}"


def test_the_readme_has_the_blocks_it_should():
    names = [name for name, _, _ in BLOCKS]
    assert len(names) >= 6, names
    assert any(uses_loopback_hub(code) for _, code, _ in BLOCKS)  # run online, against its own server only
    for name, code, _ in BLOCKS:
        assert "shared/data" not in code, f"{name} needs data a user does not have; use hf_rnn.data.load_sample_pos()"
        assert not re.search(r"^\s*\.\.\.\s*$", code, re.M), f"{name} has a `...` line: it cannot run as written"


def test_a_failing_block_fails_and_a_network_attempt_is_caught(tmp_path):
    result, _ = run_block("raise ValueError('broken snippet')", tmp_path / "raises", timeout=60)
    assert result.returncode != 0 and "broken snippet" in result.stderr
    code = (
        "import socket\ntry:\n    socket.create_connection(('198.51.100.1', 443), timeout=1)\n"
        "except OSError:\n    pass  # swallowed, as libraries do\n"
    )
    result, refused = run_block(code, tmp_path / "network", timeout=60)
    assert result.returncode == 0 and "198.51.100.1" in refused
    code = "import socket\nsocket.getaddrinfo('huggingface.co', 443)\n"
    result, refused = run_block(code, tmp_path / "lookup", timeout=60)
    assert result.returncode != 0 and "huggingface.co" in refused


def test_blocks_are_found_with_their_tags():
    text = "# A\n```python\nx = 1\n```\n## B c\n<!-- readme-test: slow -->\n```python\ny = 2\n```\n```bash\nls\n```\n"
    assert readme_blocks(text) == [("1-a", "x = 1\n", None), ("2-b-c", "y = 2\n", "slow")]
