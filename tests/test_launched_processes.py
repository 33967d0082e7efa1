"""The tests' process hygiene: whatever a launched command starts dies with it, even a worker that called setsid, and
the test session reports (and kills) any process that outlives it."""

import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import run_launched

HERE = Path(__file__).parent


def running(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds `marker` (zombies are dead: they only wait to be reaped)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(process.info["cmdline"] or []) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def launcher(tmp_path: Path, marker: str, hang: bool) -> list[str]:
    """A launcher that starts a worker in a session of its own (setsid, as torchrun's workers may), writes a file
    once the worker runs, then hangs or exits at once, leaving the worker behind."""
    code = f"""
        import subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)", {marker!r}])
        open({str(tmp_path / "started")!r}, "w").close()
        time.sleep(600 if {hang} else 0)
    """
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_worker_in_its_own_session_dies_with_a_launcher_that_times_out(tmp_path):
    marker = f"worker-{uuid.uuid4()}"
    with pytest.raises(subprocess.TimeoutExpired):
        run_launched(launcher(tmp_path, marker, hang=True), timeout=4)
    assert (tmp_path / "started").exists()  # the worker did start
    assert running(marker) == []


def test_a_worker_in_its_own_session_dies_with_a_launcher_that_exits(tmp_path):
    marker = f"worker-{uuid.uuid4()}"
    result = run_launched(launcher(tmp_path, marker, hang=False), timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "started").exists()
    assert running(marker) == []


@pytest.mark.slow  # a whole pytest session, importing torch: ~8 s
def test_a_process_that_outlives_the_test_session_fails_it_and_is_killed(tmp_path):
    marker = f"leftover-{uuid.uuid4()}"
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leak.py").write_text(
        "import subprocess, sys\n\n\ndef test_leaks():\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}])\n"
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    result = run_launched(command, timeout=120, cwd=tmp_path)
    assert result.returncode != 0 and "outlived them (now killed)" in result.stdout, result.stdout[-3000:]
    assert marker in result.stdout  # named by its command line
    assert running(marker) == []
