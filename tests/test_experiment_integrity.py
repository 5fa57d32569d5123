"""Trusting what is on disk, fast cases: inputs hashed by content, the driver's lock, DONE after the report."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import polars as pl
import pytest

from rationale_sft import config as cfglib
from rationale_sft import fingerprint, rundir
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment import driver
from rationale_sft.experiment.plan import plan
from rationale_sft.grid.execute import ExecutionReport, root_lock

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(fingerprint.CACHE_ENV, str(tmp_path / "cache"))


def load(*overrides: str) -> ExperimentConfig:
    return cfglib.load(ExperimentConfig, CONFIGS / "smoke.yaml", list(overrides))


def meds(tmp_path: Path) -> Path:
    d = tmp_path / "meds"
    (d / "data" / "train").mkdir(parents=True)
    (d / "metadata").mkdir()
    (d / "data" / "train" / "0.parquet").write_bytes(b"subject rows v1")
    (d / "metadata" / "codes.parquet").write_bytes(b"codes")
    return d


def test_changed_meds_content_at_the_same_path_changes_every_downstream_id(tmp_path):
    d = meds(tmp_path)
    cfg = load(f"data.meds_dir={d}")
    first, again = plan(cfg, CONFIGS), plan(cfg, CONFIGS)
    assert [j.id for j in first.jobs] == [j.id for j in again.jobs]
    (d / "data" / "train" / "0.parquet").write_bytes(b"subject rows v2")  # same size, same path
    changed = plan(cfg, CONFIGS)
    reads_meds = [j for j in first.jobs if j.fn.rsplit(":", 1)[1] in ("labels", "render", "baselines", "sft")]
    assert reads_meds and not {j.id for j in reads_meds} & {j.id for j in changed.jobs}
    assert {j.id for j in first.runs}.isdisjoint(j.id for j in changed.runs)


def test_content_hashes_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    d = meds(tmp_path)
    want = fingerprint.manifest(d)
    monkeypatch.setattr(fingerprint, "sha256_file", lambda path: pytest.fail(f"re-hashed unchanged {path}"))
    assert fingerprint.manifest(d) == want


def test_checkpoint_content_is_part_of_the_base_id(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"weights v1")
    (ckpt / "config.json").write_text("{}")
    cfg = load(f"grid.models=[{{family: llama, size: xs, checkpoint: {ckpt}}}]", "fewshot.enabled=false")
    before = {j.id for j in plan(cfg, CONFIGS).jobs if j.fn.endswith(":base")}
    (ckpt / "model.safetensors").write_bytes(b"weights v2")
    after = {j.id for j in plan(cfg, CONFIGS).jobs if j.fn.endswith(":base")}
    assert len(before) == 1 and before.isdisjoint(after)


def test_a_refused_second_driver_changes_nothing(tmp_path):
    root = tmp_path / "grid"
    root.mkdir()
    (root / "config.yaml").write_text("the first driver's config\n")
    (root / "DONE").write_text("done\n")
    with root_lock(root):
        with pytest.raises(InputError, match="another grid driver is running"):
            driver.run_experiment(load("train.lr=5e-4"), root, CONFIGS, progress=False)
    assert (root / "config.yaml").read_text() == "the first driver's config\n" and (root / "DONE").is_file()


def test_root_done_is_written_only_after_the_report(tmp_path, monkeypatch):
    engine = importlib.import_module("rationale_sft.grid.execute")  # the package re-exports the function
    import rationale_sft.report as report

    monkeypatch.setattr(engine, "execute", lambda *a, **k: ExecutionReport())
    monkeypatch.setattr(driver, "results_table", lambda *a: pl.DataFrame({"status": ["ok"]}))

    def broken(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(report, "write_report", broken)
    with pytest.raises(OSError):
        driver.run_experiment(load(), tmp_path / "grid", CONFIGS, progress=False)
    assert not (tmp_path / "grid" / "DONE").exists()


def test_failures_of_jobs_outside_the_plan_are_pruned(tmp_path, monkeypatch):
    engine = importlib.import_module("rationale_sft.grid.execute")  # the package re-exports the function

    root = tmp_path / "grid"
    root.mkdir()
    rundir.write_json(root / "failures.json", [{"job_id": "0123456789abcdef", "out_dir": "runs/0123456789abcdef",
                                                "error": "an old config's failure"}])
    monkeypatch.setattr(engine, "execute", lambda *a, **k: ExecutionReport())
    monkeypatch.setattr(driver, "results_table", lambda *a: pl.DataFrame({"status": ["ok"]}))
    driver.run_experiment(load(), root, CONFIGS, report=False, progress=False)
    assert not (root / "failures.json").exists() and (root / "DONE").is_file()
    assert os.path.isfile(root / "config.yaml")


def test_external_job_records_the_input_and_refuses_a_change_since_the_plan(tmp_path):
    from rationale_sft.experiment import jobs

    d = meds(tmp_path)
    content = fingerprint.digest(d)
    jobs.external(str(tmp_path / "rec"), str(tmp_path), str(d), content)
    record = rundir.read_json(tmp_path / "rec" / "inputs.json")
    assert rundir.is_done(tmp_path / "rec") and set(record["files"]) == {"data/train/0.parquet",
                                                                          "metadata/codes.parquet"}
    (d / "metadata" / "codes.parquet").write_bytes(b"other")
    with pytest.raises(InputError, match="changed after the grid was planned"):
        jobs.external(str(tmp_path / "rec2"), str(tmp_path), str(d), content)
