"""Gradient conflict: cosine and norm ratio against hand-computed gradients; logging never changes training."""

import math

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.train import conflict, loop
from rationale_sft.train.loop import train
from rationale_sft.train.toy import toy_data, toy_model


def test_cosine_and_norm_ratio_on_a_two_parameter_toy():
    a = torch.nn.Parameter(torch.tensor(1.0))
    b = torch.nn.Parameter(torch.tensor(2.0))
    named = [("model.layers.0.a", a), ("model.layers.1.b", b)]
    # label loss a^2 + 3b: gradient (2a, 3) = (2, 3); rationale loss 2a - b^2: gradient (2, -2b) = (2, -4)
    ce = torch.stack([a * a + 3 * b, 2 * a - b * b])
    rows = conflict.measure(ce, torch.tensor([True, False]), torch.tensor([True, True]), named)
    by = {r["group"]: r for r in rows}
    assert [r["group"] for r in rows] == ["all", "layer_00", "layer_01"]
    assert by["all"]["cos"] == pytest.approx((2 * 2 + 3 * -4) / (math.sqrt(13) * math.sqrt(20)))
    assert by["all"]["norm_ratio"] == pytest.approx(math.sqrt(13) / math.sqrt(20))
    assert (by["all"]["label_norm"], by["all"]["rationale_norm"]) == pytest.approx((math.sqrt(13), math.sqrt(20)))
    assert (by["layer_00"]["cos"], by["layer_00"]["norm_ratio"]) == pytest.approx((1.0, 1.0))
    assert (by["layer_01"]["cos"], by["layer_01"]["norm_ratio"]) == pytest.approx((-1.0, 0.75))
    assert a.grad is None and b.grad is None  # returned, never accumulated into .grad
    ce.sum().backward()  # the graph was kept for the training backward
    assert (float(a.grad), float(b.grad)) == pytest.approx((4.0, -1.0))
    assert conflict.measure(ce.detach(), torch.tensor([True, True]), torch.tensor([True, True]), named) is None


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ex, rat = toy_data(n=24, seed=5)
    base = toy_model(tmp_path_factory.mktemp("m") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                     vocab_size=500)
    return ex, rat, base


@pytest.mark.parametrize("arm", ["freeform", "multitask"])
def test_measuring_conflict_leaves_the_weights_unchanged(setup, tmp_path, arm):
    ex, rat, base = setup
    common = {"arm": arm, "steps": 3, "micro_batch": 2, "grad_accum": 2, "lr": 1e-3, "weight_decay": 0.1}
    train(build(TrainConfig, common), tmp_path / "off", ex, rat, base)
    train(build(TrainConfig, {**common, "conflict_every": 1}), tmp_path / "on", ex, rat, base)
    off, on = (load_file(str(tmp_path / d / "checkpoint" / "model.safetensors")) for d in ("off", "on"))
    assert all(torch.equal(off[n], on[n]) for n in off)
    logs = {d: pl.read_parquet(tmp_path / d / "train_log.parquet") for d in ("off", "on")}
    assert logs["off"]["loss"].to_list() == logs["on"]["loss"].to_list()
    assert logs["off"]["grad_cos"].null_count() == 3 and not (tmp_path / "off" / loop.CONFLICT).exists()
    table = pl.read_parquet(tmp_path / "on" / loop.CONFLICT)
    assert table.columns == conflict.TABLE_COLUMNS
    measured = table.filter(pl.col("group") == "all")
    assert measured["step"].to_list() == logs["on"].filter(pl.col("grad_cos").is_not_null())["step"].to_list()
    assert set(table["group"]) >= {"all", "embeddings", "layer_00", "layer_01", "final_norm"}
    assert ((table["cos"] >= -1 - 1e-9) & (table["cos"] <= 1 + 1e-9) & (table["norm_ratio"] > 0)).all()
    if arm == "freeform":  # every micro-batch has label and rationale tokens: every step is measured
        assert measured["step"].to_list() == [1, 2, 3]
        assert logs["on"]["grad_cos"].to_list() == pytest.approx(measured["cos"].to_list())


def test_conflict_every_selects_steps_and_survives_resume(setup, tmp_path, killed_train):
    ex, rat, base = setup
    cfg = build(TrainConfig, {"arm": "stepwise", "steps": 4, "micro_batch": 2, "conflict_every": 2,
                              "checkpoint_every": 2, "lr": 1e-3})
    train(cfg, tmp_path / "full", ex, rat, base)
    killed_train(3, cfg, tmp_path / "cut", ex, rat, base)
    train(cfg, tmp_path / "cut", ex, rat, base)
    full, cut = (pl.read_parquet(tmp_path / d / loop.CONFLICT) for d in ("full", "cut"))
    assert sorted(set(full["step"])) == [2, 4] and full.equals(cut)
