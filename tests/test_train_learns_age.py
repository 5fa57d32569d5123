"""A tiny student learns to state the subject's age from the prompt (the skill the rationale gates demand).

A from-scratch gpt2 (no dropout, as every family here) is fine-tuned in the freeform arm on short histories
whose rationale opens with the subject's age; the history lines between the age and the question vary in number, so the age must be
found by content, not by a fixed offset. Greedy rationales for unseen subjects must state their own age.
"""

import re

import numpy as np
import polars as pl
import pytest

from rationale_sft.config import build
from rationale_sft.config.score import ScoreConfig
from rationale_sft.config.train import TrainConfig
from rationale_sft.models.families import build_model
from rationale_sft.models.tokenizer import train_tokenizer
from rationale_sft.score.stage import score
from rationale_sft.train.loop import train

ILLNESSES = ["Asthma", "Gout", "Cataract", "Migraine", "Anaemia", "Psoriasis", "Glaucoma", "Sciatica"]


def _subject(g: np.random.Generator, sid: int, split: str) -> dict:
    age, sex = int(g.integers(60, 81)), ("female", "male")[int(g.integers(2))]
    lines = [f"- 20{int(g.integers(0, 10)):02d}-0{int(g.integers(1, 10))}: {ILLNESSES[int(g.integers(8))]}"
             for _ in range(int(g.integers(0, 6)))]
    prompt = "\n".join([f"Sex: {sex}", f"Age at assessment: {age} years", "Diagnoses:", *lines,
                        "Question: Will this person develop dementia? Answer Yes or No.", "Answer:"])
    label = bool(g.random() < 0.3)
    who = "woman" if sex == "female" else "man"
    rationale = f"This {who} was {age} years old at the assessment, and age is the main risk factor."
    return {"subject_id": sid, "split": split, "label": label, "prompt": prompt, "prompt_hash": str(sid),
            "rationale": rationale, "age": age,
            "prediction_time": pl.datetime(2010, 1, 1)}


@pytest.mark.slow
def test_a_tiny_student_learns_to_state_the_age(tmp_path):
    g = np.random.default_rng(0)
    rows = [_subject(g, i, "train") for i in range(400)] + [_subject(g, 1000 + i, "held_out") for i in range(60)]
    table = pl.DataFrame([{k: v for k, v in r.items() if k != "prediction_time"} for r in rows]).with_columns(
        prediction_time=pl.lit("2010-01-01").str.to_datetime("%Y-%m-%d").cast(pl.Datetime("us")))
    rationales = table.select("subject_id", pl.lit("freeform").alias("style"), pl.lit("conditioned").alias("mode"),
                              pl.col("rationale").alias("text"))
    tok = train_tokenizer([r["prompt"] + " " + r["rationale"] for r in rows], 400, tmp_path / "tok")
    model = build_model("gpt2", "xs", tok, seed=0)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    cfg = build(TrainConfig, {"arm": "freeform", "steps": 300, "micro_batch": 16, "lr": 3e-3, "max_len": 256,
                              "warmup": 0.05, "seed": 0})
    train(cfg, tmp_path / "run", table.drop("rationale", "age"), rationales, tmp_path / "base")
    score(build(ScoreConfig, {"batch_size": 32, "max_new_tokens": 40}), tmp_path / "run", table.drop("rationale", "age"),
          tmp_path / "run" / "checkpoint")
    out = pl.read_parquet(tmp_path / "run" / "scores.parquet").join(table.select("subject_id", "age"), on="subject_id")
    said = [re.search(r"was (\d+) years", t or "") for t in out["generated_text"].to_list()]
    right = [m is not None and int(m.group(1)) == age for m, age in zip(said, out["age"].to_list())]
    assert out.height == 60 and out["marker_found"].mean() >= 0.95
    assert np.mean(right) >= 0.9, (np.mean(right),
                                   list(zip(out["generated_text"].to_list()[:5], out["age"].to_list()[:5])))
