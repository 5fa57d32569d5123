"""validate: several problems reported at once, before any weights are loaded; a good job passes."""

import json

import pytest
import yaml

from rationale_sft.cli import main
from rationale_sft.config import build
from rationale_sft.config.train import JobConfig
from rationale_sft.train.toy import toy_data, toy_model
from rationale_sft.validate import validate


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    ex, rat = toy_data(n=30, seed=4)
    ex.write_parquet(root / "examples.parquet")
    rat.write_parquet(root / "rationales.parquet")
    base = toy_model(root / "base", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=500)
    return root, base


def job(root, base, **train):
    return build(JobConfig, {"examples": str(root / "examples.parquet"), "rationales": str(root / "rationales.parquet"),
                             "model": str(base), "train": train})


def test_a_good_job_has_no_problems(job_files):
    root, base = job_files
    report = validate(job(root, base, arm="stepwise"))
    assert report["problems"] == [] and report["n_sequences"] == report["n_examples"] > 0
    assert report["target_tokens"]["min"] > 1


def test_several_problems_at_once(job_files, tmp_path):
    root, base = job_files
    no_weights = tmp_path / "ckpt"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((base / "config.json").read_text())
    report = validate(job(root, no_weights, arm="freeform", rationale_mode="blind"))
    assert any("no weights" in p for p in report["problems"])
    assert any("no freeform/blind rationale" in p for p in report["problems"])
    report = validate(job(root, base, arm="freeform", max_len=40,
                          lora={"enabled": True, "target_modules": ["q_proj", "w_up"]}))
    text = "\n".join(report["problems"])
    assert "['w_up'] match no linear layer" in text and "without any history still takes" in text and "more examples" in text


def test_unknown_architecture_and_colliding_label_words(job_files, tmp_path):
    root, base = job_files
    weird = tmp_path / "weird"
    weird.mkdir()
    for f in base.iterdir():
        (weird / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((base / "config.json").read_text())
    (weird / "config.json").write_text(json.dumps({**cfg, "model_type": "brainformer", "architectures": ["Brain"]}))
    tok = json.loads((base / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["ĠNo"], vocab["ĠYes"] = vocab["ĠYes"], vocab["ĠNo"]  # make both words decode from one id
    vocab["ĠNo"] = vocab["ĠYes"]
    (weird / "tokenizer.json").write_text(json.dumps(tok))
    problems = "\n".join(validate(job(root, weird))["problems"])
    assert "unknown architecture" in problems and "collide" in problems


def test_cli_exit_codes(job_files, tmp_path, capsys):
    root, base = job_files
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"examples": str(root / "examples.parquet"), "model": str(base)}))
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "train.arm=freeform", "train.max_len=20"]) == 1
    out = capsys.readouterr().out
    assert "no rationales.parquet was given" in out and "problem(s)" in out
    assert main(["validate", str(path), "train.arm=freefrom"]) == 2


@pytest.mark.parametrize("arm", ["shuffled_rationale", "flipped_rationale", "blind_rationale", "segment_norm",
                                 "answer_stage"])
def test_the_control_and_balancing_arms_validate(job_files, tmp_path, arm):
    root, base = job_files
    _, rat = toy_data(n=30, seed=4, modes=("conditioned", "blind", "flipped"))
    rat.write_parquet(tmp_path / "rationales.parquet")
    extra = {"steps": 10, "answer_stage_steps": 2} if arm == "answer_stage" else {}
    cfg = build(JobConfig, {"examples": str(root / "examples.parquet"), "rationales": str(tmp_path / "rationales.parquet"),
                            "model": str(base), "train": {"arm": arm, **extra}})
    report = validate(cfg)
    assert report["problems"] == [] and report["arm"] == arm and report["n_sequences"] == report["n_examples"] > 0
    if arm == "flipped_rationale":
        report = validate(job(root, base, arm=arm))  # the job's rationales hold no flipped ones
        assert any("no freeform/flipped rationale" in p for p in report["problems"])


def test_a_max_len_that_cuts_many_histories_is_a_warning(job_files):
    root, base = job_files
    full = validate(job(root, base))
    assert not any("drops the oldest history lines" in w for w in full["warnings"])
    tight = full["sequence_tokens"]["median"]  # about half the sequences lose history lines
    report = validate(job(root, base, max_len=int(tight)))
    share = report["n_truncated"] / report["n_sequences"]
    assert report["problems"] == [] and 0.05 < share < 1
    assert [w for w in report["warnings"] if "drops the oldest history lines" in w] == [
        f"train.max_len={int(tight)} drops the oldest history lines of {report['n_truncated']} of "
        f"{report['n_sequences']} training sequences ({share:.0%}): raise train.max_len if the model's context allows"]
