"""Layer probes on real tiny models: states equal a plain forward at any batch size, a label the prompt carries is
found from the layer that can see it, the slots follow the arm, and probes run over a training run's checkpoints."""

import datetime as dt
import json
import shutil

import numpy as np
import polars as pl
import pytest

from rationale_sft.config import build
from rationale_sft.config.score import ScoreConfig
from rationale_sft.config.train import TrainConfig
from rationale_sft.probes.layers import (FILE, SCHEMA, checkpoint_dirs, layer_pass, probe_checkpoints,
                                              probe_layers)
from rationale_sft.errors import InputError
from rationale_sft.score import score
from rationale_sft.train.toy import toy_data, toy_model

N_LAYERS = 2  # the "xs" llama: hidden states 0 (embeddings), 1, 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ex, rat = toy_data(n=80, seed=5)
    root = tmp_path_factory.mktemp("layers")
    base = toy_model(root / "base", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=400)
    gen = root / "generating"  # the base, scored as a rationale arm would be
    shutil.copytree(base, gen)
    meta = {"arm": "freeform", "scoring": "generate", "answer_marker": "Answer:", "prefix": "", "chat": False,
            "max_len": 1024, "step": 3}
    (gen / "training.json").write_text(json.dumps(meta))
    return {"ex": ex, "base": base, "gen": gen, "root": root}


def marked(labels: list[bool], mark: bool) -> pl.DataFrame:
    """Held-out examples whose prompts are equal, or (``mark``) differ by one word that states the label."""
    word = lambda y: ("alpha" if y else "beta") if mark else "gamma"  # noqa: E731
    return pl.DataFrame({"subject_id": range(len(labels)), "prediction_time": [dt.datetime(2010, 1, 1)] * len(labels),
                         "split": ["held_out"] * len(labels), "label": labels,
                         "prompt": [f"Record {word(y)} seen.\nAnswer:" for y in labels]})


def test_layer_states_equal_a_plain_forward_at_any_batch_size(world):
    import torch

    from rationale_sft import models

    model, tok = models.load(world["base"])
    model.eval()
    contexts = [tok(p, add_special_tokens=False)["input_ids"][-n:] for p, n in zip(world["ex"]["prompt"][:5],
                                                                                    (40, 90, 12, 60, 90))]
    runs = [layer_pass(model, contexts, [5, 9], pad=0, batch_size=bs, device="cpu") for bs in (1, 2, 5)]
    states = runs[0][0]
    assert states.shape == (5, N_LAYERS + 1, 128)
    for s, logp, top in runs[1:]:
        np.testing.assert_allclose(s, states, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(logp, runs[0][1], rtol=1e-4, atol=1e-5)
        assert top.tolist() == runs[0][2].tolist()
    for i, c in enumerate(contexts):
        with torch.no_grad():
            out = model(torch.tensor([c]), output_hidden_states=True)
        want = np.stack([h[0, -1].numpy() for h in out.hidden_states])
        np.testing.assert_allclose(states[i], want, rtol=1e-4, atol=1e-5)


def test_a_label_word_in_the_prompt_is_found_from_the_first_layer_that_sees_it(world):
    labels = [bool(i % 2) for i in range(20)]
    t = probe_layers(world["base"], marked(labels, mark=True), folds=3)
    probe = dict(zip(t.filter(pl.col("measure") == "probe")["layer"], t.filter(pl.col("measure") == "probe")["auroc"]))
    # the slot's token (':') is the same for all: its embedding (layer 0) cannot tell; attention (layer 1 on) can.
    # Equal states leave the probe its training folds' prevalence: near 0.5, not exactly (a fold artefact).
    assert probe[0] < 0.6 and all(probe[k] == 1.0 for k in range(1, N_LAYERS + 1))
    blind = probe_layers(world["base"], marked(labels, mark=False), folds=3)
    assert (blind.filter(pl.col("measure") == "probe")["auroc"] < 0.6).all()  # equal prompts: no layer separates
    assert blind.filter(pl.col("measure") == "p_yes")["auroc"].to_list() == [0.5]  # nor does P(Yes): all tied
    assert dict(t.schema) == {k: v for k, v in SCHEMA.items() if k not in ("step", "checkpoint")}
    assert t["slot"].unique().to_list() == ["direct"] and t.height == N_LAYERS + 2


def test_a_generating_arm_is_probed_after_its_rationale_as_score_writes_it(world, tmp_path):
    cfg = ScoreConfig(max_new_tokens=8, batch_size=4)
    t = probe_layers(world["gen"], world["ex"], cfg=cfg, folds=3)
    assert t.group_by("slot").len().sort("slot").rows() == [("after", N_LAYERS + 2), ("direct", N_LAYERS + 2)]
    summary = score(cfg, tmp_path, world["ex"], world["gen"])
    p_yes = {r["slot"]: r["auroc"] for r in t.filter(pl.col("measure") == "p_yes").to_dicts()}
    assert p_yes["after"] == pytest.approx(summary["auroc"]) and p_yes["direct"] == pytest.approx(summary["auroc_direct"])
    assert t.filter(pl.col("measure") == "probe")["n"].to_list() == [summary["n"]] * 2 * (N_LAYERS + 1)
    from_scores = probe_layers(world["gen"], world["ex"], cfg=cfg, folds=3,
                               scores=pl.read_parquet(tmp_path / "scores.parquet"))
    assert from_scores.filter(pl.col("slot") == "direct").equals(t.filter(pl.col("slot") == "direct"))
    assert from_scores.filter(pl.col("slot") == "after").height == N_LAYERS + 2
    with pytest.raises(InputError, match="no generated_text for subject_id"):
        probe_layers(world["gen"], world["ex"], cfg=cfg, folds=3, scores=pl.DataFrame(
            {"subject_id": [1], "generated_text": ["x"]}))


@pytest.mark.slow
def test_probes_over_a_training_runs_checkpoints(world, tmp_path, monkeypatch, capsys):
    from rationale_sft.cli import main

    from rationale_sft.train import loop

    with pytest.raises(InputError, match="no checkpoint"):
        checkpoint_dirs(tmp_path)
    save = loop.save_checkpoint

    def keep(run_dir, *args):  # keep every intermediate checkpoint under checkpoints/step-N
        final = save(run_dir, *args)
        step = json.loads((final / "training.json").read_text())["step"]
        shutil.copytree(final, run_dir / "checkpoints" / f"step-{step}")
        return final

    monkeypatch.setattr(loop, "save_checkpoint", keep)
    loop.train(build(TrainConfig, {"arm": "label_only", "steps": 4, "micro_batch": 4, "lr": 3e-3,
                                   "checkpoint_every": 2}), tmp_path, world["ex"], None, world["base"])
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [2, 4]
    t = probe_checkpoints(tmp_path, world["ex"], folds=3)
    assert dict(t.schema) == SCHEMA and pl.read_parquet(tmp_path / FILE).equals(t)
    assert t["step"].unique().sort().to_list() == [2, 4] and t["checkpoint"].unique().sort().to_list() == [
        "checkpoint", "checkpoints/step-2"]
    assert t.filter(pl.col("step") == 4).height == N_LAYERS + 2 and (t["slot"] == "direct").all()
    final = probe_layers(tmp_path / "checkpoint", world["ex"], folds=3)
    keys = ["measure", "layer"]
    assert t.filter(pl.col("step") == 4).drop("step", "checkpoint").sort(keys).equals(final.sort(keys))
    world["ex"].write_parquet(tmp_path / "examples.parquet")
    cli = ["score", "--examples", str(tmp_path / "examples.parquet"), "--out", str(tmp_path), "--probe-layers"]
    assert main(cli + ["--probe-folds", "3"]) == 0
    assert pl.read_parquet(tmp_path / FILE).equals(t)  # same folds seed, same checkpoints: the same table
    out = capsys.readouterr().out
    assert "step 4, direct slot: best probe layer" in out and "2 checkpoint(s)" in out
    assert main(cli + ["--probe-folds", "1"]) == 2
    assert "probe folds must be >= 2" in capsys.readouterr().err


@pytest.mark.slow
def test_a_grid_probes_the_after_slot_at_the_last_checkpoint_only_on_its_scores(world, tmp_path):
    cfg = ScoreConfig(max_new_tokens=8, batch_size=4)
    run = tmp_path / "run"
    shutil.copytree(world["gen"], run / "checkpoint")
    shutil.copytree(world["gen"], run / "checkpoints" / "step-000001")
    (run / "checkpoints" / "step-000001" / "training.json").write_text(
        json.dumps({**json.loads((world["gen"] / "training.json").read_text()), "step": 1}))
    score(cfg, tmp_path / "scored", world["ex"], world["gen"])
    scores = pl.read_parquet(tmp_path / "scored" / "scores.parquet")
    t = probe_checkpoints(run, world["ex"], cfg=cfg, folds=3, after="final", scores=scores)
    assert t.group_by("step", "slot").len().sort("step", "slot").rows() == [
        (1, "direct", N_LAYERS + 2), (3, "after", N_LAYERS + 2), (3, "direct", N_LAYERS + 2)]
    last = probe_layers(world["gen"], world["ex"], cfg=cfg, folds=3, scores=scores)
    keys = ["slot", "measure", "layer"]
    assert t.filter(pl.col("step") == 3).drop("step", "checkpoint").sort(keys).equals(last.sort(keys))
    with pytest.raises(InputError, match="after must be true, false or 'final'"):
        probe_checkpoints(run, world["ex"], after="last")
