"""Progress of long stages: lines in a log (not a terminal) at intervals and at the end, with rate and ETA."""

import re

from rationale_sft import progress
from rationale_sft.config import build
from rationale_sft.config.score import ScoreConfig
from rationale_sft.config.train import TrainConfig
from rationale_sft.score.stage import score
from rationale_sft.train.loop import train
from rationale_sft.train.toy import toy_data, toy_model


def test_lines_at_intervals_and_at_the_end(capsys, monkeypatch):
    clock = iter([0.0, 0.0, 10.0, 30.0, 70.0, 80.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with progress.stage("train freeform", 5, completed=1, every_s=60) as advance:
        for _ in range(4):
            advance(loss=2.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "train freeform: 4/5 steps (80%), 0.0429 steps/s, elapsed 0:01:10, eta 0:00:23, loss 2",
        "train freeform: 5/5 steps (100%), 0.05 steps/s, elapsed 0:01:20, eta 0:00:00, loss 2"]


def test_training_and_generation_report_progress_in_a_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    ex, rat = toy_data(n=12, seed=3)
    base = toy_model(tmp_path / "base", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=300)
    train(build(TrainConfig, {"arm": "freeform", "steps": 3, "micro_batch": 4}), tmp_path / "run", ex, rat, base)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train freeform:")]
    assert [ln.split(" (")[0] for ln in lines] == [f"train freeform: {i}/3 steps" for i in (1, 2, 3)]
    assert all(re.search(r"steps/s, elapsed \d:\d\d:\d\d, eta \d:\d\d:\d\d, loss \d", ln) for ln in lines)
    run = tmp_path / "run"
    score(build(ScoreConfig, {"max_new_tokens": 6, "batch_size": 2}), run, ex, run / "checkpoint")
    n = int((ex["split"] == "held_out").sum())
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("generate:")]
    assert [ln.split(" (")[0] for ln in lines] == [f"generate: {i}/{n} texts" for i in range(2, n, 2)] + [
        f"generate: {n}/{n} texts"]


def test_the_train_log_is_written_while_training(tmp_path, monkeypatch):
    from rationale_sft.train import loop

    monkeypatch.setattr(loop, "LOG_WRITE_S", 0.0)
    heights = []
    write = loop.write_log
    monkeypatch.setattr(loop, "write_log", lambda run_dir, log: (heights.append(len(log)), write(run_dir, log)))
    ex, rat = toy_data(n=12, seed=3)
    base = toy_model(tmp_path / "base", ex["prompt"].to_list(), vocab_size=300)
    train(build(TrainConfig, {"steps": 3, "micro_batch": 4}), tmp_path / "run", ex, None, base)
    assert heights == [1, 2, 3, 3]  # after every step, then with the final checkpoint
