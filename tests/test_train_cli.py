"""End to end through the CLI on a tiny model: train then score; exact run-dir file set; re-run resumes."""

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
