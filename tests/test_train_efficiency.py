"""Training efficiency options on a real tiny model: length bucketing within a step and gradient checkpointing
change the work done, not what is learned; LoRA wraps without warnings; a finished run leaves nothing alive."""

import gc
import warnings
import weakref

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.train import arms, loop
from rationale_sft.train.data import collate, pad_id
from rationale_sft.train.toy import toy_data, toy_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ex, rat = toy_data(n=40, seed=7)
    model_dir = toy_model(tmp_path_factory.mktemp("m") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                          vocab_size=500)
    return ex, rat, model_dir


@pytest.mark.parametrize("arm", ["freeform", "segment_norm"])
def test_bucketing_by_length_keeps_every_steps_loss_and_cuts_the_padding(setup, tmp_path, arm):
    ex, rat, base = setup
    common = {"arm": arm, "steps": 3, "micro_batch": 2, "grad_accum": 4, "lr": 1e-3, "warmup": 0.0}
    runs = {}
    for bucket in (False, True):
        out = tmp_path / str(bucket)
        summary = loop.train(build(TrainConfig, {**common, "bucket_by_length": bucket}), out, ex, rat, base)
        runs[bucket] = summary, pl.read_parquet(out / "train_log.parquet"), load_file(
            str(out / "checkpoint" / "model.safetensors"))
    (plain, log0, w0), (bucketed, log1, w1) = runs[False], runs[True]
    assert log1["loss"].to_list() == pytest.approx(log0["loss"].to_list(), rel=1e-5)
    assert log1["label_loss"].to_list() == pytest.approx(log0["label_loss"].to_list(), rel=1e-5)
    assert log1["n_tokens"].to_list() == log0["n_tokens"].to_list()  # the same sequences in every step
    assert (log1["n_pad_tokens"] <= log0["n_pad_tokens"]).all() and log1["n_pad_tokens"].sum() < log0[
        "n_pad_tokens"].sum()
    assert 0 <= bucketed["padding_fraction"] < plain["padding_fraction"]
    for name in w0:
        torch.testing.assert_close(w1[name], w0[name], atol=2e-5, rtol=1e-4)


def test_bucketing_regroups_each_step_and_keeps_the_step_order():
    lengths = [10 * (i % 7) + i for i in range(40)]
    common = {"steps": 5, "micro_batch": 3, "grad_accum": 3}
    plain = loop.schedule(build(TrainConfig, common), lengths)
    bucketed = loop.schedule(build(TrainConfig, {**common, "bucket_by_length": True}), lengths)
    for p, b in zip(plain, bucketed, strict=True):
        assert sorted(sum(p, [])) == sorted(sum(b, [])) and [len(m) for m in p] == [len(m) for m in b]
        widths = [[lengths[i] for i in m] for m in b]
        assert all(min(a) >= max(c) for a, c in zip(widths, widths[1:]))  # longest micro-batch first
    one = {"steps": 5, "micro_batch": 9, "grad_accum": 1}  # a step of one micro-batch is left as it was
    assert loop.schedule(build(TrainConfig, {**one, "bucket_by_length": True}), lengths) == loop.schedule(
        build(TrainConfig, {**one, "bucket_by_length": False}), lengths)


def grads(cfg: TrainConfig, base, ex, rat) -> tuple[float, dict, int]:
    """Loss and gradients of one step of ``cfg`` on four training sequences, and how many elements the
    forward pass saved for the backward pass (checkpointing saves only each layer's inputs)."""
    model, tok = loop.load_base(cfg, base)
    model.train()
    seqs, _ = loop.encode_rows(cfg, tok, loop.training_rows(cfg, ex, rat)[:4], chat=False)
    batch = arms.step_batches(cfg, "main", [collate(seqs, pad_id(tok))])[0]
    saved = []
    torch.manual_seed(0)  # the same LoRA dropout masks in both runs
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        ce, w, _, _ = loop.token_losses(model, batch, False, "cpu")
        loss = (ce * w).sum()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, sum(saved)


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(setup, lora):
    ex, rat, base = setup
    common = {"arm": "freeform", "max_len": 1024, "lora": {"enabled": lora, "r": 4}}
    loss0, g0, saved0 = grads(build(TrainConfig, common), base, ex, rat)
    loss1, g1, saved1 = grads(build(TrainConfig, {**common, "gradient_checkpointing": True}), base, ex, rat)
    assert saved1 < saved0 / 2  # checkpointing is on: the layers' activations are recomputed, not kept
    assert loss1 == pytest.approx(loss0, rel=1e-6)
    assert g1.keys() == g0.keys() and all("lora_" in n for n in g0) == lora
    # every matrix gets a gradient, except lora_A, whose gradient is 0 while lora_B is at its zero init
    assert all(float(g.abs().sum()) > 0 for n, g in g1.items() if g.ndim == 2 and "lora_A" not in n)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], atol=1e-6, rtol=1e-4)


def test_a_lora_run_trains_with_checkpointing_and_warns_nothing(setup, tmp_path):
    ex, rat, base = setup
    cfg = build(TrainConfig, {"arm": "freeform", "steps": 2, "micro_batch": 2, "lr": 1e-2, "conflict_every": 1,
                              "gradient_checkpointing": True, "lora": {"enabled": True, "r": 4}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = loop.train(cfg, tmp_path, ex, rat, base)
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert out["steps"] == 2 and pl.read_parquet(tmp_path / loop.CONFLICT)["cos"].is_finite().all()


def test_a_finished_run_leaves_no_model_alive(setup, tmp_path, monkeypatch):
    ex, rat, base = setup
    alive, load = [], loop.load_base

    def spy(*args):
        model, tok = load(*args)
        alive.append(weakref.ref(model))
        return model, tok

    monkeypatch.setattr(loop, "load_base", spy)
    cfg = build(TrainConfig, {"arm": "freeform", "steps": 2, "micro_batch": 2, "lora": {"enabled": True, "r": 4}})
    loop.train(cfg, tmp_path, ex, rat, base)
    gc.collect()
    assert len(alive) == 1 and alive[0]() is None
