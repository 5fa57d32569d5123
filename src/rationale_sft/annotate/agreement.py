"""Rating statistics: per-criterion means with intervals, and inter-rater agreement.

Means pool every rating of a criterion. Intervals: ``bootstrap`` resamples items (all ratings of a
resampled item come along, so raters of one item are not treated as independent) and takes percentiles;
``t`` is a t interval over per-item mean scores. Agreement per criterion: Cohen's kappa with quadratic
weights when exactly two raters rated (on the items both rated), and Krippendorff's alpha (ordinal
distance, value domain 1-5) whenever at least two raters rated; alpha is the primary figure for more than
two raters, kappa for two.

>>> round(weighted_kappa([1, 2, 3], [1, 3, 3]), 6)  # 1 - (1/3) / (15/9)
0.8
>>> weighted_kappa([3, 3], [3, 3]) is None  # no variation: undefined
True
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
from scipy import stats

from rationale_sft.config.annotate import CRITERIA, ImportConfig
from rationale_sft.seeding import rng

SCALE = (1, 2, 3, 4, 5)


def weighted_kappa(a: list[int], b: list[int]) -> float | None:
    """Cohen's kappa with quadratic weights on the 1-5 scale; None when it is undefined."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa (no variation) is reported as None below
        value = cohen_kappa_score(a, b, labels=list(SCALE), weights="quadratic")
    return None if not math.isfinite(value) else float(value)


def ordinal_alpha(matrix: np.ndarray) -> float | None:
    """Krippendorff's alpha (ordinal) of a raters x items matrix with NaN for missing; None if undefined.

    >>> ordinal_alpha(np.array([[1, 2, 3, np.nan], [1, 2, 3, 4]]))
    1.0
    """
    import krippendorff

    if (np.sum(~np.isnan(matrix), axis=0) >= 2).sum() < 1:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal",
                                       value_domain=list(SCALE))
    except ValueError:  # one value only: no variation to agree about
        return None
    return None if not math.isfinite(value) else float(value)


def mean_interval(ratings: pl.DataFrame, criterion: str, cfg: ImportConfig) -> dict:
    """Mean of one criterion with a ``cfg.method`` interval at ``cfg.level``."""
    df = ratings.filter(pl.col(criterion).is_not_null())
    if df.is_empty():
        return {"n_ratings": 0, "n_items": 0, "mean": None, "ci_low": None, "ci_high": None}
    per_item = df.group_by("item_id").agg(pl.col(criterion).sum().alias("s"), pl.len().alias("n")).sort("item_id")
    sums, counts = per_item["s"].to_numpy().astype(float), per_item["n"].to_numpy().astype(float)
    low, high = (_bootstrap(sums, counts, cfg) if cfg.method == "bootstrap" else _t_interval(sums / counts, cfg))
    return {"n_ratings": int(counts.sum()), "n_items": len(sums), "mean": float(sums.sum() / counts.sum()),
            "ci_low": low, "ci_high": high}


def _bootstrap(sums: np.ndarray, counts: np.ndarray, cfg: ImportConfig) -> tuple[float | None, float | None]:
    if len(sums) < 2:
        return None, None
    idx = rng(cfg.seed, "annotate_bootstrap").integers(0, len(sums), size=(cfg.n_bootstrap, len(sums)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - cfg.level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _t_interval(item_means: np.ndarray, cfg: ImportConfig) -> tuple[float | None, float | None]:
    if len(item_means) < 2:
        return None, None
    half = stats.t.ppf(0.5 + cfg.level / 2, len(item_means) - 1) * stats.sem(item_means)
    centre = float(item_means.mean())
    return centre - float(half), centre + float(half)


def agreement(ratings: pl.DataFrame, criterion: str) -> dict:
    """Kappa (two raters) and ordinal alpha (two or more raters) for one criterion."""
    df = ratings.filter(pl.col(criterion).is_not_null())
    raters = sorted(df["rater"].unique().to_list())
    out = {"raters": raters, "n_raters": len(raters), "kappa_quadratic": None, "n_items_both": None,
           "alpha_ordinal": None, "primary": None}
    if len(raters) < 2:
        return out
    wide = df.pivot(on="rater", index="item_id", values=criterion).sort("item_id")
    matrix = wide.select(raters).to_numpy().astype(float).T
    out["alpha_ordinal"] = ordinal_alpha(matrix)
    out["primary"] = "alpha_ordinal"
    if len(raters) == 2:
        both = ~np.isnan(matrix).any(axis=0)
        out["n_items_both"] = int(both.sum())
        if both.sum() >= 2:
            out["kappa_quadratic"] = weighted_kappa(matrix[0, both].astype(int).tolist(),
                                                    matrix[1, both].astype(int).tolist())
        out["primary"] = "kappa_quadratic"
    return out


def summarise(ratings: pl.DataFrame, cfg: ImportConfig, groups: tuple[str, ...] = ("style", "mode", "backend")) -> dict:
    """Everything in agreement.json: per-criterion means, intervals, agreement, and means by group."""
    method = ("percentile bootstrap over items" if cfg.method == "bootstrap" else "t interval over item means")
    result = {"n_ratings": ratings.height, "n_items": ratings["item_id"].n_unique(),
              "raters": sorted(ratings["rater"].unique().to_list()),
              "interval": {"method": method, "level": cfg.level, "n_bootstrap": cfg.n_bootstrap, "seed": cfg.seed},
              "criteria": {c: {**mean_interval(ratings, c, cfg), **agreement(ratings, c)} for c in CRITERIA},
              "by_group": {}}
    for group in (g for g in groups if g in ratings.columns):
        table = ratings.group_by(group).agg([pl.len().alias("n_ratings"), *[pl.col(c).mean() for c in CRITERIA]])
        result["by_group"][group] = table.sort(group).to_dicts()
    return result


def to_markdown(summary: dict) -> str:
    """agreement.md: the same figures as agreement.json, as tables."""
    iv = summary["interval"]
    lines = [f"# Expert ratings\n\n{summary['n_ratings']} ratings of {summary['n_items']} items by "
             f"{len(summary['raters'])} rater(s): {', '.join(summary['raters'])}.\n",
             f"Scores 1-5. Intervals: {iv['method']}, {iv['level']:.0%}"
             + (f", {iv['n_bootstrap']} resamples, seed {iv['seed']}" if "bootstrap" in iv["method"] else "") + ".\n",
             "| criterion | n ratings | n items | mean | CI | kappa (quadratic) | alpha (ordinal) |",
             "|---|---|---|---|---|---|---|"]
    for name, c in summary["criteria"].items():
        ci = f"{c['ci_low']:.2f}-{c['ci_high']:.2f}" if c["ci_low"] is not None else "n/a"
        lines.append(f"| {name} | {c['n_ratings']} | {c['n_items']} | {_f(c['mean'])} | {ci} | "
                     f"{_f(c['kappa_quadratic'])} | {_f(c['alpha_ordinal'])} |")
    lines.append("\nKappa: two raters, items both rated. Alpha: all raters, missing ratings allowed.\n")
    for group, rows in summary["by_group"].items():
        lines += [f"\n## By {group}\n", f"| {group} | n ratings | " + " | ".join(CRITERIA) + " |",
                  "|---" * (2 + len(CRITERIA)) + "|"]
        lines += [f"| {r[group]} | {r['n_ratings']} | " + " | ".join(_f(r[c]) for c in CRITERIA) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
