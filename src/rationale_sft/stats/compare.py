"""Comparisons across configurations: paired deltas, per-factor intervals, signed-rank/sign tests, p-adjustment.

The unit of replication is a configuration pair: an arm's run and the reference arm's run that share
every other grid coordinate (family, size, model, base, scale, seed). Each pair gives one Delta (arm minus
reference); per-factor summaries average those Deltas within a level of one factor.

>>> r = pl.DataFrame({"arm": ["label_only", "freeform"] * 3, "family": ["a"] * 6,
...                   "seed": [0, 0, 1, 1, 2, 2], "auroc": [.7, .6, .72, .61, .69, .65]})
>>> d = paired_deltas(r)
>>> d["delta"].round(3).to_list()
[-0.1, -0.11, -0.04]
>>> s = factor_summary(d, ())
>>> s.select("arm", "factor", "n").row(0), round(s["mean"][0], 4)
(('freeform', 'overall', 3), -0.0833)
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats as sps

from rationale_sft.errors import InputError

PAIR_KEYS = ("family", "size", "model", "base", "scale", "seed", "hidden_share")
"Configuration keys that pair an arm's run with its reference run (absent columns are skipped)."


def paired_deltas(results: pl.DataFrame, reference_arm: str = "label_only", metric: str = "auroc",
                  keys: tuple[str, ...] = PAIR_KEYS) -> pl.DataFrame:
    """One row per non-reference run that has a reference run with the same ``keys``: ``delta = arm - ref``.

    >>> paired_deltas(pl.DataFrame({"arm": ["freeform"], "seed": [0], "auroc": [.6]}))
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: no runs of the reference arm 'label_only' in the results (arms present: freeform); set report.reference_arm to one of them
    """
    for col in ("arm", metric):
        if col not in results.columns:
            raise InputError(f"results table has no column {col!r}; columns: {', '.join(results.columns)}")
    keys = tuple(k for k in keys if k in results.columns)
    ref = results.filter(pl.col("arm") == reference_arm)
    if ref.height == 0:
        arms = ", ".join(sorted(set(results["arm"].to_list())))
        raise InputError(f"no runs of the reference arm {reference_arm!r} in the results (arms present: {arms}); "
                         "set report.reference_arm to one of them")
    dup = ref.group_by(keys).len().filter(pl.col("len") > 1)
    if dup.height:
        raise InputError(f"reference arm {reference_arm!r} has {dup.height} duplicated configurations over "
                         f"{', '.join(keys)} (first: {dup.row(0, named=True)}); each must appear once")
    ref = ref.select(*keys, pl.col(metric).alias(f"{metric}_ref"),
                     *([pl.col("run_id").alias("run_id_ref")] if "run_id" in ref.columns else []))
    # columns a previous pairing left (e.g. run_id_ref from per-run tests) are replaced, not suffixed
    others = results.filter(pl.col("arm") != reference_arm).drop(ref.columns[len(keys):], "delta", strict=False)
    out = others.join(ref, on=list(keys), how="inner", nulls_equal=True, maintain_order="left")
    return out.with_columns((pl.col(metric) - pl.col(f"{metric}_ref")).alias("delta"))


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) with a Student-t interval; lo/hi are NaN below two values.

    >>> [round(v, 4) for v in t_interval(np.array([1.0, 2.0, 3.0]))]
    [2.0, -0.4841, 4.4841]
    """
    x = np.asarray(x, np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = sps.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, float(mean - half), float(mean + half)


def signed_tests(d: np.ndarray) -> tuple[float, float]:
    """Two-sided p-values of the Wilcoxon signed-rank test and the sign test that the median Delta is 0.

    Zero differences are dropped (Wilcoxon's original rule); all-zero or empty input gives (1.0, 1.0) /
    (NaN, NaN).

    >>> [round(p, 4) for p in signed_tests(np.array([-0.1, -0.2, -0.05, -0.3, -0.15, 0.02]))]
    [0.0625, 0.2188]
    """
    d = np.asarray(d, np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan, math.nan
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0, 1.0
    p_w = float(sps.wilcoxon(nz, zero_method="wilcox").pvalue)
    p_s = float(sps.binomtest(int((nz > 0).sum()), nz.size, 0.5).pvalue)
    return p_w, p_s


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error); NaNs stay NaN and do not count.

    >>> holm(np.array([0.01, 0.04, 0.03, 0.005])).round(4).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate); NaNs stay NaN.

    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005])).round(4).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def factor_summary(deltas: pl.DataFrame, factors: tuple[str, ...] = ("family", "model", "scale", "base"),
                   level: float = 0.95) -> pl.DataFrame:
    """Mean Delta with t-interval and signed-rank/sign tests, per arm: overall, then per level of each factor.

    Holm and BH adjustments are applied within two families: the ``overall`` rows (the primary question,
    one test per arm) and the per-factor-level rows (exploratory). Columns: arm, factor, level, n, mean, lo,
    hi, p_wilcoxon, p_sign, p_holm, p_bh, method.
    """
    rows = []
    for arm in sorted(set(deltas["arm"].to_list())):
        sub = deltas.filter(pl.col("arm") == arm)
        rows.append(_summary_row(arm, "overall", "all", sub["delta"].to_numpy(), level))
        for factor in (f for f in factors if f in sub.columns):
            for value in sorted(set(sub[factor].to_list()), key=_sort_key):
                d = sub.filter(pl.col(factor).eq_missing(value))["delta"].to_numpy()
                rows.append(_summary_row(arm, factor, level_name(value), d, level))
    table = pl.DataFrame(rows, schema=_SUMMARY_SCHEMA)
    return _adjust(table)


_SUMMARY_SCHEMA = {"arm": pl.String, "factor": pl.String, "level": pl.String, "n": pl.Int64, "mean": pl.Float64,
                   "lo": pl.Float64, "hi": pl.Float64, "p_wilcoxon": pl.Float64, "p_sign": pl.Float64,
                   "method": pl.String}


def _summary_row(arm: str, factor: str, value: str, d: np.ndarray, level: float) -> dict:
    mean, lo, hi = t_interval(d, level)
    p_w, p_s = signed_tests(d)
    return {"arm": arm, "factor": factor, "level": value, "n": int(np.sum(~np.isnan(d))), "mean": mean, "lo": lo,
            "hi": hi, "p_wilcoxon": p_w, "p_sign": p_s,
            "method": f"t-interval ({level:.0%}) over paired configurations; Wilcoxon signed-rank and sign tests"}


def _adjust(table: pl.DataFrame) -> pl.DataFrame:
    primary = (table["factor"] == "overall").to_numpy()
    p = table["p_wilcoxon"].to_numpy().astype(np.float64)
    p_holm, p_bh = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    for family in (primary, ~primary):
        p_holm[family], p_bh[family] = holm(p[family]), benjamini_hochberg(p[family])
    return table.with_columns(pl.Series("p_holm", p_holm), pl.Series("p_bh", p_bh)).select(
        *[c for c in table.columns if c != "method"], "p_holm", "p_bh", "method")


def _sort_key(value) -> tuple:
    return (value is None, isinstance(value, str), value if value is not None else 0)


def level_name(value) -> str:
    """How a factor level is named in summaries: ``(none)`` for missing, whole floats without ``.0``.

    >>> level_name(None), level_name(300.0), level_name("llama")
    ('(none)', '300', 'llama')
    """
    if value is None:
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
