"""A generation process killed with SIGKILL mid-run resumes without redoing, losing or duplicating items."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import polars as pl
import pytest
from openai_server import FaultServer, write_examples

from rationale_sft.rundir import is_done

N_ITEMS = 30


def _cli(examples, out, server, *extra):
    return [sys.executable, "-c", "import sys; from rationale_sft.cli import main; sys.exit(main())",
            "rationales", "generate", "--examples", str(examples),
            "--out", str(out), "--backend", "openai", "--styles", "freeform,stepwise", "model=fault-server",
            f"base_url={server.base_url}", "concurrency=2", *extra]


def _cached(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM rationales").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    examples = write_examples(tmp_path / "examples.parquet", ["ok"] * (N_ITEMS // 2))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FaultServer(delay_s=0.05) as server:
        killed = tmp_path / "killed"
        proc = subprocess.Popen(_cli(examples, killed, server), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _cached(killed / "cache" / "rationales.sqlite") < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        done_before = _cached(killed / "cache" / "rationales.sqlite")
        assert 6 <= done_before < N_ITEMS and not is_done(killed)
        calls_before = sum(server.calls.values())

        subprocess.run(_cli(examples, killed, server), env=env, check=True, capture_output=True)
        resumed_calls = sum(server.calls.values()) - calls_before
        subprocess.run(_cli(examples, tmp_path / "clean", server), env=env, check=True, capture_output=True)

    assert resumed_calls == N_ITEMS - done_before  # nothing finished was asked for again
    assert _cached(killed / "cache" / "rationales.sqlite") == N_ITEMS
    resumed = pl.read_parquet(killed / "rationales.parquet")
    clean = pl.read_parquet(tmp_path / "clean" / "rationales.parquet")
    assert resumed.height == N_ITEMS and resumed["cache_key"].n_unique() == N_ITEMS
    assert resumed.equals(clean)
    assert is_done(killed)
