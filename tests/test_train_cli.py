"""End to end through the CLI on a tiny model: train then score; exact run-dir file set; re-run resumes."""

import os
import subprocess
import sys

import pytest

from rationale_sft.cli import main
from rationale_sft.train.toy import toy_data, toy_model


@pytest.mark.slow
def test_train_then_score_cli(tmp_path, capsys):
    ex, rat = toy_data(n=30, seed=6)
    ex.write_parquet(tmp_path / "examples.parquet")
    rat.write_parquet(tmp_path / "rationales.parquet")
    base = toy_model(tmp_path / "base", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=500)
    run = tmp_path / "run"
    args = ["train", "--examples", str(tmp_path / "examples.parquet"), "--rationales",
            str(tmp_path / "rationales.parquet"), "--model", str(base), "--out", str(run),
            "train.arm=label_then_rationale", "train.steps=3", "train.checkpoint_every=1"]
    assert main(args) == 0
    assert main(["score", "--examples", str(tmp_path / "examples.parquet"), "--out", str(run),
                 "score.batch_size=4"]) == 0
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint", "predictions.parquet", "score.json", "scores.parquet", "train.json",
        "train_examples.parquet", "train_log.parquet"]
    ckpt = {p.name for p in (run / "checkpoint").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= ckpt
    assert "trainer_state.pt" not in ckpt
    mtime = (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # finished: nothing retrained
    assert (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns == mtime
    out = capsys.readouterr().out
    assert "arm label_then_rationale, 3 steps" in out and "subjects scored (direct)" in out
    assert main(["train", "--examples", str(tmp_path / "examples.parquet"), "--model", str(base),
                 "--out", str(tmp_path / "bad"), "train.arm=freeform"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_library_chatter_only_with_verbose(tmp_path, verbose):
    ex, rat = toy_data(n=8, seed=2)
    ex.write_parquet(tmp_path / "examples.parquet")
    base = toy_model(tmp_path / "base", ex["prompt"].to_list(), vocab_size=300)
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-m", "rationale_sft.cli", *(["--verbose"] if verbose else []), "train",
                           "--examples", str(tmp_path / "examples.parquet"), "--model", str(base), "--out",
                           str(tmp_path / "run"), "train.steps=2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ("Loading weights" in proc.stderr) == verbose and ("Writing model shards" in proc.stderr) == verbose
    assert "arm label_only, 2 steps" in proc.stdout
