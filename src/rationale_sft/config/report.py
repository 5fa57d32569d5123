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
    gate_marker_rate: float = 0.95
    "Quality gate, every rationale-arm run: least share of test subjects whose generation reaches the answer marker."
    gate_label_mass: float = 0.9
    "Quality gate, every rationale-arm run: least mean P(Yes)+P(No) at the answer slot after the rationale."
    gate_grounding: float = 0.9
    "Quality gate, every rationale-arm run: least share of the generated rationales' claims the checker grounds."
    gate_age_correct: float = 0.9
    "Quality gate, every rationale-arm run: least share of test subjects whose generation states the right age."
    gate_sex_correct: float = 0.9
    "Quality gate, every rationale-arm run: least share of test subjects whose generation states the right sex."
    gate_loop_rate: float = 0.05
    "Quality gate, every rationale-arm run: largest share of generations that loop (score.quality.loops)."
    gate_lr_margin: float = 0.0
    "Quality gate, reference arm at the largest scale: least mean AUROC minus the LR baseline's (same subjects)."
    gate_lines_margin: float = 0.03
    "Quality gate, reference arm at the largest scale: least mean AUROC minus the history-line-count AUROC."
    gate_fewshot_label_mass: float = 0.5
    "Quality gate, every few-shot run: least mean P(Yes)+P(No) at the answer slot."
    gate_fewshot_truncated: float = 0.0
    "Quality gate, every few-shot run: largest share of test prompts that lost history lines to fit the context."
    mechanism_margin: float = 0.02
    "Mechanism section: two arms count as close when the whole Delta AUROC interval lies within +/- this."
    mechanism_tiny_share: float = 0.1
    "Mechanism section: a mean label gradient share below this counts as tiny (the label is diluted)."

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"'level' must lie in (0, 1), e.g. 0.95; got {self.level}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"'alpha' must lie in (0, 1), e.g. 0.05; got {self.alpha}")
        if self.n_boot < 100 or self.n_bins < 2 or self.max_rows < 1:
            raise ValueError(f"need n_boot >= 100, n_bins >= 2 and max_rows >= 1; got n_boot={self.n_boot}, "
                             f"n_bins={self.n_bins}, max_rows={self.max_rows}")
        rates = {k: getattr(self, k) for k in ("gate_marker_rate", "gate_label_mass", "gate_grounding",
                                               "gate_age_correct", "gate_sex_correct", "gate_loop_rate",
                                               "gate_fewshot_label_mass", "gate_fewshot_truncated")}
        bad = {k: v for k, v in rates.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"quality-gate rates must lie in [0, 1]; got {bad}")
        if list(self.age_edges) != sorted(set(self.age_edges)):
            raise ValueError(f"'age_edges' must be increasing (or empty: bands from the cohort's ages), got "
                             f"{list(self.age_edges)}")
