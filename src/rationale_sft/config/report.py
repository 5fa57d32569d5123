"""Configuration of the report: bootstrap, interval level, the reference arm and the study's reference values.

>>> from rationale_sft.config import build
>>> build(ReportConfig, {}, ["n_boot=200"]).n_boot
200
>>> build(ReportConfig, {"level": 1.5})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: 'level' must lie in (0, 1), e.g. 0.95; got 1.5
"""

from __future__ import annotations

from dataclasses import dataclass, field

STUDY_REFERENCE = {"label_only": 0.734, "freeform": 0.604, "stepwise": 0.592}


@dataclass(frozen=True)
class ReportConfig:
    """How `rationale-sft report` summarises a finished grid run directory."""

    seed: int = 0
    "Master seed of every bootstrap generator (each table records it)."
    n_boot: int = 1000
    "Bootstrap replicates per interval."
    level: float = 0.95
    "Confidence level of every interval."
    alpha: float = 0.05
    "Significance level applied to Holm-adjusted p-values in the verdict."
    reference_arm: str = "label_only"
    "Arm every other SFT arm is compared with (Delta = arm - reference, paired by configuration)."
    study_arms: tuple[str, ...] = ("freeform", "stepwise")
    "Rationale arms whose gap the verdict judges (the study's free-form and step-by-step arms)."
    study_reference: dict[str, float] = field(default_factory=lambda: dict(STUDY_REFERENCE))
    "The study's mean ROC-AUC per arm, shown for reference only."
    n_bins: int = 10
    "Bins of the reliability curves and ECE (equal width and equal mass)."
    age_edges: tuple[float, ...] = ()
    "Age band edges (years) for AUROC by age band; empty: quartiles of the test subjects' ages (whole years)."
    max_rows: int = 40
    "Longest table shown in the HTML/markdown (all rows stay in results.parquet and stats.json)."

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"'level' must lie in (0, 1), e.g. 0.95; got {self.level}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"'alpha' must lie in (0, 1), e.g. 0.05; got {self.alpha}")
        if self.n_boot < 100 or self.n_bins < 2 or self.max_rows < 1:
            raise ValueError(f"need n_boot >= 100, n_bins >= 2 and max_rows >= 1; got n_boot={self.n_boot}, "
                             f"n_bins={self.n_bins}, max_rows={self.max_rows}")
        if list(self.age_edges) != sorted(set(self.age_edges)):
            raise ValueError(f"'age_edges' must be increasing (or empty: bands from the cohort's ages), got "
                             f"{list(self.age_edges)}")
