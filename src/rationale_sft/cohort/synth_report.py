"""Summary figures of a synthetic cohort (incidence, codes, oracle AUROC) and the progress display."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from scipy.stats import rankdata

from rationale_sft.config.synth import SynthConfig

def auroc(score: np.ndarray, label: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None without both classes.

    >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    >>> auroc(np.array([0.5, 0.5]), np.array([0, 1])), auroc(np.array([1.0]), np.array([1]))
    (0.5, None)
    """
    label = np.asarray(label, bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def progress(items: Iterable, total: int, what: str) -> Iterator:
    """Iterate with a rich progress bar on stderr (shown only when there is more than one item)."""
    if total <= 1:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(what, total=total)
        for item in items:
            yield item
            bar.advance(task)


def summarize(cfg: SynthConfig, truth: dict, counts: np.ndarray, vocab: tuple[str, ...], n_events: int) -> dict:
    """The summary returned by ``synthesize`` and written to summary.json."""
    ok = ~truth["prevalent_adrd"]
    label, risk = truth["label"][ok], truth["risk"][ok]
    icd = np.array([c.startswith("ICD10//") for c in vocab])
    n = len(truth["risk"])
    return {
        "n_subjects": n, "n_events": int(n_events), "events_per_subject": round(n_events / n, 2),
        "n_distinct_codes": int((counts[icd] > 0).sum()), "n_distinct_codes_all": int((counts > 0).sum()),
        "icd_codes_per_subject": round(float(counts[icd].sum()) / n, 2),
        "incidence_5y": round(float(label.mean()), 5), "mean_risk_5y": round(float(risk.mean()), 5),
        "n_cases_5y": int(label.sum()), "n_prevalent_adrd": int(truth["prevalent_adrd"].sum()),
        "died_by_data_end": round(float(truth["died"].mean()), 4),
        **_aurocs(truth, ok), "hidden_share": cfg.hidden_share, **_shares(truth),
        "by_age": _by_age(cfg, truth, ok),
        "top_codes": [[vocab[i], round(float(counts[i]) / n, 4)] for i in np.argsort(-np.where(icd, counts, -1))[:12]],
        "codes_by_prevalence": {f">={t:g}": int((counts[icd] >= t * n).sum()) for t in (0.01, 0.001, 0.0001)},
    }


def _aurocs(truth: dict, ok: np.ndarray) -> dict:
    """AUROC of the true risk (oracle), of each log-hazard part and of age alone, prevalent cases left out."""
    scores = {"oracle": truth["risk"], "textbook": truth["logh_textbook"], "hidden": truth["logh_hidden"],
              "age": truth["age"]}
    return {f"{k}_auroc": _round(auroc(v[ok], truth["label"][ok])) for k, v in scores.items()}


def _shares(truth: dict) -> dict:
    """Realised variance share of the hidden part and its correlation with the textbook covariates."""
    tb, hidden = truth["textbook_covariates"], truth["logh_hidden"]
    total = float(np.var(tb) + np.var(hidden))
    both = np.std(tb) > 0 and np.std(hidden) > 0
    return {"hidden_share_realised": round(float(np.var(hidden)) / total, 3) if total > 0 else None,
            "textbook_hidden_corr": round(float(np.corrcoef(tb, hidden)[0, 1]), 3) if both else None}


def _by_age(cfg: SynthConfig, truth: dict, ok: np.ndarray) -> dict:
    """Incidence and mean risk by decade of age at the assessment."""
    out = {}
    for lo in range(int(cfg.age_min) // 10 * 10, int(np.ceil(cfg.age_max)), 10):
        band = ok & (truth["age"] >= lo) & (truth["age"] < lo + 10)
        if band.any():
            out[f"{lo}-{lo + 9}"] = {"n": int(band.sum()), "incidence_5y": round(float(truth["label"][band].mean()), 5),
                                     "mean_risk_5y": round(float(truth["risk"][band].mean()), 5)}
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
