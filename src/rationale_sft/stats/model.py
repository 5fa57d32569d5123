"""How the rationale gap depends on the grid: OLS of Delta AUROC with cluster-robust standard errors.

Model: ``delta ~ arm + family + model + base + log2(scale)`` (treatment coding, first level of each
factor sorted as the reference; ``log2(scale)`` centred). Deltas of different arms that share one
reference run are correlated through that run's noise, so standard errors are clustered on the reference
run (CR1 small-sample factor ``G/(G-1) * (N-1)/(N-K)``) and tests use a t distribution with ``G-1``
degrees of freedom. A factor with one level, or a column that is a linear combination of earlier ones
(e.g. a model nested in a family), is dropped and listed in ``dropped``. This is a numpy-only stand-in
for a random-intercept model: with a handful of clusters it is the more transparent choice.

>>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]]); y = np.array([1., 2, 3, 5, 6, 7])
>>> t = ols_cluster(X, y, np.array([0, 0, 1, 1, 2, 2]), ["intercept", "b"])
>>> t["coef"].round(4).to_list()
[2.0, 4.0]
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats as sps

from rationale_sft.stats.compare import PAIR_KEYS


def ols_cluster(X: np.ndarray, y: np.ndarray, clusters: np.ndarray, names: list[str],
                level: float = 0.95) -> pl.DataFrame:
    """OLS coefficients with CR1 cluster-robust SEs, t-tests on ``G-1`` df and CIs; NaN SEs below 2 clusters."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    n, k = X.shape
    bread = np.linalg.pinv(X.T @ X)
    coef = bread @ X.T @ y
    resid = y - X @ coef
    groups = np.unique(clusters.astype(str), return_inverse=True)[1]
    g = int(groups.max()) + 1
    scores = np.zeros((g, k))
    np.add.at(scores, groups, X * resid[:, None])
    se = np.full(k, np.nan)
    if g >= 2 and n > k:
        factor = g / (g - 1) * (n - 1) / (n - k)
        se = np.sqrt(np.maximum(np.diag(bread @ (scores.T @ scores) @ bread) * factor, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = coef / se
    df = max(g - 1, 1)
    half = sps.t.ppf((1 + level) / 2, df) * se
    return pl.DataFrame({"term": names, "coef": coef, "se": se, "t": t, "p": 2 * sps.t.sf(np.abs(t), df),
                         "lo": coef - half, "hi": coef + half, "n": [n] * k, "clusters": [g] * k,
                         "method": [f"OLS, CR1 cluster-robust SE by reference run, t({df}), {level:.0%} CI"] * k})


def design(deltas: pl.DataFrame, factors: tuple[str, ...] = ("arm", "family", "model", "base", "hidden_share"),
           numeric: str = "scale") -> tuple[np.ndarray, list[str], list[str]]:
    """Design matrix, its column names, and the names of columns dropped as constant or collinear."""
    cols, names, dropped = [np.ones(deltas.height)], ["intercept"], []
    candidates: list[tuple[str, np.ndarray]] = []
    for f in (f for f in factors if f in deltas.columns):
        values = deltas[f].cast(pl.String).fill_null("(none)").to_numpy()
        levels = sorted(set(values.tolist()))
        candidates += [(f"{f}={lv}", (values == lv).astype(np.float64)) for lv in levels[1:]]
        dropped += [f"{f} (one level)"] if len(levels) == 1 else []
    raw = deltas[numeric].cast(pl.Float64).to_numpy() if numeric in deltas.columns else np.array([np.nan])
    if np.all(raw > 0):  # log2 needs positive sizes; a missing or non-positive scale leaves the term out
        x = np.log2(raw)
        candidates.append((f"log2({numeric}) (centred)", x - x.mean()))
    elif numeric in deltas.columns:
        dropped.append(f"log2({numeric}) (missing or non-positive values)")
    for name, col in candidates:
        trial = np.column_stack(cols + [col])
        if np.linalg.matrix_rank(trial) > len(cols):
            cols.append(col)
            names.append(name)
        else:
            dropped.append(name)
    return np.column_stack(cols), names, dropped


def gap_model(deltas: pl.DataFrame, level: float = 0.95) -> tuple[pl.DataFrame, list[str]]:
    """Fit the Delta AUROC model on paired deltas; returns the coefficient table and dropped terms.

    >>> d = pl.DataFrame({"arm": ["f", "s"] * 4, "family": ["a"] * 4 + ["b"] * 4, "seed": [0, 0, 1, 1] * 2,
    ...                   "delta": [-.1, -.12, -.09, -.13, -.2, -.22, -.19, -.21]})
    >>> t, dropped = gap_model(d)
    >>> t["term"].to_list(), round(t["coef"][2], 4), dropped
    (['intercept', 'arm=s', 'family=b'], -0.095, [])
    """
    X, names, dropped = design(deltas)
    keys = [k for k in PAIR_KEYS if k in deltas.columns]
    clusters = deltas.select(pl.concat_str([pl.col(k).cast(pl.String).fill_null("-") for k in keys],
                                           separator="|")).to_series().to_numpy()
    return ols_cluster(X, deltas["delta"].to_numpy(), clusters, names, level), dropped
