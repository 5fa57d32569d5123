"""Faults a user can cause end in one line, a non-zero exit code and no partial artifact, never a traceback:
Ctrl-C, a full or read-only output disk, and a damaged parquet file given to baselines, train or report."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from rationale_sft.cli import main
from rationale_sft.train.toy import toy_data
from meds_cases import fixture_rows, make
from test_report_build import make_grid_run


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rationale_sft.cli", *args], capture_output=True, text=True,
                          timeout=300, **kw)


def damage(path: Path) -> Path:
    path.write_bytes(os.urandom(3000))
    return path


def one_line(stderr: str, verb: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"rationale-sft {verb}: ")
    return lines[0]


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    return make_grid_run(tmp_path_factory.mktemp("grid") / "run", fewshot=False)


@pytest.mark.parametrize("part", ["results.parquet", "scores", "shared/labels-1/LABELS.parquet"])
def test_report_of_a_damaged_parquet(grid, tmp_path, part):
    root = tmp_path / "run"
    shutil.copytree(grid, root)
    path = root / part if part != "scores" else next((root / "runs").iterdir()) / "scores.parquet"
    damage(path)
    proc = cli("report", str(root))
    assert proc.returncode == 2
    line = one_line(proc.stderr, "report")
    assert f"{path}: not a readable parquet file" in line and "re-run" in line
    assert not (root / "report").exists()


def test_report_keeps_the_previous_report_when_it_fails(grid, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(grid, root)
    assert main(["report", str(root)]) == 0
    before = {p: (root / "report" / p).read_bytes() for p in files(root / "report")}
    damage(next((root / "runs").iterdir()) / "scores.parquet")
    assert main(["report", str(root)]) == 2
    assert {p: (root / "report" / p).read_bytes() for p in files(root / "report")} == before
    assert [p.name for p in root.iterdir() if p.name.startswith(".report")] == []


@pytest.mark.parametrize("which", ["examples", "rationales"])
def test_train_on_a_damaged_parquet(tmp_path, which):
    ex, rat = toy_data(n=12, seed=1)
    ex.write_parquet(tmp_path / "examples.parquet")
    rat.write_parquet(tmp_path / "rationales.parquet")
    damage(tmp_path / f"{which}.parquet")
    proc = cli("train", "--examples", str(tmp_path / "examples.parquet"), "--rationales",
               str(tmp_path / "rationales.parquet"), "--model", str(tmp_path / "no-model"), "--out",
               str(tmp_path / "run"), "train.arm=freeform")
    assert proc.returncode == 2
    assert f"{tmp_path / (which + '.parquet')}: not a readable parquet file" in one_line(proc.stderr, "train")
    assert files(tmp_path / "run") == []


@pytest.mark.parametrize("which", ["labels", "shard"])
def test_baselines_on_a_damaged_parquet(tmp_path, which):
    split = {3: "held_out", 9: "held_out", 8: "tuning", 10: "tuning"}  # both classes in every split
    meds = make(tmp_path, fixture_rows(), pl.DataFrame({"subject_id": range(1, 11), "split": [
        split.get(i, "train") for i in range(1, 11)]}), n_shards=1)
    labels = tmp_path / "labels.parquet"
    assert main(["cohort", "extract", "--meds", str(meds), "--out", str(labels), "trigger_code=VISIT",
                 "outcome_prefixes=[ICD10//F00, ICD10//G30]", "censor_codes=[MEDS_DEATH, LOST]"]) == 0
    path = labels if which == "labels" else next((meds / "data").glob("*.parquet"))
    damage(path)
    proc = cli("baselines", "--labels", str(labels), "--meds", str(meds), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"{path}: not a readable parquet file" in one_line(proc.stderr, "baselines")
    assert files(tmp_path / "out") == []


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free space"), (errno.EROFS, "writable"),
                                       (errno.EACCES, "writable")])
def test_report_on_a_full_or_read_only_disk_monkeypatched(grid, tmp_path, monkeypatch, capsys, code, fix):
    root = tmp_path / "run"
    shutil.copytree(grid, root)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pq, "write_table", fail)  # the report's results.parquet: a write without a file name
    assert main(["report", str(root)]) == 2
    line = one_line(capsys.readouterr().err, "report")
    assert os.strerror(code) in line and fix in line and str(root) in line
    assert not (root / "report").exists() and [p.name for p in root.iterdir() if p.name.startswith(".")] == []


@pytest.fixture
def tmpfs(tmp_path):
    """A 1.2 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("mode", ["full", "read-only"])
def test_report_on_a_real_full_or_read_only_tmpfs(grid, tmpfs, mode):
    shutil.copytree(grid, tmpfs / "run")  # about 1.1 MB: the report's figures do not fit
    if mode == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    proc = cli("report", str(tmpfs / "run"))
    assert proc.returncode == 2
    line = one_line(proc.stderr, "report")
    assert ("No space left on device" if mode == "full" else "Read-only file system") in line
    assert not (tmpfs / "run" / "report").exists()
    assert [p.name for p in (tmpfs / "run").iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_ctrl_c_ends_with_exit_code_130_and_one_line(tmp_path):
    out = tmp_path / "cohort"
    proc = subprocess.Popen([sys.executable, "-m", "rationale_sft.cli", "cohort", "synth", "--out", str(out),
                             "--n-subjects", "200000", "calibration_n=1000", "shard_size=10000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    estimate, *rest = stderr.splitlines(keepends=True)  # synth first prints its size estimate (information)
    assert estimate.startswith("cohort synth: about ")
    assert "interrupted" in one_line("".join(rest), "cohort")
    assert not (out / "DONE").exists() and not list(out.rglob(".*.tmp"))
