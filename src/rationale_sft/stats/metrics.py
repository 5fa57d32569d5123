"""Discrimination and calibration metrics of one score on one set of subjects (pure numpy functions).

Every metric accepts optional per-subject weights; integer weights are how the bootstrap resamples
subjects without copying them (a weight of 2 means the subject was drawn twice), and weight 1 everywhere
gives the ordinary estimate.

>>> y = np.array([0, 0, 1, 1]); s = np.array([0.1, 0.4, 0.35, 0.8])
>>> auroc(y, s), round(average_precision(y, s), 4), round(brier(y, s), 4)
(0.75, 0.8333, 0.1581)
>>> auroc(np.array([1, 1]), np.array([0.2, 0.3]))
Traceback (most recent call last):
...
rationale_sft.errors.InputError: AUROC needs both classes; got n=2 subjects with n_pos=2 (check the label column)
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import rankdata

from rationale_sft.errors import InputError


def check_binary(y: np.ndarray, score: np.ndarray, what: str = "AUROC") -> tuple[np.ndarray, np.ndarray]:
    """Validate a label/score pair; return them as (bool, float64) arrays.

    >>> check_binary(np.array([0, 2]), np.array([0.1, 0.2]))
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: labels must be 0/1 or boolean; got values [0, 2]
    """
    y, score = np.asarray(y), np.asarray(score, dtype=np.float64)
    if y.shape != score.shape or y.ndim != 1:
        raise InputError(f"labels and scores must be 1-d and equal length; got {y.shape} and {score.shape}")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be 0/1 or boolean; got values {sorted(set(y.tolist()))[:5]}")
    if np.isnan(score).any():
        raise InputError(f"{int(np.isnan(score).sum())} scores are NaN; drop or fix them before computing {what}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise InputError(f"{what} needs both classes; got n={y.size} subjects with n_pos={int(y.sum())} "
                         "(check the label column)")
    return y, score


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from midranks (Mann-Whitney U); ties count one half.

    >>> auroc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9]))
    0.875
    """
    y, score = check_binary(y, score)
    ranks = rankdata(score)
    n1, n0 = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def weighted_auroc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC under subject weights ``w`` of shape (n,) or (B, n): one value per row (NaN for a row that gives no
    weight to one class, as a bootstrap resample of a small set can).

    >>> y = np.array([0, 1, 0, 1]); s = np.array([0.5, 0.5, 0.2, 0.9])
    >>> float(weighted_auroc(y, s, np.ones(4))), weighted_auroc(y, s, np.array([[1, 1, 1, 1], [0, 2, 1, 1]]))
    (0.875, array([0.875, 1.   ]))
    """
    return weighted_rank_metrics(y, score, w, with_ap=False)[0]


def weighted_rank_metrics(y: np.ndarray, score: np.ndarray, w: np.ndarray,
                          with_ap: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(AUROC, average precision) under weights of shape (n,) or (B, n), O(B n) after one sort per class.

    Both come from cumulative weights of each class sorted once: for every positive j, the weighted count
    of negatives below it (plus half of those tied) gives AUROC; the weighted positives and negatives
    scored at or above it give the precision at its threshold, and AP = sum_j w_j * precision_j / P,
    which equals the step-wise sum over distinct thresholds (tied positives share one precision).
    """
    y, score = np.asarray(y, bool), np.asarray(score, np.float64)
    w = np.asarray(w, np.float64)
    pos_idx, neg_idx = np.flatnonzero(y), np.flatnonzero(~y)
    pos_idx = pos_idx[np.argsort(score[pos_idx], kind="stable")]  # each class in ascending score order
    neg_idx = neg_idx[np.argsort(score[neg_idx], kind="stable")]
    pos, neg = score[pos_idx], score[neg_idx]
    zero = np.zeros(w.shape[:-1] + (1,))
    cneg = np.concatenate([zero, np.cumsum(w[..., neg_idx], -1)], -1)
    below = np.take(cneg, np.searchsorted(neg, pos, side="left"), axis=-1)
    tied = np.take(cneg, np.searchsorted(neg, pos, side="right"), axis=-1) - below
    wpos, n_neg = w[..., pos_idx], cneg[..., -1:]
    n_pos = wpos.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # a row without weight on a class: NaN, undefined
        auc = (wpos * (below + 0.5 * tied)).sum(-1) / (n_pos[..., 0] * n_neg[..., 0])
    if not with_ap:
        return auc, None
    cpos = np.concatenate([zero, np.cumsum(wpos, -1)], -1)
    tp = n_pos - np.take(cpos, np.searchsorted(pos, pos, side="left"), axis=-1)
    fp = n_neg - below
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return auc, (wpos * precision).sum(-1) / n_pos[..., 0]


def average_precision(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """Average precision (area under the step precision-recall curve, as scikit-learn defines it).

    >>> average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1]))
    0.8333333333333333
    """
    y, score = check_binary(y, score, "AUPRC")
    return float(weighted_average_precision(y, score, np.ones(y.size) if w is None else w))


def weighted_average_precision(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision under weights of shape (n,) or (B, n); tied scores form one threshold."""
    return weighted_rank_metrics(y, score, w)[1]


def brier(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean squared error of the predicted probability against the 0/1 outcome.

    >>> brier(np.array([1, 0]), np.array([0.8, 0.4]))
    0.1
    """
    y, score = np.asarray(y, np.float64), np.asarray(score, np.float64)
    w = np.ones_like(score) if w is None else np.asarray(w, np.float64)
    return float(round((w * (score - y) ** 2).sum() / w.sum(), 15))


def reliability_curve(y: np.ndarray, score: np.ndarray, n_bins: int = 10,
                      strategy: str = "uniform") -> pl.DataFrame:
    """Reliability table: one row per non-empty bin with its edges, n, mean prediction and observed rate.

    ``strategy="uniform"`` uses equal-width bins on [0, 1]; ``"quantile"`` uses equal-mass bins (subjects
    sorted by score and split into ``n_bins`` groups of nearly equal size).

    >>> reliability_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.9]), 2)["frac_pos"].to_list()
    [0.0, 1.0]
    >>> reliability_curve(np.array([0, 1]), np.array([0.1, 0.9]), 2, "equal")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: strategy must be 'uniform' (equal width) or 'quantile' (equal mass); got 'equal'
    """
    y, score = np.asarray(y, np.float64), np.asarray(score, np.float64)
    if strategy == "uniform":
        bins = np.clip((score * n_bins).astype(int), 0, n_bins - 1)
    elif strategy == "quantile":
        bins = np.empty(score.size, int)
        for b, idx in enumerate(np.array_split(np.argsort(score, kind="stable"), n_bins)):
            bins[idx] = b
    else:
        raise InputError(f"strategy must be 'uniform' (equal width) or 'quantile' (equal mass); got {strategy!r}")
    rows = [{"bin": b, "lo": float(score[bins == b].min()), "hi": float(score[bins == b].max()),
             "n": int((bins == b).sum()), "mean_pred": float(score[bins == b].mean()),
             "frac_pos": float(y[bins == b].mean())} for b in np.unique(bins)]
    return pl.DataFrame(rows, schema={"bin": pl.Int64, "lo": pl.Float64, "hi": pl.Float64, "n": pl.Int64,
                                      "mean_pred": pl.Float64, "frac_pos": pl.Float64})


def expected_calibration_error(y: np.ndarray, score: np.ndarray, n_bins: int = 10,
                               strategy: str = "uniform") -> float:
    """ECE: bin-size-weighted mean absolute gap between mean prediction and observed rate.

    >>> expected_calibration_error(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.9]), 2)
    0.175
    """
    table = reliability_curve(y, score, n_bins, strategy)
    gap = (table["mean_pred"] - table["frac_pos"]).abs() * table["n"]
    return float(round(gap.sum() / table["n"].sum(), 15))


def auroc_by_group(y: np.ndarray, score: np.ndarray, groups: np.ndarray,
                   order: list[str] | None = None) -> pl.DataFrame:
    """AUROC within each group (e.g. age band, sex), in ``order`` (default: sorted); one class -> null AUROC.

    >>> t = auroc_by_group(np.array([0, 1, 0, 1, 1]), np.array([.1, .9, .2, .3, .5]), np.array(list("FFMMM")))
    >>> t.rows()
    [('F', 2, 1, 1.0), ('M', 3, 2, 1.0)]
    """
    groups = np.asarray(groups).astype(str)
    rows = []
    present = set(groups.tolist())
    for g in [g for g in (order or []) if g in present] + sorted(present - set(order or [])):
        m = groups == g
        yy = np.asarray(y, bool)[m]
        value = auroc(yy, np.asarray(score)[m]) if 0 < yy.sum() < yy.size else None
        rows.append({"group": g, "n": int(m.sum()), "n_pos": int(yy.sum()), "auroc": value})
    return pl.DataFrame(rows, schema={"group": pl.String, "n": pl.Int64, "n_pos": pl.Int64, "auroc": pl.Float64})


def band_names(edges: tuple[float, ...], span: tuple[float, float] | None = None) -> list[str]:
    """Names of the age bands cut at ``edges``, youngest first; with ``span`` (min, max) the outer bands are
    closed at the cohort's own youngest and oldest age.

    >>> band_names((50, 60)), band_names((50, 60), (41, 79))
    (['<50', '50-60', '>=60'], ['41-50', '50-60', '60-79'])
    """
    if span is not None:
        return [f"{a:g}-{b:g}" for a, b in zip((span[0], *edges), (*edges, span[1]))]
    return [f"<{edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]:g}"]


def cohort_age_edges(age: np.ndarray, n_bands: int = 4) -> tuple[tuple[float, ...], tuple[float, float]]:
    """Band edges that follow the cohort: whole-year quantiles of ``age`` (equal-mass bands), and its span.

    Returns ``(edges, (floor(min), ceil(max)))``; edges lie strictly inside the span, duplicates dropped, so a
    narrow cohort gets fewer bands (none: a single band, edges ``()``). Missing ages are ignored.

    >>> cohort_age_edges(np.array([41.2, 48.0, 52.5, 55.0, 58.1, 63.0, 70.4, 78.9, np.nan]))
    ((51.0, 57.0, 65.0), (41.0, 79.0))
    >>> cohort_age_edges(np.array([60.2, 60.4, 60.9]))
    ((), (60.0, 61.0))
    """
    age = np.asarray(age, np.float64)
    age = age[~np.isnan(age)]
    if not age.size:
        return (), (np.nan, np.nan)
    span = (float(np.floor(age.min())), float(np.ceil(age.max())))
    qs = np.round(np.quantile(age, np.arange(1, n_bands) / n_bands))
    return tuple(float(q) for q in np.unique(qs) if span[0] < q < span[1]), span


def age_bands(age: np.ndarray, edges: tuple[float, ...], span: tuple[float, float] | None = None) -> np.ndarray:
    """Label ages with bands cut at ``edges`` (e.g. ``<50``, ``50-60``, ``>=60``); missing ages -> ``unknown``.

    >>> age_bands(np.array([45.0, 50.0, 61.2, np.nan]), (50, 60)).tolist()
    ['<50', '50-60', '>=60', 'unknown']
    >>> age_bands(np.array([45.0, 50.0]), (), (45, 50)).tolist()
    ['45-50', '45-50']
    """
    age = np.asarray(age, np.float64)
    names = band_names(edges, span)
    idx = np.searchsorted(np.asarray(edges, np.float64), age, side="right")
    return np.where(np.isnan(age), "unknown", np.asarray(names)[np.minimum(idx, len(names) - 1)])
