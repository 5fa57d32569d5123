"""Pricing a plan (``run --plan --cost``): token counts by hand, measured vs bound lengths, devices, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from rationale_sft import config as cfglib
from rationale_sft.cli import main
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment import cost, devices
from rationale_sft.experiment.plan import plan

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
H100 = devices.get_device("h100")


def smoke(*overrides: str) -> tuple[ExperimentConfig, object]:
    cfg = cfglib.load(ExperimentConfig, CONFIGS / "smoke.yaml", list(overrides))
    return cfg, plan(cfg, CONFIGS)


def items(est: cost.Estimate, stage: str) -> list[cost.Item]:
    return [it for it in est.items if it.stage == stage]


def test_cli_prints_every_stage_and_a_total_for_the_smoke_grid(capsys, tmp_path):
    assert main(["run", str(CONFIGS / "smoke.yaml"), "--plan", "--cost", "--out", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for stage in (*cost.STAGES, "total"):
        assert stage in rows, out
    assert "cost of grid 'smoke' on cpu" in out and "(measured: " in out
    assert rows["train"].rstrip().endswith("bound") and rows["pretrain"].rstrip().endswith("exact")
    assert " measured: " in rows["cpu"]
    for name in devices.GPUS:
        assert " estimate: " in rows[name]


def test_bounds_of_a_grid_without_files_are_the_config_arithmetic():
    cfg, p = smoke()
    est = cost.estimate(cfg, p, None, H100)
    # pretrain: 6 steps x 4 rows x 128 tokens, packed as a stream: exact
    (pre,) = items(est, "pretrain")
    assert (pre.train, pre.mark) == (6 * 4 * 128, "exact")
    # train: 8 steps x micro_batch 4 x grad_accum 1 x max_len 1536 per run, two arms
    assert [(it.train, it.mark) for it in items(est, "train")] == [(8 * 4 * 1536, "bound")] * 2
    # score: test_max 60 subjects x max_len 1536 prompt tokens; freeform also decodes max_new_tokens 24 each
    scores = {it.job.split()[1]: it for it in items(est, "score")}
    assert scores["label_only"].prefill == scores["freeform"].prefill == 60 * 1536
    assert (scores["label_only"].decode, scores["freeform"].decode) == (0, 60 * 24)
    # few-shot: 60 subjects x k + 1 = 3 rows of max_len 1536, cut to the llama-xs context of 2048 tokens
    (few,) = items(est, "fewshot")
    assert (few.prefill, few.decode, few.mark) == (60 * 2048, 0, "bound")
    cfg, p = smoke("train.max_len=600")
    (few,) = items(cost.estimate(cfg, p, None, H100), "fewshot")
    assert few.prefill == 60 * 3 * 600
    # train.max_len 0 is the model's context (llama-xs: 2,048 tokens)
    cfg, p = smoke("train.max_len=0")
    est0 = cost.estimate(cfg, p, None, H100)
    assert [it.train for it in items(est0, "train")] == [8 * 4 * 2048] * 2
    assert {it.prefill for it in items(est0, "score")} == {60 * 2048}
    # the knowledge teacher runs no model
    (teacher,) = items(est, "teacher")
    assert (teacher.prefill, teacher.decode, teacher.seconds) == (0, 0, 0)


def test_sampled_rationales_and_accumulation_multiply_the_counts():
    cfg, p = smoke("score.n_samples=2", "train.grad_accum=3")
    est = cost.estimate(cfg, p, None, H100)
    assert {it.train for it in items(est, "train")} == {8 * 4 * 3 * 1536}
    freeform = next(it for it in items(est, "score") if "freeform" in it.job)
    assert (freeform.prefill, freeform.decode) == (3 * 60 * 1536, 3 * 60 * 24)


def test_lengths_under_the_run_dir_are_measured(tmp_path):
    """A finished run's records and the rendered prompts replace the bounds (marked measured)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg, p = smoke()
    jobs = {j.function: j for j in p.jobs}
    sft = next(j for j in p.jobs if j.function == "sft" and j.kwargs["train"]["arm"] == "freeform")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(model_dir / "tokenizer.json"))
    pl.DataFrame({"tokens_per_s": [100.0, 200.0], "elapsed_s": [1.0, 3.0]}).write_parquet(
        model_dir / "pretrain_log.parquet")

    def done(job, files: dict) -> None:
        path = tmp_path / job.out_dir
        path.mkdir(parents=True)
        for name, content in files.items():
            content.write_parquet(path / name) if isinstance(content, pl.DataFrame) else (path / name).write_text(
                json.dumps(content))
        (path / "DONE").write_text("")

    done(jobs["base"], {"base.json": {"path": str(model_dir)}})
    done(jobs["render"], {"examples.parquet": pl.DataFrame({
        "split": ["held_out", "held_out", "train"], "prompt": ["a a a", "a a a a a", "a"]})})
    done(sft, {"train.json": {"tokens_seen": 12345}, "score.json": {"n": 7},
               "scores.parquet": pl.DataFrame({"n_generated_tokens": [10, 20]})})
    est = cost.estimate(cfg, p, tmp_path, H100)
    train = next(it for it in items(est, "train") if it.job == sft.name)
    score = next(it for it in items(est, "score") if it.job == sft.name)
    assert (train.train, train.mark, train.done) == (12345, "measured", True)
    (pre,) = items(est, "pretrain")  # its log: 100 tokens/s for 1 s, then 200 for 2 s
    assert (pre.train, pre.mark) == (500, "measured")
    assert (score.prefill, score.decode, score.mark) == (7 * 4, 7 * 15, "measured")
    other = next(it for it in items(est, "score") if it.job != sft.name)  # label_only: not finished
    assert other.prefill == 60 * 4 and other.mark == "bound"  # prompt measured, test set still a bound
    assert not other.done
    stages = est.by_stage()
    assert stages["score"]["left"] == pytest.approx(other.seconds)  # what a relaunch still has to run


def test_lora_trains_at_two_thirds_of_full_fine_tuning_flops():
    size = devices.ModelSize(10**9, 10**9, 16, 2048, 512, 4096)
    full, lora = (devices.train_seconds(H100, size, 1e9, 1024, 0, lora=x) for x in (False, True))
    assert lora == pytest.approx(full * 2 / 3)


def test_decode_is_bandwidth_bound_at_batch_one_and_amortised_by_a_batch():
    size = devices.ModelSize(7 * 10**9, 7 * 10**9, 32, 4096, 1024, 32768)
    one, many = (devices.decode_seconds(H100, size, 100, b, 512) for b in (1, 64))
    assert many < 64 * one / 10  # 64 rows cost far less than 64 single-row decodes
    assert one == pytest.approx(100 * (7e9 * 2 + 2 * 32 * 1024 * 512 * 2) / (3.35e12 * 0.7) + 100 * 32 * 1.5e-4)


def test_model_size_counts_tied_embeddings_once_and_lookups_as_free():
    from rationale_sft.models.families import model_config

    size = devices.model_size(model_config("gpt2", "xs", 2048))
    assert size.params - size.matmul_params == 2048 * 128  # the position embedding is a lookup
    assert (size.layers, size.hidden, size.kv_width) == (2, 128, 128)


def test_an_unknown_device_is_an_error_naming_the_valid_ones(capsys):
    assert main(["run", str(CONFIGS / "smoke.yaml"), "--plan", "--cost", "--device", "h1000"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'h1000'" in err and "cpu, a100, h100, h200, l4" in err
    with pytest.raises(InputError, match="valid devices"):
        devices.get_device("tpu")


@pytest.mark.parametrize("args", [["--cost"], ["--device", "cpu"], ["--cost", "--device", "h100"]])
def test_cost_and_device_need_plan(capsys, args):
    assert main(["run", str(CONFIGS / "smoke.yaml"), *args]) == 2
    assert "add --plan" in capsys.readouterr().err


def test_the_cpu_row_is_measured_and_says_when_and_where():
    dev = devices.get_device("cpu")
    assert dev.measured and "20" in dev.source and "bench_throughput" in dev.source and dev.peak_flops > 0 and dev.fits
    assert not devices.get_device("a100").measured
