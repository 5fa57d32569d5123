"""Scoring a real instruct checkpoint (SmolLM2-135M-Instruct, offline): chat template, single-token labels."""

import numpy as np
import polars as pl
import pytest

from rationale_sft.config.score import ScoreConfig
from rationale_sft.score import score
from rationale_sft.score.slot import candidate_ids
from rationale_sft.train.toy import toy_data

hub = pytest.importorskip("rationale_sft.models.hub")


@pytest.mark.slow
def test_smollm2_direct_scores_are_batch_invariant(tmp_path):
    from rationale_sft.models import load_tokenizer

    path = hub.resolve(hub.SMOLLM2)
    tok = load_tokenizer(path)
    assert tok.chat_template and all(len(c) == 1 for c in candidate_ids(tok, "assistant\n"))
    ex, _ = toy_data(n=12, seed=2)
    ex = ex.with_columns(split=pl.lit("held_out"))
    a = score(ScoreConfig(batch_size=1), tmp_path / "a", ex.head(5), path)
    score(ScoreConfig(batch_size=5), tmp_path / "b", ex.head(5), path)
    sa, sb = (pl.read_parquet(tmp_path / d / "scores.parquet") for d in "ab")
    np.testing.assert_allclose(sa["p_yes"].to_numpy(), sb["p_yes"].to_numpy(), atol=1e-4)
    assert a["mode"] == "direct" and (sa["label_mass"] > 0.05).all()  # an instruct model answers Yes/No
