"""Config of the classical baselines: features, logistic regressions, LightGBM and which models to fit.

>>> from rationale_sft import config
>>> config.build(BaselinesConfig, {}, ["lightgbm.num_leaves=7"]).lightgbm.num_leaves
7
>>> config.build(BaselinesConfig, {"models": ["lr", "xgboost"]})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: unknown model(s) ['xgboost']; choose from age_sex_lr, lr, lightgbm, oracle
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODELS = ("age_sex_lr", "lr", "lightgbm", "oracle")


@dataclass(frozen=True)
class LightGBMConfig:
    """Gradient-boosted trees (LightGBM), deterministic and seeded, early-stopped on the tuning split."""

    n_estimators: int = 1000
    "Maximum boosting rounds (early stopping usually ends sooner)."
    learning_rate: float = 0.03
    "Shrinkage per boosting round."
    num_leaves: int = 15
    "Leaves per tree."
    min_child_samples: int = 20
    "Minimum subjects in a leaf."
    feature_fraction: float = 0.8
    "Share of features each tree sees."
    reg_lambda: float = 1.0
    "L2 penalty on leaf values."
    early_stopping_rounds: int = 50
    "Stop when tuning-split log loss has not improved for this many rounds (0 = no early stopping)."
    n_jobs: int = 2
    "Threads LightGBM may use."

    def __post_init__(self) -> None:
        if self.n_estimators < 1 or self.num_leaves < 2 or not 0 < self.feature_fraction <= 1:
            raise ValueError("lightgbm needs n_estimators >= 1, num_leaves >= 2 and 0 < feature_fraction <= 1")


@dataclass(frozen=True)
class BaselinesConfig:
    """Classical baselines and the oracle, trained on the train split and evaluated on held_out."""

    seed: int = 0
    "Master seed (LightGBM's seed is derived from it for the purpose 'lightgbm')."
    models: tuple[str, ...] = MODELS
    "Models to fit: age_sex_lr, lr, lightgbm, oracle (the oracle only where truth/risk.parquet exists)."
    min_code_count: int = 10
    "A code becomes a feature when at least this many training subjects have it before prediction time."
    lr_c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    "Inverse L2 strengths tried for the logistic regression; the best tuning-split log loss wins."
    lr_max_iter: int = 2000
    "Maximum solver iterations of the logistic regressions."
    lightgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
    "LightGBM settings."

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
        if self.min_code_count < 1 or not self.lr_c_grid or min(self.lr_c_grid) <= 0:
            raise ValueError(f"min_code_count must be >= 1 and lr_c_grid positive values, got "
                             f"{self.min_code_count}, {list(self.lr_c_grid)}")
