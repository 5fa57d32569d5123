"""Self-consistency scoring: K sampled rationales per subject, P(Yes) after each, risk averaged over them.

Generating arms write one main rationale (greedy by default) and read P(Yes) after it. With
``score.n_samples = K`` they also sample K rationales per subject (``score.temperature``, ``score.top_p``)
and read the answer slot after each, with the same marker rule as the main one: a sample that stops without
the marker (end of sequence or ``max_new_tokens``) has the marker's ids appended and ``marker_found`` false.
Sample j of a subject draws from its own generator, seeded by ``sample_seed(seed, subject_id, j)``, so a
sample does not depend on the batch size, on the order of subjects or on which other subjects are scored.

K = 1 is one *sampled* rationale, not the greedy one: the greedy score stays in ``p_yes``. Only a nucleus
so small that it keeps the single most likely token (``top_p`` near 0) makes every sample the greedy text
(barring two tokens whose probabilities tie in float32 where their logits do not).

One row per subject and sample goes to ``samples.parquet``; ``p_yes_k`` in scores.parquet (the mean of a
subject's K sample risks) and the AUROC against K in score.json are recomputed from those rows.

>>> rows = pl.DataFrame({"subject_id": [1, 1, 2, 2, 3, 3], "sample": [0, 1] * 3,
...                      "p_yes": [0.9, 0.1, 0.2, 0.4, 0.3, 0.5]})
>>> mean_risk(rows, 1)["p_yes_k"].to_list(), mean_risk(rows, 2)["p_yes_k"].round(6).to_list()
([0.9, 0.2, 0.3], [0.5, 0.3, 0.4])
>>> mean_risk(rows, 3)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: samples: k=3 outside 1..2, the samples present
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rationale_sft.errors import InputError
from rationale_sft.seeding import derive_seed

FILE = "samples.parquet"
SAMPLE_SCHEMA = {"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "sample": pl.Int64,
                 "generated_text": pl.String, "marker_found": pl.Boolean, "p_yes": pl.Float64,
                 "label_mass": pl.Float64, "n_generated_tokens": pl.Int64}
SEED_RULE = "derive_seed(score.seed, 'sample <subject_id> <sample>')"
"How each sample's generator seed is derived (recorded in score.json)."


def sample_seed(seed: int, subject_id: int, sample: int) -> int:
    """The generator seed of one subject's ``sample``-th sampled rationale.

    >>> sample_seed(0, 1001, 0) == sample_seed(0, 1001, 0), sample_seed(0, 1001, 0) == sample_seed(0, 1001, 1)
    (True, False)
    """
    return derive_seed(seed, f"sample {int(subject_id)} {int(sample)}")


def k_values(n_samples: int) -> list[int]:
    """The sample counts K at which the AUROC is reported: 1, 2, 4, ... below ``n_samples``, and ``n_samples``.

    >>> k_values(0), k_values(1), k_values(6), k_values(8)
    ([], [1], [1, 2, 4, 6], [1, 2, 4, 8])
    >>> k_values(-1)
    Traceback (most recent call last):
    ...
    ValueError: n_samples must be >= 0, got -1
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    ks = [1 << e for e in range(n_samples.bit_length()) if 1 << e < n_samples]
    return ks + [n_samples] if n_samples else []


def sample_rationales(model, tokenizer, rows: pl.DataFrame, contexts: list[list[int]], tails: list[str], *,
                      marker: str, cfg, device: str) -> pl.DataFrame:
    """``cfg.n_samples`` sampled rationales per row of ``rows`` and P(Yes) after each (``SAMPLE_SCHEMA``)."""
    from rationale_sft.score.stage import generate_and_read

    k, n = cfg.n_samples, rows.height
    ids = rows["subject_id"].to_list()
    seeds = [sample_seed(cfg.seed, sid, j) for sid in ids for j in range(k)]
    # each subject's prompt is prefilled once and its KV cache copied to its K samples
    gens, _, after = generate_and_read(model, tokenizer, contexts, tails, marker=marker, cfg=cfg,
                                       device=device, row_seeds=seeds, repeats=k)
    return pl.DataFrame({
        "subject_id": np.repeat(ids, k), "prediction_time": np.repeat(rows["prediction_time"].to_numpy(), k),
        "sample": np.tile(np.arange(k), n), "generated_text": [g.text for g in gens],
        "marker_found": [g.marker_found for g in gens], "p_yes": np.asarray(after["p_yes"], float),
        "label_mass": np.asarray(after["label_mass"], float), "n_generated_tokens": [len(g.ids) for g in gens],
    }, schema=SAMPLE_SCHEMA).sort("subject_id", "prediction_time", "sample")


def mean_risk(samples: pl.DataFrame, k: int) -> pl.DataFrame:
    """Per subject (and prediction time, when present), ``p_yes_k``: the mean risk of its first ``k`` samples."""
    if k < 1 or k > samples["sample"].max() + 1:
        raise InputError(f"samples: k={k} outside 1..{samples['sample'].max() + 1}, the samples present")
    keys = [c for c in ("subject_id", "prediction_time") if c in samples.columns]
    first = samples.filter(pl.col("sample") < k)
    return first.group_by(keys, maintain_order=True).agg(pl.col("p_yes").mean().alias("p_yes_k")).sort(keys)


def with_sample_risk(table: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """``table`` (scores) with ``p_yes_k``, the mean risk over all of each subject's samples."""
    risk = mean_risk(samples, int(samples["sample"].max()) + 1)
    out = table.join(risk, on=["subject_id", "prediction_time"], how="left", maintain_order="left")
    missing = out.filter(pl.col("p_yes_k").is_null())["subject_id"].to_list()
    if missing:
        raise InputError(f"samples: no samples for subject_id {missing[:5]}; re-score with score.n_samples > 0")
    return out


def sample_metrics(table: pl.DataFrame, samples: pl.DataFrame) -> dict:
    """AUROC of the mean risk over the first K samples for K in ``k_values``, beside the main ``p_yes``.

    >>> t = pl.DataFrame({"subject_id": [1, 2, 3, 4], "label": [True, False, True, False],
    ...                   "p_yes": [0.6, 0.7, 0.8, 0.1]})
    >>> s = pl.DataFrame({"subject_id": [1, 2, 3, 4] * 2, "sample": [0] * 4 + [1] * 4,
    ...                   "p_yes": [0.2, 0.3, 0.9, 0.1, 0.9, 0.1, 0.5, 0.2], "marker_found": [True] * 7 + [False]})
    >>> m = sample_metrics(t, s)
    >>> m["n_samples"], m["auroc_k"], m["sample_marker_found_rate"]
    (2, {'1': 0.75, '2': 1.0}, 0.875)
    """
    from rationale_sft.stats.metrics import auroc

    k_max = int(samples["sample"].max()) + 1
    keys = [c for c in ("subject_id", "prediction_time") if c in table.columns and c in samples.columns]
    labels = table.select(*keys, "label")
    y = table["label"].to_numpy().astype(int)
    both = 0 < y.sum() < len(y)
    by_k = {}
    for k in k_values(k_max):
        risk = labels.join(mean_risk(samples.select(*keys, "sample", "p_yes"), k), on=keys, how="left",
                           maintain_order="left")["p_yes_k"].to_numpy()
        by_k[str(k)] = auroc(y, risk) if both else None
    return {"n_samples": k_max, "auroc_k": by_k, "sample_marker_found_rate": float(samples["marker_found"].mean())}


__all__ = ["FILE", "SAMPLE_SCHEMA", "sample_seed", "k_values", "sample_rationales", "mean_risk", "with_sample_risk",
           "sample_metrics"]
