"""The baseline models: each is a function (train, tuning, test data, config) -> held-out probabilities.

A small dict of functions rather than classes: the models differ only in which columns they see and how
they are fitted. LightGBM is seeded and deterministic (``deterministic=True``, row-wise histograms) so a
rerun gives identical predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.metrics import log_loss
from sklearn.preprocessing import MaxAbsScaler, StandardScaler

from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.seeding import derive_seed


@dataclass(frozen=True)
class Split:
    """Features and labels of one split."""

    X: sp.csr_matrix
    y: np.ndarray


def _both_classes(y: np.ndarray) -> bool:
    return bool(0 < y.sum() < y.size)


def fit_age_sex_lr(train: Split, tuning: Split, test: Split, cfg: BaselinesConfig) -> tuple[np.ndarray, dict]:
    """Logistic regression on age and sex only (the first three feature columns), standardised."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=cfg.lr_max_iter))
    model.fit(train.X[:, :3].toarray(), train.y)
    return model.predict_proba(test.X[:, :3].toarray())[:, 1], {}


def fit_lr(train: Split, tuning: Split, test: Split, cfg: BaselinesConfig) -> tuple[np.ndarray, dict]:
    """L2 logistic regression on all features; C chosen by tuning-split log loss.

    Features are scaled by their maximum absolute value: sparsity is kept and code indicators stay 0/1,
    whereas unit-variance scaling would blow rare codes up and let them escape the penalty.
    """
    scaler = MaxAbsScaler().fit(train.X)
    Xtr, Xtu, Xte = (scaler.transform(s.X) for s in (train, tuning, test))
    fits = {c: LogisticRegression(C=c, max_iter=cfg.lr_max_iter).fit(Xtr, train.y) for c in cfg.lr_c_grid}
    if _both_classes(tuning.y) and len(fits) > 1:
        losses = {c: log_loss(tuning.y, m.predict_proba(Xtu)[:, 1], labels=[False, True]) for c, m in fits.items()}
        best = min(losses, key=losses.get)
    else:  # nothing to choose on: the middle of the grid
        losses, best = {}, sorted(fits)[len(fits) // 2]
    n_iter = int(fits[best].n_iter_[0])
    return fits[best].predict_proba(Xte)[:, 1], {"C": best, "tuning_log_loss": losses, "n_iter": n_iter,
                                                 "converged": n_iter < cfg.lr_max_iter}


def fit_lightgbm(train: Split, tuning: Split, test: Split, cfg: BaselinesConfig) -> tuple[np.ndarray, dict]:
    """LightGBM, early-stopped on tuning-split log loss when the tuning split has both classes."""
    import lightgbm as lgb

    g = cfg.lightgbm
    model = lgb.LGBMClassifier(
        n_estimators=g.n_estimators, learning_rate=g.learning_rate, num_leaves=g.num_leaves,
        min_child_samples=g.min_child_samples, colsample_bytree=g.feature_fraction, reg_lambda=g.reg_lambda,
        n_jobs=g.n_jobs, random_state=derive_seed(cfg.seed, "lightgbm"), deterministic=True,
        force_row_wise=True, verbose=-1)
    stop = g.early_stopping_rounds > 0 and _both_classes(tuning.y)
    kwargs = {"eval_X": (tuning.X.astype(np.float32),), "eval_y": (tuning.y,), "eval_metric": "binary_logloss",
              "callbacks": [lgb.early_stopping(g.early_stopping_rounds, verbose=False)]} if stop else {}
    model.fit(train.X.astype(np.float32), train.y, **kwargs)
    best = int(model.best_iteration_) if stop and model.best_iteration_ else g.n_estimators
    return model.predict_proba(test.X.astype(np.float32))[:, 1], {"n_trees": best, "early_stopped": stop}


FITTERS = {"age_sex_lr": fit_age_sex_lr, "lr": fit_lr, "lightgbm": fit_lightgbm}
