"""Faults on a finished smoke grid: copied and moved roots, truncated and altered artifacts, stale failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from test_experiment_grid import METRICS, grid

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "smoke"
    proc = grid(out, "--no-report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def results(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "results.parquet").select(METRICS).sort("run_id")


def text_files(root: Path) -> dict[Path, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".yaml", ".txt", ".md", ".html", ""):
            out[p] = p.read_text(errors="replace")
    return out


def sft_run(root: Path) -> Path:
    table = pl.read_parquet(root / "results.parquet")
    return root / table.filter(pl.col("arm") == "label_only")["run_path"][0]


def test_a_copied_grid_never_touches_the_original_and_a_moved_one_works(finished, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(finished, original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    away = tmp_path / "moved-away"
    original.rename(away)  # the original path no longer exists
    leaks = [str(p.relative_to(copy)) for p, text in text_files(copy).items() if str(original) in text]
    assert not leaks, f"run directories hold absolute paths of the original root: {leaks[:5]}"
    run = sft_run(copy)
    (run / "DONE").unlink()  # this run trains again: from the copy's own base model
    (copy / "failures.json").write_text('[{"job_id": "0123456789abcdef", "error": "stale"}]\n')
    proc = grid(copy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not original.exists() and results(copy).equals(results(finished))
    assert not (copy / "failures.json").exists()
    assert "stale" not in (copy / "report" / "report.md").read_text()
    moved = tmp_path / "moved"
    away.rename(moved)
    proc = grid(moved, "--no-report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"skipped": ' in proc.stdout and '"done": 0' in proc.stdout and results(moved).equals(results(finished))


def test_a_truncated_scores_file_is_rebuilt_not_skipped(finished, tmp_path):
    root = tmp_path / "truncated"
    shutil.copytree(finished, root)
    scores = sft_run(root) / "scores.parquet"
    scores.write_bytes(scores.read_bytes()[:100])
    proc = grid(root, "--no-report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{scores} is 100 bytes" in proc.stderr and '"done": 1' in proc.stdout
    assert results(root).equals(results(finished))


def test_an_altered_same_size_scores_file_is_caught_under_verify(finished, tmp_path):
    root = tmp_path / "altered"
    shutil.copytree(finished, root)
    scores = sft_run(root) / "scores.parquet"
    data = bytearray(scores.read_bytes())
    data[len(data) // 2] ^= 0xFF
    scores.write_bytes(bytes(data))
    plain = grid(root, "--no-report")
    assert '"done": 0' in plain.stdout  # sizes only: an edit of the same size is not seen
    proc = grid(root, "--no-report", "--verify")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{scores} has other contents" in proc.stderr and '"done": 1' in proc.stdout
    assert results(root).equals(results(finished))
