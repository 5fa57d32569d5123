"""Render throughput: subjects rendered per second on a generated UK-Biobank-like MEDS cohort (2 threads).

Usage: python benchmarks/bench_render.py [N_SUBJECTS]   (default 50000). Prints subjects/s per template
(wall clock, and per CPU-second of this process, which a busy shared machine distorts less) and the cost of
the token-budget path relative to the plain render, measured in the same run.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "2")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from rationale_sft.config.render import RenderConfig  # noqa: E402
from rationale_sft.render.stage import render_examples  # noqa: E402

ICD = ["I10", "E11", "E78", "F32", "G47", "H91", "I48", "J45", "K21", "M17", "N18", "R41", "S06", "E66", "I25"]
MEAS = ["EDUCATION_YEARS", "APOE_E4_ALLELES", "BMI", "LDL", "SBP", "HBA1C", "TOWNSEND", "ALCOHOL_UNITS_WEEK"]


def make_cohort(root: Path, n: int, seed: int = 0) -> Path:
    """A MEDS dir and labels for ``n`` subjects: ~6 diagnoses and 8 measurements each."""
    g = np.random.default_rng(seed)
    pt = np.datetime64("2009-06-15T23:59:59", "us")
    n_diag = g.poisson(6, n)
    sid_d = np.repeat(np.arange(n), n_diag)
    days_before = g.integers(1, 365 * 30, sid_d.size).astype("timedelta64[D]")
    diag = pl.DataFrame({"subject_id": sid_d, "time": pt - days_before,
                         "code": np.array([f"ICD10//{c}" for c in ICD])[g.integers(0, len(ICD), sid_d.size)]})
    sid_m = np.repeat(np.arange(n), len(MEAS))
    meas = pl.DataFrame({"subject_id": sid_m, "time": np.full(sid_m.size, pt - np.timedelta64(10, "h")),
                         "code": np.tile([f"UKB//{m}" for m in MEAS], n), "numeric_value": g.normal(5, 2, sid_m.size)})
    events = pl.concat([diag.with_columns(numeric_value=pl.lit(None, pl.Float64)), meas]).with_columns(
        pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
        pl.col("numeric_value").cast(pl.Float32)).sort("subject_id", "time")
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir()
    events.write_parquet(root / "data" / "0.parquet")
    codes = [f"ICD10//{c}" for c in ICD] + [f"UKB//{m}" for m in MEAS]
    pl.DataFrame({"code": codes, "description": [f"Description of {c} (unit)" for c in codes]}).write_parquet(
        root / "metadata" / "codes.parquet")
    return root


def labels_for(n: int, seed: int = 0) -> pl.DataFrame:
    g = np.random.default_rng(seed + 1)
    return pl.DataFrame({"subject_id": np.arange(n, dtype=np.int64),
                         "prediction_time": np.full(n, np.datetime64("2009-06-15T23:59:59", "us")),
                         "boolean_value": g.random(n) < 0.05, "split": ["train"] * n,
                         "age": g.uniform(40, 70, n), "sex": g.choice(["F", "M"], n)}).with_columns(
        pl.col("prediction_time").cast(pl.Datetime("us")))


def timed(fn, repeats: int = 3) -> tuple[float, float]:
    """Best wall-clock seconds and best CPU seconds (user + system, all threads) of ``repeats`` runs."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return best, best_cpu


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        meds = make_cohort(Path(tmp) / "meds", n)
        labels = labels_for(n)
        print(f"render benchmark: {n} subjects, {pl.read_parquet(meds / 'data' / '0.parquet').height} events, "
              f"POLARS_MAX_THREADS={os.environ['POLARS_MAX_THREADS']}")
        base = None
        for template in ("chronological", "by_system"):
            seconds, cpu = timed(lambda: render_examples(meds, labels, RenderConfig(template=template)))
            base = base or seconds
            print(f"  {template:16s} {n / seconds:8.0f} subjects/s wall ({seconds:.2f} s), "
                  f"{n / cpu:8.0f} per CPU-second")
        budget, cpu = timed(lambda: render_examples(meds, labels, RenderConfig(max_tokens=140)), repeats=1)
        print(f"  budget 140 words {n / budget:8.0f} subjects/s wall ({budget / base:.1f}x the plain render), "
              f"{n / cpu:8.0f} per CPU-second")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
