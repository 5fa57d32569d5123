"""K sampled rationales per subject: reproducible under a seed, independent of batch and companions, the greedy
marker rule, tiny-nucleus samples equal greedy, rows and metrics that agree, bad values refused."""

import json

import numpy as np
import polars as pl
import pytest

from rationale_sft.config import ConfigError, build
from rationale_sft.config.score import ScoreConfig
from rationale_sft.score import score
from rationale_sft.score.decode import decode_to_marker
from rationale_sft.score.stage import SAMPLE_COLUMNS, SCORE_SCHEMA, generate_and_read, marker_text
from rationale_sft.score.samples import SAMPLE_SCHEMA, mean_risk, sample_metrics
from rationale_sft.score.slot import slot_scores
from rationale_sft.train.toy import toy_data, toy_model

GEN = {"mode": "generate", "max_new_tokens": 6, "temperature": 1.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ex, rat = toy_data(n=30, seed=5)
    base = toy_model(tmp_path_factory.mktemp("samples") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                     vocab_size=400)
    return ex, base


def run(world, out, **kw):
    ex, base = world
    examples = kw.pop("examples", ex)
    summary = score(ScoreConfig(**{**GEN, **kw}), out, examples, base)
    read = lambda name: pl.read_parquet(out / name) if (out / name).exists() else None  # noqa: E731
    return summary, read("scores.parquet"), read("samples.parquet")


def test_samples_follow_the_seed_not_the_batch(world, tmp_path):
    a, scores, s1 = run(world, tmp_path / "a", n_samples=3, batch_size=8)
    _, _, s2 = run(world, tmp_path / "b", n_samples=3, batch_size=3)
    _, _, s3 = run(world, tmp_path / "c", n_samples=3, batch_size=8, seed=1)
    assert dict(s1.schema) == SAMPLE_SCHEMA and s1.height == 3 * scores.height
    assert s1["generated_text"].to_list() == s2["generated_text"].to_list()
    np.testing.assert_allclose(s1["p_yes"].to_numpy(), s2["p_yes"].to_numpy(), atol=1e-5)
    assert s1["generated_text"].to_list() != s3["generated_text"].to_list()
    per_subject = s1.group_by("subject_id").agg(pl.col("generated_text").n_unique())
    assert (per_subject["generated_text"] > 1).any()  # the samples of a subject differ: not one path K times
    assert s1["p_yes"].n_unique() > 1


def test_a_subjects_samples_do_not_depend_on_the_other_subjects(world, tmp_path):
    ex, _ = world
    _, _, full = run(world, tmp_path / "all", n_samples=2, batch_size=4)
    held = ex.filter(pl.col("split") == "held_out")["subject_id"].to_list()
    part = ex.filter(pl.col("subject_id").is_in(held[1::2]))
    _, _, sub = run(world, tmp_path / "part", n_samples=2, batch_size=2, examples=part)
    want = full.filter(pl.col("subject_id").is_in(held[1::2]))
    assert sub["generated_text"].to_list() == want["generated_text"].to_list()


def test_rows_score_table_and_summary_agree(world, tmp_path):
    summary, scores, samples = run(world, tmp_path, n_samples=5)
    assert dict(scores.schema) == {**SCORE_SCHEMA, **SAMPLE_COLUMNS}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.parquet", "samples.parquet", "score.json",
                                                          "scores.parquet"]
    risk = mean_risk(samples, 5)
    np.testing.assert_allclose(scores["p_yes_k"].to_numpy(), risk["p_yes_k"].to_numpy())
    on_disk = json.loads((tmp_path / "score.json").read_text())
    assert list(on_disk["auroc_k"]) == ["1", "2", "4", "5"] and on_disk["n_samples"] == 5
    assert on_disk["auroc_k"] == sample_metrics(scores, samples)["auroc_k"] == summary["auroc_k"]
    assert on_disk["seeds"]["samples"].startswith("derive_seed(score.seed")


def test_samples_without_the_marker_get_it_appended_and_read_after_it(world):
    from rationale_sft import models

    ex, base = world
    model, tok = models.load(base)
    model.eval()
    contexts = [tok(p, add_special_tokens=False)["input_ids"] for p in ex["prompt"][:4]]
    tails = [p[-16:] for p in ex["prompt"][:4]]
    cfg = ScoreConfig(**{**GEN, "max_new_tokens": 3})
    gens, direct, after = generate_and_read(model, tok, contexts, tails, marker="Answer:", cfg=cfg, device="cpu",
                                            row_seeds=[11, 12, 13, 14])
    marker = tok(marker_text("Answer:"), add_special_tokens=False)["input_ids"]
    assert all(not g.marker_found and g.ids[-len(marker):] == marker for g in gens)
    want = slot_scores(model, tok, [c + g.ids for c, g in zip(contexts, gens)], ["Answer:"] * 4, batch_size=1,
                       device="cpu")
    np.testing.assert_allclose(after["p_yes"], want["p_yes"], rtol=1e-4, atol=1e-6)


def test_a_tiny_nucleus_samples_the_greedy_text(world, tmp_path):
    _, scores, samples = run(world, tmp_path, n_samples=2, top_p=1e-9)
    greedy = dict(zip(scores["subject_id"].to_list(), scores["generated_text"].to_list()))
    assert all(greedy[s] == t for s, t in zip(samples["subject_id"].to_list(), samples["generated_text"].to_list()))
    np.testing.assert_allclose(scores["p_yes_k"].to_numpy(), scores["p_yes"].to_numpy(), rtol=1e-4, atol=1e-6)


def test_sampled_rows_stop_on_the_marker_like_greedy_rows(world):
    from rationale_sft import models

    ex, base = world
    model, tok = models.load(base)
    model.eval()
    contexts = [tok(p, add_special_tokens=False)["input_ids"] for p in ex["prompt"][:4]]
    args = dict(max_new_tokens=12, batch_size=4, temperature=1.0, seed=0, device="cpu", slot_ids=[5])
    free = decode_to_marker(model, tok, contexts, marker="\u2400", marker_ids=[tok.eos_token_id], greedy=True,
                            **{**args, "max_new_tokens": 8})
    marker = free.gens[0].ids[3:5]  # ids row 0 writes greedily: it stops there, as the others may
    greedy = decode_to_marker(model, tok, contexts, marker=tok.decode(marker), marker_ids=marker, greedy=True, **args)
    nucleus = decode_to_marker(model, tok, contexts, marker=tok.decode(marker), marker_ids=marker, greedy=False,
                               top_p=1e-9, row_seeds=[3, 1, 4, 1], **args)
    assert greedy.gens[0].marker_found and nucleus.gens == greedy.gens
    np.testing.assert_allclose(nucleus.after.logp, greedy.after.logp, rtol=1e-5, atol=1e-6)


def test_direct_scoring_ignores_n_samples_and_a_rescore_drops_old_samples(world, tmp_path):
    run(world, tmp_path, n_samples=2)
    assert (tmp_path / "samples.parquet").exists()
    summary, scores, samples = run(world, tmp_path, n_samples=2, mode="direct")
    assert samples is None and "p_yes_k" not in scores.columns and "auroc_k" not in summary


@pytest.mark.parametrize("override, key", [("n_samples=-1", "n_samples"), ("top_p=0", "top_p"),
                                           ("top_p=1.5", "top_p"), ("n_samples=two", "n_samples"),
                                           ("dtype=float16", "dtype"), ("batch_size=-1", "batch_size")])
def test_bad_sampling_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        build(ScoreConfig, {}, [override])


def test_decoder_refuses_bad_seeds_and_nucleus(world):
    from rationale_sft import models

    _, base = world
    model, tok = models.load(base)
    args = dict(marker="x", marker_ids=[5], max_new_tokens=2, batch_size=2, greedy=False, temperature=1.0, seed=0,
                device="cpu")
    with pytest.raises(ValueError, match="row_seeds has 1 seeds for 2 contexts"):
        decode_to_marker(model, tok, [[1, 2], [3]], row_seeds=[1], **args)
    with pytest.raises(ValueError, match="top_p must be in"):
        decode_to_marker(model, tok, [[1, 2], [3]], top_p=0.0, **args)


def test_cli_scores_samples(world, tmp_path, capsys):
    from rationale_sft.cli import main

    ex, base = world
    ex.write_parquet(tmp_path / "examples.parquet")
    assert main(["score", "--examples", str(tmp_path / "examples.parquet"), "--model", str(base), "--out",
                 str(tmp_path / "run"), "score.mode=generate", "score.max_new_tokens=4", "score.n_samples=2"]) == 0
    assert "AUROC over 2 samples" in capsys.readouterr().out and (tmp_path / "run" / "samples.parquet").exists()
