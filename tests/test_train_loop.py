"""Training loop on a real tiny model: every arm trains, loss normalisation invariant, resume, LoRA."""

import math

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from rationale_sft.config import ConfigError, build
from rationale_sft.errors import InputError
from rationale_sft.config.train import TrainConfig
from rationale_sft.train import loop
from rationale_sft.train.loop import train
from rationale_sft.train.toy import toy_data, toy_model

ARMS = ["label_only", "freeform", "stepwise", "label_then_rationale", "multitask", "padded_label_only", "weighted",
        "shuffled_rationale", "flipped_rationale", "blind_rationale", "segment_norm", "answer_stage"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ex, rat = toy_data(n=24, seed=5, modes=("conditioned", "blind", "flipped"))
    model_dir = toy_model(tmp_path_factory.mktemp("m") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                          vocab_size=500)
    return ex, rat, model_dir


def weights(run_dir):
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_trains_and_logs(setup, tmp_path, arm):
    ex, rat, base = setup
    extra = {"answer_stage_steps": 1} if arm == "answer_stage" else {}
    cfg = build(TrainConfig, {"arm": arm, "steps": 2, "micro_batch": 2, "grad_accum": 2, "lr": 1e-3, **extra})
    out = train(cfg, tmp_path, ex, rat, base)
    log = pl.read_parquet(tmp_path / "train_log.parquet")
    assert log.columns == loop.LOG_COLUMNS and log["step"].to_list() == [1, 2]
    assert log["loss"].is_finite().all() and (log["n_target_tokens"] > 0).all()
    assert log["grad_cos"].null_count() == 2 and not (tmp_path / loop.CONFLICT).exists()  # measurement off
    share = log["label_token_share"].to_list()
    if arm == "label_only":
        assert share == [1.0, 1.0] and log["rationale_loss"].null_count() == 2
    elif arm == "answer_stage":
        assert log["stage"].to_list() == ["main", "answer"] and share[1] == 1.0 and 0 < share[0] < 1
    elif arm == "segment_norm":  # label mean and rationale mean weigh 1:1 (segment_label_weight)
        assert share == pytest.approx([0.5, 0.5])
    else:
        assert all(0 < s < 1 for s in share)
    if arm == "weighted":
        assert share[0] > 5 * pl.read_parquet(tmp_path / "train_examples.parquet").pipe(
            lambda t: t["n_label_tokens"].sum() / t["n_target_tokens"].sum())
    meta = loop.rundir.read_json(tmp_path / "checkpoint" / "training.json")
    assert meta["finished"] and meta["arm"] == arm and out["steps"] == 2
    assert not (tmp_path / "checkpoint" / "trainer_state.pt").exists()
    examples = pl.read_parquet(tmp_path / "train_examples.parquet")
    assert set(examples.columns) >= {"subject_id", "prompt_hash", "target_hash", "n_target_tokens"}


def test_micro_batch_times_accumulation_invariance(setup, tmp_path):
    ex, rat, base = setup
    common = {"arm": "freeform", "steps": 2, "lr": 1e-3, "warmup": 0.0, "grad_clip": 0.0}
    train(build(TrainConfig, {**common, "micro_batch": 1, "grad_accum": 4}), tmp_path / "a", ex, rat, base)
    train(build(TrainConfig, {**common, "micro_batch": 4, "grad_accum": 1}), tmp_path / "b", ex, rat, base)
    train(build(TrainConfig, {**common, "micro_batch": 2, "grad_accum": 1, "steps": 4}), tmp_path / "c", ex, rat, base)
    a, b, c, start = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c"), load_file(str(base / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4)
    assert any(not torch.allclose(a[n], start[n]) for n in a)  # training moved the weights
    assert any(not torch.allclose(a[n], c[n], atol=1e-4) for n in a)  # a different step plan differs
    la, lb = (pl.read_parquet(tmp_path / d / "train_log.parquet") for d in "ab")
    assert la["loss"].to_list() == pytest.approx(lb["loss"].to_list(), rel=1e-4)


def test_resume_after_interruption_gives_the_same_weights(setup, tmp_path, killed_train):
    ex, rat, base = setup
    cfg = build(TrainConfig, {"arm": "stepwise", "steps": 4, "micro_batch": 2, "checkpoint_every": 2,
                              "lr": 1e-3, "weight_decay": 0.1})
    train(cfg, tmp_path / "full", ex, rat, base)
    killed_train(3, cfg, tmp_path / "cut", ex, rat, base)
    assert (tmp_path / "cut" / "checkpoint" / "trainer_state.pt").is_file()
    out = train(cfg, tmp_path / "cut", ex, rat, base)
    assert out["resumed_from_step"] == 2
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    for name in full:
        torch.testing.assert_close(full[name], cut[name], atol=1e-6, rtol=1e-6)
    logs = [pl.read_parquet(tmp_path / d / "train_log.parquet") for d in ("full", "cut")]
    assert logs[0]["step"].to_list() == logs[1]["step"].to_list() == [1, 2, 3, 4]
    assert logs[0]["loss"].to_list() == pytest.approx(logs[1]["loss"].to_list(), rel=1e-5)
    again = train(cfg, tmp_path / "cut", ex, rat, base)  # finished: returns without training
    assert again["steps"] == 4


def test_kept_checkpoints_hold_the_weights_of_each_step_and_survive_a_resume(setup, tmp_path, killed_train):
    from rationale_sft.probes.layers import checkpoint_dirs

    ex, rat, base = setup
    common = {"arm": "freeform", "micro_batch": 2, "lr": 1e-3, "checkpoint_every": 2}
    cfg = build(TrainConfig, {**common, "steps": 6, "keep_checkpoints": True})
    train(cfg, tmp_path / "full", ex, rat, base)
    kept = sorted(p.name for p in (tmp_path / "full" / loop.KEPT).iterdir())
    assert kept == ["step-000002", "step-000004"]  # the final step is checkpoint/ itself
    assert not list((tmp_path / "full" / loop.KEPT).glob("*/trainer_state.pt"))  # weights only
    short = build(TrainConfig, {**common, "steps": 6})  # same schedule, no copies; stopped at step 4
    killed_train(5, short, tmp_path / "ref", ex, rat, base)
    ref = weights(tmp_path / "ref")  # the resumable checkpoint/ of step 4
    at4 = load_file(str(tmp_path / "full" / loop.KEPT / "step-000004" / "model.safetensors"))
    for name in ref:
        torch.testing.assert_close(ref[name], at4[name], atol=0, rtol=0)
    killed_train(5, cfg, tmp_path / "cut", ex, rat, base)  # killed after the step-4 copy: a resume keeps going
    assert train(cfg, tmp_path / "cut", ex, rat, base)["resumed_from_step"] == 4
    assert [s for s, _ in checkpoint_dirs(tmp_path / "cut")] == [2, 4, 6]
    with pytest.raises(ConfigError, match="checkpoint_every is 0"):
        build(TrainConfig, {"keep_checkpoints": True})


def test_lora_trains_only_the_adapter(setup, tmp_path):
    ex, rat, base = setup
    cfg = build(TrainConfig, {"arm": "label_only", "steps": 2, "lr": 1e-2, "lora": {"enabled": True, "r": 4}})
    train(cfg, tmp_path, ex, rat, base)
    ckpt = tmp_path / "checkpoint"
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "model.safetensors").exists()
    adapter = load_file(str(ckpt / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)


def test_a_lora_run_inside_a_grid_loads_after_the_grid_moves(setup, tmp_path):
    import shutil

    from rationale_sft import models

    ex, rat, base = setup
    root = tmp_path / "grid"
    (root / "shared").mkdir(parents=True)
    (root / ".grid.lock").write_text("")
    shutil.copytree(base, root / "shared" / "base")
    cfg = build(TrainConfig, {"arm": "label_only", "steps": 1, "lr": 1e-2, "lora": {"enabled": True, "r": 4}})
    summary = train(cfg, root / "runs" / "r", ex, rat, root / "shared" / "base")
    assert summary["base_model"] == "../../shared/base" and summary["checkpoint"] == "checkpoint"
    root.rename(tmp_path / "moved")
    ckpt = tmp_path / "moved" / "runs" / "r" / "checkpoint"
    assert models.adapter_base(ckpt).resolve() == (tmp_path / "moved" / "shared" / "base").resolve()
    assert str(root) not in (ckpt / "adapter_config.json").read_text() + (ckpt / "training.json").read_text()
    models.load(ckpt)


def test_bf16_autocast_runs_only_where_the_device_has_native_bf16_and_train_json_says_what_ran(setup, tmp_path,
                                                                                              bf16_cases):
    ex, rat, base = setup

    def run(name, bf16):
        cfg = build(TrainConfig, {"arm": "label_only", "steps": 2, "micro_batch": 2, "bf16": bf16, "lr": 1e-3})
        out = train(cfg, tmp_path / name, ex, rat, base)
        return out["bf16"], pl.read_parquet(tmp_path / name / "train_log.parquet")["loss"].to_list()

    fp32, emulated, native = bf16_cases(run)
    assert (fp32[0], emulated[0], native[0]) == (False, False, True)
    assert emulated[1] == fp32[1]  # asked for, not native: the same float32 run
    assert native[1] != fp32[1] and all(math.isfinite(x) for x in native[1])  # autocast changed the numerics
    assert weights(tmp_path / "native")["model.embed_tokens.weight"].dtype == torch.float32


def test_answer_stage_spends_its_steps_inside_the_budget_on_the_label_only(setup, tmp_path):
    ex, rat, base = setup
    cfg = build(TrainConfig, {"arm": "answer_stage", "steps": 5, "answer_stage_steps": 2, "micro_batch": 2,
                              "grad_accum": 2, "lr": 1e-3})
    out = train(cfg, tmp_path, ex, rat, base)
    log = pl.read_parquet(tmp_path / "train_log.parquet")
    assert out["steps"] == 5 and out["answer_stage_steps"] == 2  # the budget holds both stages
    assert log["stage"].to_list() == ["main"] * 3 + ["answer"] * 2
    answer, main = log.filter(pl.col("stage") == "answer"), log.filter(pl.col("stage") == "main")
    assert answer["rationale_loss"].null_count() == 2 and answer["n_target_tokens"].to_list() == [4, 4]  # 4 labels
    assert answer["loss"].to_list() == pytest.approx(answer["label_loss"].to_list(), rel=1e-6)
    assert (main["n_target_tokens"] > 4 * 10).all() and main["rationale_loss"].null_count() == 0
    assert log["lr"].to_list() == sorted(log["lr"].to_list(), reverse=True)  # one schedule over both stages
    with pytest.raises(InputError, match="fewer than the run's 3 optimizer steps"):
        train(build(TrainConfig, {"arm": "answer_stage", "epochs": 1, "micro_batch": 5, "answer_stage_steps": 3}),
              tmp_path / "epochs", ex, rat, base)
    with pytest.raises(ConfigError, match="answer_stage_steps=0"):
        build(TrainConfig, {"arm": "answer_stage", "steps": 5})
