"""The ``baselines`` stage: fit on the train split (or a subset), predict held_out, write predictions + metrics.

Outputs (docs/contracts.md section 3): ``predictions/<model>.parquet`` in the meds-evaluation prediction
schema and ``metrics.json`` ``{model: {auroc, auprc, n, n_pos}}``, plus ``vocab.json`` (the feature
vocabulary learnt on the training subjects). ``predicted_boolean_value`` thresholds the probability at
the training prevalence, so that it is informative for a rare outcome.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

import numpy as np
import polars as pl
from rich.progress import Progress, TimeElapsedColumn

from rationale_sft import rundir
from rationale_sft.baselines.features import build_features
from rationale_sft.baselines.models import FITTERS, Split
from rationale_sft.cohort import meds_io
from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.errors import InputError
from rationale_sft.seeding import derive_seed
from rationale_sft.stats.metrics import auroc, average_precision

PREDICTION_SCHEMA = {"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "boolean_value": pl.Boolean,
                     "predicted_boolean_value": pl.Boolean, "predicted_boolean_probability": pl.Float64}


def prediction_frame(test: pl.DataFrame, prob: np.ndarray, threshold: float) -> pl.DataFrame:
    """Held-out predictions in the meds-evaluation schema.

    >>> import datetime as dt
    >>> t = pl.DataFrame({"subject_id": [1, 2], "prediction_time": [dt.datetime(2020, 1, 1)] * 2,
    ...                   "boolean_value": [True, False]})
    >>> prediction_frame(t, np.array([0.3, 0.05]), 0.1)["predicted_boolean_value"].to_list()
    [True, False]
    """
    return test.select("subject_id", "prediction_time", "boolean_value").with_columns(
        predicted_boolean_value=pl.Series(prob >= threshold),
        predicted_boolean_probability=pl.Series(prob, dtype=pl.Float64)).cast(PREDICTION_SCHEMA)


def metrics_of(pred: pl.DataFrame) -> dict:
    """AUROC, average precision (AUPRC), n and n_pos of one prediction table."""
    y = pred["boolean_value"].to_numpy()
    p = pred["predicted_boolean_probability"].to_numpy()
    return {"auroc": auroc(y, p), "auprc": average_precision(y, p), "n": int(y.size), "n_pos": int(y.sum())}


def split_rows(labels: pl.DataFrame, train_ids: Collection[int] | None, labels_path: Path) -> dict:
    """Train (optionally restricted to ``train_ids``), tuning and held-out label rows, each checked."""
    train = labels.filter(pl.col("split") == "train")
    if train_ids is not None:
        ids = pl.Series("subject_id", list(train_ids), dtype=pl.Int64)
        outside = ids.filter(~ids.is_in(train["subject_id"].implode()))
        if outside.len():
            raise InputError(f"{outside.len()} training subject(s) (e.g. {outside[0]}) are not in the train split "
                             f"of {labels_path}; subsets must come from the same labels file")
        train = train.filter(pl.col("subject_id").is_in(ids.implode()))
    parts = {"train": train, "tuning": labels.filter(pl.col("split") == "tuning"),
             "held_out": labels.filter(pl.col("split") == "held_out")}
    for name in ("train", "held_out"):
        n_pos = int(parts[name]["boolean_value"].sum())
        if n_pos in (0, parts[name].height):
            raise InputError(f"{labels_path}: the {name} rows need both classes, got n={parts[name].height}, "
                             f"n_pos={n_pos}; use a larger cohort or subset")
    return parts


def oracle_probabilities(meds_dir: Path, test: pl.DataFrame) -> tuple[np.ndarray | None, str]:
    """True risks of the held-out rows from ``truth/risk.parquet`` (None, reason when unusable)."""
    truth = meds_io.read_truth(meds_dir)
    if truth is None:
        return None, "no truth/risk.parquet in the MEDS directory"
    joined = test.select("subject_id", "prediction_time").join(truth, on=["subject_id", "prediction_time"],
                                                               how="left", maintain_order="left")
    missing = int(joined["risk"].null_count())
    if missing:
        return None, f"truth/risk.parquet lacks {missing} held-out (subject, prediction_time) rows"
    return joined["risk"].to_numpy(), "true risk"


def _fit_all(cfg: BaselinesConfig, parts: dict, meds_dir: Path) -> tuple[dict, dict, dict]:
    X_train, names, vocab = build_features(parts["train"], meds_dir, min_count=cfg.min_code_count)
    data = {"train": Split(X_train, parts["train"]["boolean_value"].to_numpy())}
    for name in ("tuning", "held_out"):
        X = build_features(parts[name], meds_dir, vocab)[0] if parts[name].height else X_train[:0]
        data[name] = Split(X, parts[name]["boolean_value"].to_numpy())
    probs, info = {}, {"n_features": len(names)}
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("baselines", total=len(cfg.models))
        for model in cfg.models:
            bar.update(task, description=f"fitting {model}")
            t0 = time.perf_counter()
            if model == "oracle":
                p, why = oracle_probabilities(meds_dir, parts["held_out"])
                info[model] = {"source": why}
            else:
                p, info[model] = FITTERS[model](data["train"], data["tuning"], data["held_out"], cfg)
            if p is not None:
                probs[model] = p
                info[model]["seconds"] = round(time.perf_counter() - t0, 3)
            bar.advance(task)
    return probs, info, {"vocab": vocab, "feature_names": names}


def fit_baselines(cfg: BaselinesConfig, labels_path: str | Path, meds_dir: str | Path, out_dir: str | Path,
                  train_ids: Collection[int] | None = None) -> dict:
    """Fit every configured model, write predictions and metrics into ``out_dir``; return the metrics.

    A finished ``out_dir`` (its ``DONE`` exists) is not recomputed: its metrics are returned.
    """
    labels_path, meds_dir, out_dir = Path(labels_path), Path(meds_dir), Path(out_dir)

    def work(run_dir: Path) -> dict:
        parts = split_rows(meds_io.read_labels(labels_path), train_ids, labels_path)
        probs, info, features = _fit_all(cfg, parts, meds_dir)
        threshold = float(parts["train"]["boolean_value"].mean())
        metrics = {}
        for model, p in probs.items():
            pred = prediction_frame(parts["held_out"], p, threshold)
            rundir.write_parquet(pred, run_dir / "predictions" / f"{model}.parquet")
            metrics[model] = metrics_of(pred)
        rundir.write_json(run_dir / "vocab.json", features)
        rundir.write_json(run_dir / "metrics.json", metrics)
        return {"models": info, "threshold": threshold, "n_train": parts["train"].height,
                "n_tuning": parts["tuning"].height, "train_subset": train_ids is not None}

    rundir.run_stage(out_dir, work, cfg=cfg, seeds={"seed": cfg.seed, "lightgbm": derive_seed(cfg.seed, "lightgbm")},
                     inputs={"labels": labels_path, "meds": meds_dir})
    return rundir.read_json(out_dir / "metrics.json")
