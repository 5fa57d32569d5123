"""``rationale-sft cohort synth`` end to end: exact run-dir file set, resume, overrides, bad input."""

from __future__ import annotations

import json

from rationale_sft.cli import main

FILES = {"DONE", "config.yaml", "manifest.json", "summary.json", "data/shard_0000.parquet", "data/shard_0001.parquet",
         "metadata/codes.parquet", "metadata/dataset.json", "metadata/subject_splits.parquet", "truth/risk.parquet"}


def test_cli_writes_the_run_dir_and_a_rerun_skips(tmp_path, capsys):
    out = tmp_path / "cohort"
    args = ["cohort", "synth", "--n-subjects", "600", "--seed", "3", "--out", str(out), "shard_size=400",
            "calibration_n=2000", "hidden_share=0.25"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_subjects"] == 600 and summary["hidden_share"] == 0.25
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == FILES
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"] == {"seed": 3, "world_seed": 0} and "seed: 3" in (out / "config.yaml").read_text()
    before = (out / "data" / "shard_0000.parquet").stat().st_mtime_ns
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out
    assert (out / "data" / "shard_0000.parquet").stat().st_mtime_ns == before


def test_cli_refuses_a_finished_dir_with_another_config(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["cohort", "synth", "--n-subjects", "200", "--out", str(out), "calibration_n=1000"]) == 0
    capsys.readouterr()
    assert main(["cohort", "synth", "--n-subjects", "300", "--out", str(out), "calibration_n=1000"]) == 2
    assert "different config" in capsys.readouterr().err


def test_cli_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["cohort", "synth", "--n-subjects", "0", "--out", str(tmp_path / "x")]) == 2
    assert "n_subjects must be a positive integer" in capsys.readouterr().err
    assert main(["cohort", "synth", "--n-subjects", "10", "--out", str(tmp_path / "y"), "hidden_share=2"]) == 2
    assert "hidden_share must lie in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_reads_a_yaml_config_and_flags_override_it(tmp_path, capsys):
    cfg = tmp_path / "synth.yaml"
    cfg.write_text("n_subjects: 100\nseed: 9\nhidden_share: 0.8\ncalibration_n: 1000\ndata_end: 2021-12-31\n")
    out = tmp_path / "cohort"
    assert main(["cohort", "synth", "--config", str(cfg), "--n-subjects", "150", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_subjects"] == 150 and summary["hidden_share"] == 0.8
    resolved = (out / "config.yaml").read_text()
    assert "seed: 9" in resolved and "data_end: '2021-12-31'" in resolved


def test_size_is_estimated_and_bounded(tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["cohort", "synth", "--n-subjects", "5000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "about 130,000,000 events" in err and "--allow-large" in err
    assert not out.exists()
    assert main(["cohort", "synth", "--n-subjects", "200", "--out", str(tmp_path / "small"),
                 "calibration_n=1000"]) == 0
    assert "cohort synth: about 5,200 events" in capsys.readouterr().err
