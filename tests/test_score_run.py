"""Scoring on real tiny checkpoints: batch-size invariance (direct and generated), files, marker handling."""

import numpy as np
import polars as pl
import pytest

from rationale_sft.config import build
from rationale_sft.config.score import ScoreConfig
from rationale_sft.config.train import TrainConfig
from rationale_sft.score import score
from rationale_sft.score.decode import cut_at_marker, finish
from rationale_sft.score.stage import SCORE_SCHEMA
from rationale_sft.train.loop import train
from rationale_sft.train.toy import toy_data, toy_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ex, rat = toy_data(n=40, seed=7)
    root = tmp_path_factory.mktemp("score")
    base = toy_model(root / "base", ex["prompt"].to_list() + rat["text"].to_list(), vocab_size=500)
    runs = {}
    for arm in ("label_only", "freeform"):
        cfg = build(TrainConfig, {"arm": arm, "steps": 6, "micro_batch": 4, "lr": 3e-3})
        train(cfg, root / arm, ex, rat, base)
        runs[arm] = root / arm
    return ex, runs


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["label_only", "freeform"])
def test_scores_do_not_depend_on_batch_size(trained, tmp_path, arm):
    ex, runs = trained
    tables = []
    for bs in (1, 7):
        cfg = ScoreConfig(batch_size=bs, max_new_tokens=12)
        score(cfg, tmp_path / str(bs), ex, runs[arm] / "checkpoint")
        tables.append(pl.read_parquet(tmp_path / str(bs) / "scores.parquet"))
    a, b = tables
    assert a["subject_id"].to_list() == b["subject_id"].to_list()
    np.testing.assert_allclose(a["p_yes"].to_numpy(), b["p_yes"].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(a["p_direct"].to_numpy(), b["p_direct"].to_numpy(), atol=1e-5)
    assert a["generated_text"].to_list() == b["generated_text"].to_list()
    assert a["p_yes"].n_unique() > 1  # the scores vary across subjects: the comparison is not vacuous


def test_score_files_follow_the_contract(trained, tmp_path):
    ex, runs = trained
    out = score(ScoreConfig(max_new_tokens=8, save_states=True), tmp_path, ex, runs["freeform"] / "checkpoint")
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    assert dict(scores.schema) == SCORE_SCHEMA
    held = ex.filter(pl.col("split") == "held_out")
    assert scores.height == held.height == out["n"]
    assert ((scores["p_yes"] > 0) & (scores["p_yes"] < 1)).all() and (scores["label_mass"] <= 1 + 1e-6).all()
    assert out["mode"] == "generate" and (scores["n_generated_tokens"] > 0).all()
    preds = pl.read_parquet(tmp_path / "predictions.parquet")
    assert preds.columns == ["subject_id", "prediction_time", "boolean_value", "predicted_boolean_value",
                             "predicted_boolean_probability"]
    states = np.load(tmp_path / "answer_states.npy")
    assert states.shape[0] == scores.height and states.shape[1] == 128
    assert np.load(tmp_path / "answer_states_subjects.npy").tolist() == scores["subject_id"].to_list()


def test_label_only_direct_scores_equal_p_direct(trained, tmp_path):
    ex, runs = trained
    score(ScoreConfig(), tmp_path, ex, runs["label_only"] / "checkpoint")
    s = pl.read_parquet(tmp_path / "scores.parquet")
    assert s["p_yes"].to_list() == s["p_direct"].to_list() and s["marker_found"].null_count() == s.height


def test_marker_cut_and_append(trained):
    from rationale_sft.models import load_tokenizer

    ex, runs = trained
    tok = load_tokenizer(runs["freeform"] / "checkpoint")
    ids = tok("Old age.\nAnswer: Yes", add_special_tokens=False)["input_ids"]
    cut = cut_at_marker(tok, ids, "\nAnswer:")
    assert tok.decode(ids[:cut]).endswith("\nAnswer:") and cut < len(ids)
    marker = tok("\nAnswer:", add_special_tokens=False)["input_ids"]
    g = finish(tok, tok("no marker here", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] * 2,
               "\nAnswer:", marker, {tok.eos_token_id})
    assert not g.marker_found and g.ids[-len(marker):] == marker and g.text == "no marker here"


def test_multi_token_label_words_sum_their_log_likelihood(trained):
    import torch

    from rationale_sft.models import load
    from rationale_sft.score.slot import candidate_ids, slot_scores

    ex, runs = trained
    model, tok = load(runs["label_only"] / "checkpoint")
    model.eval()
    cands = candidate_ids(tok, "\n")  # without the leading space the toy words take several tokens
    assert any(len(c) > 1 for c in cands)
    contexts = [tok(p + "\n", add_special_tokens=False)["input_ids"] for p in ex["prompt"][:3]]
    got = slot_scores(model, tok, contexts, ["\n"] * 3, batch_size=2, device="cpu")
    for i, ctx in enumerate(contexts):
        logp = []
        for word in cands:
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([ctx + word])).logits[0].float(), -1)
            logp.append(sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(word)))
        p = torch.tensor(logp).exp()
        assert got["p_yes"][i] == pytest.approx(float(p[0] / p.sum()), abs=1e-5)
        assert got["label_mass"][i] == pytest.approx(float(p.sum()), rel=1e-4)


BF16_ATOL = 0.01
"""|P(Yes) in bfloat16 - P(Yes) in float32| allowed. bfloat16 keeps 8 significant bits (a relative step of
2**-8 = 0.004 per weight and activation); through 2 layers that moves the Yes-No logit gap by a few hundredths
at most, and P(Yes) by at most a quarter of that (its slope in the gap is p(1-p) <= 0.25). Seen on this
fixture: 0.0007, with a correlation of 0.97 across subjects whose float32 P(Yes) spread is only 0.0004."""


def test_bfloat16_scores_stay_close_to_float32_and_score_json_records_the_dtype(trained, tmp_path, bf16_cases):
    ex, runs = trained

    def run(name, bf16):
        cfg = ScoreConfig(batch_size=0, dtype="bfloat16" if bf16 else "float32")
        return score(cfg, tmp_path / name, ex, runs["label_only"] / "checkpoint"), pl.read_parquet(
            tmp_path / name / "scores.parquet")["p_yes"].to_numpy()

    (fp32, p32), (emulated, p_emu), (native, p_nat) = bf16_cases(run)
    assert fp32["dtype"] == emulated["dtype"] == "float32" and native["dtype"] == "bfloat16"
    assert fp32["batch_size"] == 8 and fp32["config"]["batch_size"] == 0  # auto, on cpu
    assert (p_emu == p32).all()
    gap = np.abs(p_nat - p32)
    assert 0 < gap.max() < BF16_ATOL, gap.max()
    assert np.corrcoef(p_nat, p32)[0, 1] > 0.9  # the subjects keep their order of risk, nearly


def test_float32_scores_are_the_plain_checkpoints(trained, tmp_path):
    from rationale_sft.models import load
    from rationale_sft.score.stage import scoring_inputs, select_split
    from rationale_sft.score.slot import slot_scores

    ex, runs = trained
    ckpt = runs["label_only"] / "checkpoint"
    out = score(ScoreConfig(), tmp_path, ex, ckpt)
    model, tok = load(ckpt)
    model.eval()
    assert out["dtype"] == "float32" and next(model.parameters()).dtype.is_floating_point
    cfg = ScoreConfig()
    _, _, (contexts, tails, _) = scoring_inputs(cfg, ckpt, model, tok, select_split(ex, cfg.split))
    want = slot_scores(model, tok, contexts, tails, batch_size=cfg.batch_size, device="cpu")["p_yes"]
    assert pl.read_parquet(tmp_path / "scores.parquet")["p_yes"].to_list() == want.tolist()


def test_direct_scoring_reports_progress_in_a_log(trained, tmp_path, capsys, monkeypatch):
    from rationale_sft import progress

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    ex, runs = trained
    out = score(ScoreConfig(batch_size=3), tmp_path, ex, runs["label_only"] / "checkpoint")
    n = out["n"]
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("score:")]
    assert [ln.split(" (")[0] for ln in lines] == [f"score: {i}/{n} texts" for i in range(3, n, 3)] + [
        f"score: {n}/{n} texts"]
    assert all("texts/s, elapsed" in ln for ln in lines)
