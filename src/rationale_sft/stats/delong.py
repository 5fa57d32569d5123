"""DeLong's test for correlated AUROCs, in the fast O(n log n) form of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of AUROCs computed on the same subjects
from structural components: for each positive, the share of negatives it outranks (V10), and for each
negative, the share of positives that outrank it (V01). Sun & Xu showed these follow from three midrank
vectors (positives alone, negatives alone, all subjects), so the cost is a sort instead of an n1 x n0
comparison matrix.

>>> y = np.array([1, 1, 1, 0, 0, 0, 0]); a = np.array([.9, .8, .4, .5, .3, .2, .1])
>>> b = np.array([.6, .3, .7, .5, .8, .2, .1])
>>> r = delong_test(y, a, b)
>>> round(r["auc_a"], 4), round(r["auc_b"], 4), round(r["diff"], 4), r["n"], r["n_pos"]
(0.9167, 0.6667, 0.25, 7, 3)
>>> delong_test(y, a, b[:3])
Traceback (most recent call last):
...
rationale_sft.errors.InputError: labels and scores must be 1-d and equal length; got (7,) and (3,)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

from rationale_sft.stats.metrics import check_binary


def delong_auc_cov(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of the rows of ``scores`` (k, n) and their DeLong covariance matrix (k, k).

    >>> aucs, cov = delong_auc_cov(np.array([1, 0, 1, 0]), np.array([[.9, .1, .6, .7]]))
    >>> aucs.round(4).tolist(), cov.round(5).tolist()
    ([0.75], [[0.125]])
    """
    y = np.asarray(y, bool)
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if min(m, n) < 2:  # a variance needs two positives and two negatives: the covariance is undefined
        aucs = np.array([((p[:, None] > neg[k]) + 0.5 * (p[:, None] == neg[k])).mean() for k, p in enumerate(pos)])
        return aucs, np.full((len(scores), len(scores)), np.nan)
    tx, ty = rankdata(pos, axis=1), rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = tz[:, :m].sum(1) / (m * n) - (m + 1) / (2 * n)
    v10 = (tz[:, :m] - tx) / n       # per positive: share of negatives ranked below (ties count half)
    v01 = 1 - (tz[:, m:] - ty) / m   # per negative: share of positives ranked above
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(AUROC, lo, hi) with DeLong's normal-approximation interval, clipped to [0, 1].

    >>> [round(v, 4) for v in delong_ci(np.array([1, 0, 1, 0]), np.array([.9, .1, .6, .7]))]
    [0.75, 0.057, 1.0]
    """
    y, score = check_binary(y, score)
    aucs, cov = delong_auc_cov(y, score[None])
    half = norm.ppf((1 + level) / 2) * np.sqrt(cov[0, 0])
    return float(aucs[0]), float(max(aucs[0] - half, 0.0)), float(min(aucs[0] + half, 1.0))


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, level: float = 0.95) -> dict:
    """Paired DeLong test of AUROC(a) = AUROC(b) on the same subjects.

    Returns both AUROCs, their difference (a - b), its standard error, z, the two-sided p-value and a
    normal-approximation CI of the difference. Identical scores give se 0, z 0 and p 1; fewer than two
    positives or negatives give NaN se, z, p and CI (the variance is undefined).

    >>> r = delong_test(np.array([1, 0, 0]), np.array([.9, .1, .2]), np.array([.1, .9, .2]))
    >>> r["auc_a"], r["auc_b"], r["p"]
    (1.0, 0.0, nan)
    """
    y, score_a = check_binary(y, score_a)
    _, score_b = check_binary(y, score_b)
    aucs, cov = delong_auc_cov(y, np.stack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = max(float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), 0.0) if not np.isnan(cov).any() else np.nan
    se = float(np.sqrt(var))
    z = diff / se if se > 0 else (0.0 if se == 0 else np.nan)
    half = norm.ppf((1 + level) / 2) * se
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "se": se, "z": float(z),
            "p": float(2 * norm.sf(abs(z))) if se > 0 else (1.0 if se == 0 else np.nan),
            "lo": diff - half, "hi": diff + half,
            "n": int(y.size), "n_pos": int(y.sum()), "method": f"DeLong paired test, normal CI ({level:.0%})"}
