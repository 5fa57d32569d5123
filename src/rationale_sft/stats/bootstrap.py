"""Subject-level, label-stratified percentile bootstrap, vectorised over replicates.

A replicate draws ``n_pos`` positives from the positives and ``n_neg`` negatives from the negatives, with
replacement, so every replicate keeps the observed prevalence and both classes (AUROC is always defined).
Draws are held as integer weights per subject (how often it was drawn), and the weighted metrics in
:mod:`rationale_sft.stats.metrics` evaluate all replicates of a chunk in one pass without re-sorting.
Paired comparisons apply the same weights to both scores: the subjects are resampled, not the scores.

>>> from rationale_sft.seeding import rng
>>> y = np.array([0, 0, 0, 1, 1, 0, 1, 0]); s = np.array([.1, .3, .2, .8, .4, .5, .9, .35])
>>> t = bootstrap_table(y, s, seed=3, n_boot=200)
>>> t.select("metric", "n", "n_pos", "method", "seed").row(0)
('auroc', 8, 3, 'stratified percentile bootstrap (200 replicates, 95%)', 3)
>>> t.equals(bootstrap_table(y, s, seed=3, n_boot=200))
True
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rationale_sft.errors import InputError
from rationale_sft.seeding import rng as make_rng
from rationale_sft.stats.metrics import (brier, check_binary, weighted_auroc, weighted_average_precision,
                                         weighted_rank_metrics)

CHUNK = 256  # replicates per pass: bounds memory at CHUNK x n floats; fixed so draws never depend on it


def stratified_weights(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) draw counts of a label-stratified resample of subjects.

    >>> w = stratified_weights(np.array([1, 0, 0, 1, 0]), 4, np.random.default_rng(0))
    >>> w.shape, w[:, [0, 3]].sum(1).astype(int).tolist(), w[:, [1, 2, 4]].sum(1).astype(int).tolist()
    ((4, 5), [2, 2, 2, 2], [3, 3, 3, 3])
    """
    y = np.asarray(y, bool)
    w = np.zeros((n_boot, y.size))
    for mask in (y, ~y):
        idx = np.flatnonzero(mask)
        draws = rng.integers(0, idx.size, (n_boot, idx.size))
        flat = (draws + idx.size * np.arange(n_boot)[:, None]).ravel()
        w[:, idx] = np.bincount(flat, minlength=n_boot * idx.size).reshape(n_boot, idx.size)
    return w


def _replicates(y: np.ndarray, scores: list[np.ndarray], metric, n_boot: int,
                rng: np.random.Generator) -> np.ndarray:
    """(len(scores), n_boot) metric values; every score sees the same resampled subjects."""
    out = np.empty((len(scores), n_boot))
    for start in range(0, n_boot, CHUNK):
        w = stratified_weights(y, min(CHUNK, n_boot - start), rng)
        for k, s in enumerate(scores):
            out[k, start:start + w.shape[0]] = metric(y, s, w)
    return out


def _weighted_brier(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w * (s - y) ** 2).sum(-1) / w.sum(-1)


METRICS = {"auroc": weighted_auroc, "auprc": weighted_average_precision, "brier": _weighted_brier}


def percentile_ci(reps: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates ignored).

    >>> [round(v, 6) for v in percentile_ci(np.arange(101.0), 0.9)]
    [5.0, 95.0]
    """
    if not 0 < level < 1:
        raise InputError(f"confidence level must lie in (0, 1); got {level}")
    lo, hi = np.nanquantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(y: np.ndarray, score: np.ndarray, rng: np.random.Generator, metric: str = "auroc",
                 n_boot: int = 1000, level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, lo, hi) of one metric with a stratified percentile bootstrap.

    >>> y = np.array([0, 1, 0, 1, 1, 0]); s = np.array([.2, .7, .4, .3, .9, .1])
    >>> est, lo, hi = bootstrap_ci(y, s, np.random.default_rng(0), "auroc", 500)
    >>> round(est, 4), lo <= est <= hi
    (0.8889, True)
    """
    y, score = check_binary(y, score)
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    est = float(METRICS[metric](y, score, np.ones(y.size)))
    return (est, *percentile_ci(_replicates(y, [score], METRICS[metric], n_boot, rng)[0], level))


def paired_bootstrap_diff(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, rng: np.random.Generator,
                          metric: str = "auroc", n_boot: int = 1000, level: float = 0.95) -> dict:
    """Difference ``metric(a) - metric(b)`` on the same subjects with a paired percentile bootstrap CI.

    >>> y = np.array([0, 1, 0, 1, 1, 0]); a = np.array([.2, .7, .4, .3, .9, .1]); b = a[::-1]
    >>> d = paired_bootstrap_diff(y, a, b, np.random.default_rng(0), n_boot=300)
    >>> round(d["diff"], 4), d["lo"] <= d["diff"] <= d["hi"], d["method"]
    (-0.1111, True, 'paired stratified percentile bootstrap (300 replicates, 95%)')
    """
    y, score_a = check_binary(y, score_a)
    _, score_b = check_binary(y, score_b)
    fn = METRICS[metric]
    ones = np.ones(y.size)
    reps = _replicates(y, [score_a, score_b], fn, n_boot, rng)
    lo, hi = percentile_ci(reps[0] - reps[1], level)
    return {"metric": metric, "diff": float(fn(y, score_a, ones) - fn(y, score_b, ones)), "lo": lo, "hi": hi,
            "n": int(y.size), "n_pos": int(y.sum()), "method": _method(n_boot, level, paired=True)}


def bootstrap_table(y: np.ndarray, score: np.ndarray, *, seed: int, n_boot: int = 1000, level: float = 0.95,
                    metrics: tuple[str, ...] = ("auroc", "auprc", "brier")) -> pl.DataFrame:
    """One row per metric: estimate, CI, n, n_pos, interval method and seed (generator ``rng(seed, "bootstrap")``).

    All metrics share the same replicates, so their intervals describe the same resampled cohorts.
    """
    y, score = check_binary(y, score)
    rng = make_rng(seed, "bootstrap")
    rows = []
    reps = {m: np.empty(n_boot) for m in metrics}
    for start in range(0, n_boot, CHUNK):
        w = stratified_weights(y, min(CHUNK, n_boot - start), rng)
        ranked = dict(zip(("auroc", "auprc"), weighted_rank_metrics(y, score, w)))  # one pass for both
        for m in metrics:
            reps[m][start:start + w.shape[0]] = ranked[m] if m in ranked else METRICS[m](y, score, w)
    for m in metrics:
        est = brier(y, score) if m == "brier" else float(METRICS[m](y, score, np.ones(y.size)))
        lo, hi = percentile_ci(reps[m], level)
        rows.append({"metric": m, "estimate": est, "lo": lo, "hi": hi, "n": int(y.size), "n_pos": int(y.sum()),
                     "method": _method(n_boot, level), "seed": int(seed)})
    return pl.DataFrame(rows)


def _method(n_boot: int, level: float, paired: bool = False) -> str:
    return f"{'paired ' if paired else ''}stratified percentile bootstrap ({n_boot} replicates, {level:.0%})"


def strata_weights(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) draw counts of a resample of subjects within each stratum (sorted codes, as many as it has).

    With strata = labels this is :func:`stratified_weights`' design; the two-level bootstrap passes
    (cohort, label) codes so each cohort keeps its size and prevalence.

    >>> w = strata_weights(np.array([0, 1, 1, 2, 2, 2]), 3, np.random.default_rng(0))
    >>> w[:, :1].sum(1).astype(int).tolist(), w[:, 1:3].sum(1).astype(int).tolist(), w[:, 3:].sum(1).tolist()
    ([1, 1, 1], [2, 2, 2], [3.0, 3.0, 3.0])
    """
    strata = np.asarray(strata)
    w = np.zeros((n_boot, strata.size))
    for code in np.unique(strata):
        idx = np.flatnonzero(strata == code)
        draws = rng.integers(0, idx.size, (n_boot, idx.size))
        flat = (draws + idx.size * np.arange(n_boot)[:, None]).ravel()
        w[:, idx] = np.bincount(flat, minlength=n_boot * idx.size).reshape(n_boot, idx.size)
    return w


def subject_replicates(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator, n_boot: int = 1000,
                       strata: np.ndarray | None = None, with_ap: bool = True) -> dict[str, np.ndarray]:
    """AUROC (and AUPRC with ``with_ap``) of every row of ``scores`` (k, n) under the same resamples of subjects.

    Returns ``{"auroc": (k, n_boot), "auprc": (k, n_boot)}``. A NaN score means the row's run did not score
    that subject: the row's metric uses only its own subjects, still under the shared draw. Subjects are
    resampled within ``strata`` (default: the label), so every row keeps both classes.
    """
    y = np.asarray(y, bool)
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    strata = y.astype(np.int64) if strata is None else np.asarray(strata) * 2 + y
    valid = ~np.isnan(scores)
    for k in range(scores.shape[0]):
        check_binary(y[valid[k]], scores[k, valid[k]])
    out = {m: np.full((scores.shape[0], n_boot), np.nan) for m in ("auroc", "auprc")}
    for start in range(0, n_boot, CHUNK):
        w = strata_weights(strata, min(CHUNK, n_boot - start), rng)
        for k in range(scores.shape[0]):
            v = slice(None) if valid[k].all() else valid[k]  # a full slice avoids copying the weights
            au, ap = weighted_rank_metrics(y[v], scores[k, v], w[:, v], with_ap)
            out["auroc"][k, start:start + w.shape[0]] = au
            if with_ap:
                out["auprc"][k, start:start + w.shape[0]] = ap
    return out


def pooled_interval(estimates: np.ndarray, replicates: np.ndarray, rng: np.random.Generator,
                    level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean over configurations, resampling configurations on top of the subjects.

    ``estimates`` (C,) are the configurations' values on the observed subjects; ``replicates`` (C, B) their
    values under B shared subject resamples (:func:`subject_replicates`, differenced for a Delta). Replicate
    b draws C configurations with replacement and averages their values under subject draw b: the
    two-level bootstrap over test subjects and configurations. One configuration: subjects alone.

    >>> reps = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    >>> [round(v, 3) for v in pooled_interval(np.array([0.2, 0.2]), reps, np.random.default_rng(0), 0.5)]
    [0.2, 0.15, 0.25]
    """
    estimates = np.asarray(estimates, np.float64)
    if estimates.size == 0:
        return np.nan, np.nan, np.nan
    return (float(estimates.mean()), *percentile_ci(pooled_replicates(replicates, rng), level))


def pooled_replicates(replicates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) replicates of the mean over configurations: replicate b averages C configurations drawn with
    replacement, each under subject draw b (``replicates`` is (C, B)). Differences of two such vectors (e.g.
    the gap at two scales) stay paired on the subject draws.

    >>> pooled_replicates(np.array([[1.0, 2.0], [1.0, 2.0]]), np.random.default_rng(0)).tolist()
    [1.0, 2.0]
    """
    replicates = np.atleast_2d(np.asarray(replicates, np.float64))
    n_configs, n_boot = replicates.shape
    pick = rng.integers(0, n_configs, (n_boot, n_configs))
    return replicates[pick, np.arange(n_boot)[:, None]].mean(1)


def two_level_bootstrap(y: np.ndarray, arm_scores: np.ndarray, ref_scores: np.ndarray, rng: np.random.Generator,
                        n_boot: int = 1000, level: float = 0.95, metric: str = "auroc",
                        strata: np.ndarray | None = None) -> dict:
    """Mean over configurations of metric(arm) - metric(reference), both scored on shared test subjects.

    Row c of ``arm_scores`` and ``ref_scores`` (C, n) is one configuration pair, columns are the same n
    subjects (NaN: not scored). Every replicate draws the subjects once for all configurations, then draws
    configuration pairs with replacement; every metric is recomputed on the drawn subjects.

    >>> g = np.random.default_rng(1); y = g.random(60) < 0.4; z = y + g.normal(size=(3, 60))
    >>> r = two_level_bootstrap(y, z + 0.5 * g.normal(size=z.shape), z, np.random.default_rng(0), 200)
    >>> r["lo"] < r["mean"] < r["hi"], r["n_configs"], r["n_subjects"], r["method"]
    (True, 3, 60, 'bootstrap over test subjects and configurations (200 replicates, 95%)')
    """
    y = np.asarray(y, bool)
    arm_scores, ref_scores = np.atleast_2d(arm_scores), np.atleast_2d(ref_scores)
    if arm_scores.shape != ref_scores.shape or arm_scores.shape[1] != y.size:
        raise InputError(f"arm and reference scores must both be (configurations, {y.size}); got "
                         f"{arm_scores.shape} and {ref_scores.shape}")
    reps = subject_replicates(y, np.concatenate([arm_scores, ref_scores]), rng, n_boot, strata,
                              metric == "auprc")[metric]
    n_configs = arm_scores.shape[0]
    full = subject_metric(y, np.concatenate([arm_scores, ref_scores]), metric)
    mean, lo, hi = pooled_interval(full[:n_configs] - full[n_configs:], reps[:n_configs] - reps[n_configs:],
                                   rng, level)
    return {"metric": metric, "mean": mean, "lo": lo, "hi": hi, "n_configs": n_configs, "n_subjects": int(y.size),
            "method": two_level_method(n_boot, level)}


def subject_metric(y: np.ndarray, scores: np.ndarray, metric: str = "auroc") -> np.ndarray:
    """Metric of every row of ``scores`` (k, n) on its own (non-NaN) subjects, without resampling."""
    y, scores = np.asarray(y, bool), np.atleast_2d(np.asarray(scores, np.float64))
    fn = METRICS[metric]
    return np.array([float(fn(y[~np.isnan(s)], s[~np.isnan(s)], np.ones(int((~np.isnan(s)).sum()))))
                     for s in scores])


def two_level_method(n_boot: int, level: float) -> str:
    """How a pooled interval was computed, for captions and tables."""
    return f"bootstrap over test subjects and configurations ({n_boot} replicates, {level:.0%})"
