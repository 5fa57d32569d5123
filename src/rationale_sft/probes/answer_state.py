"""Linear probe: does the final hidden state at the answer slot still carry the outcome signal?

A rationale-trained model may rank subjects poorly through its label token while its representation
still separates cases from controls. The probe fits an L2 logistic regression on the answer-slot states
with label-stratified cross-validation and reports the out-of-fold AUROC.

>>> import numpy as np
>>> g = np.random.default_rng(0)
>>> y = np.repeat([0, 1], 60)
>>> x = g.normal(size=(120, 8)); x[:, 0] += 2.0 * y
>>> out = probe_auroc(x, y, seed=0)
>>> out["auroc"] > 0.8, out["n"], out["folds"]
(True, 120, 5)
>>> probe_auroc(x[:, :0], y, seed=0)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: probe needs a 2-D state matrix with at least one feature, got shape (120, 0)
"""

from __future__ import annotations

import numpy as np

from rationale_sft.errors import InputError
from rationale_sft.seeding import derive_seed


def probe_auroc(states: np.ndarray, labels: np.ndarray, seed: int, folds: int = 5, c: float = 1.0) -> dict:
    """Out-of-fold AUROC of a logistic probe on ``states`` (n x d) for binary ``labels``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    states, labels = np.asarray(states, dtype=np.float64), np.asarray(labels).astype(int)
    _check(states, labels, folds)
    oof = np.zeros(len(labels))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=derive_seed(seed, "probe_folds"))
    for train_idx, test_idx in split.split(states, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(states[train_idx], labels[train_idx])
        oof[test_idx] = model.predict_proba(states[test_idx])[:, 1]
    return {"auroc": float(roc_auc_score(labels, oof)), "n": int(len(labels)), "n_pos": int(labels.sum()),
            "folds": folds, "seed": seed, "method": "L2 logistic regression, stratified k-fold, out-of-fold"}


def _check(states: np.ndarray, labels: np.ndarray, folds: int) -> None:
    if states.ndim != 2 or states.shape[1] == 0:
        raise InputError(f"probe needs a 2-D state matrix with at least one feature, got shape {states.shape}")
    if len(states) != len(labels):
        raise InputError(f"probe: {len(states)} states but {len(labels)} labels; they must align by subject")
    n_min = int(min(labels.sum(), len(labels) - labels.sum()))
    if n_min < folds:
        raise InputError(f"probe: the rarer class has {n_min} subjects, fewer than folds={folds}; "
                         "score more subjects or lower the fold count")
