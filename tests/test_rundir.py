"""Run directories: atomic writes, DONE semantics, manifests, content hashes."""

import json

import polars as pl
import pytest

from rationale_sft import rundir


def test_run_stage_writes_manifest_then_done_and_skips(tmp_path):
    calls = []

    def work(out):
        calls.append(1)
        rundir.write_parquet(pl.DataFrame({"a": [1, 2]}), out / "t.parquet")
        return {"rows": 2}

    src = tmp_path / "input.txt"
    src.write_text("x")
    assert rundir.run_stage(tmp_path / "s", work, cfg={"k": 1}, seeds={"master": 3}, inputs={"src": src})
    assert not rundir.run_stage(tmp_path / "s", work, cfg={"k": 1})
    assert len(calls) == 1
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == ["DONE", "config.yaml", "manifest.json", "t.parquet"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["seeds"] == {"master": 3}
    assert manifest["inputs"]["src"]["hash"] == rundir.hash_path(src)
    assert set(manifest["git"]) == {"sha", "dirty"} and manifest["packages"]["numpy"]


def test_failed_stage_is_never_done(tmp_path):
    def work(out):
        (out / "partial.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        rundir.run_stage(tmp_path / "s", work)
    assert not rundir.is_done(tmp_path / "s")
    assert (tmp_path / "s" / "partial.txt").exists()  # resumable partial output stays for the next attempt


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    rundir.write_text(target, "old")
    with pytest.raises(ZeroDivisionError):
        with rundir.atomic_path(target) as tmp:
            tmp.write_text("new")
            1 / 0
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_hash_path_covers_names_and_contents(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("1")
    first = rundir.hash_path(tmp_path / "d")
    (tmp_path / "d" / "a.txt").write_text("2")
    second = rundir.hash_path(tmp_path / "d")
    (tmp_path / "d" / "a.txt").rename(tmp_path / "d" / "b.txt")
    assert len({first, second, rundir.hash_path(tmp_path / "d")}) == 3
    with pytest.raises(FileNotFoundError):
        rundir.hash_path(tmp_path / "nope")
