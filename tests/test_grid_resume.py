"""Kill -9 safety: SIGKILL a running grid mid-way, relaunch it, and get exactly the uninterrupted result."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_grid_support import calls, diamond_grid

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import collect, execute, is_complete

TESTS = Path(__file__).resolve().parent
SLEEP = 0.3  # seconds each job spends between its partial file and its DONE marker


def start_driver(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "test_grid_support", str(root), "2", str(SLEEP)], cwd=TESTS,
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def partial_dirs(root: Path, jobs: list) -> set[str]:
    return {j.id for j in jobs if (root / j.out_dir).is_dir() and not is_complete(root, j)}


def kill_midway(proc: subprocess.Popen, root: Path, jobs: list, min_done: int) -> None:
    """SIGKILL the driver's whole process group once enough jobs finished and one is half-written."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = sum(is_complete(root, j) for j in jobs)
        if done >= min_done and partial_dirs(root, jobs):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


def call_counts(root: Path) -> collections.Counter:
    return collections.Counter((c["fn"], c.get("x", c.get("bias"))) for c in calls(root))


@pytest.mark.slow
def test_sigkill_then_relaunch_equals_an_uninterrupted_run(tmp_path):
    jobs = diamond_grid(sleep=SLEEP)
    assert len(jobs) == 30
    reference = execute(diamond_grid(sleep=0.0), tmp_path / "ref", ExecutorConfig(), progress=False)
    want = collect(tmp_path / "ref", diamond_grid(sleep=0.0))
    assert reference.ok and len(want) == 30

    root = tmp_path / "grid"
    kill_midway(start_driver(root), root, jobs, min_done=8)
    partial = partial_dirs(root, jobs)
    rows = collect(root, jobs)
    complete_ids = {r["job_id"] for r in rows}
    assert partial and 8 <= len(rows) < 30  # killed mid-way, with at least one half-written directory
    assert not partial & complete_ids  # partial output is never counted as done

    relaunch = start_driver(root)
    out, err = relaunch.communicate(timeout=240)
    assert relaunch.returncode == 0, err.decode()[-2000:]
    final = collect(root, jobs)
    strip = [{k: v for k, v in r.items() if k not in ("job_id", "out_dir")} for r in final]
    assert strip == [{k: v for k, v in r.items() if k not in ("job_id", "out_dir")} for r in want]
    assert len({r["job_id"] for r in final}) == 30  # no row lost, none duplicated
    counts = call_counts(root)
    for job in jobs:
        key = (job.fn.split(":")[1], job.kwargs.get("x", job.kwargs.get("bias")))
        assert counts[key] >= 1, key
        if job.id in complete_ids:  # finished before the kill: never run again
            assert counts[key] == 1, key
    assert not (root / "failures.json").exists()
