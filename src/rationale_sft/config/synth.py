"""Config of the calibrated synthetic UK-Biobank-like MEDS cohort (``rationale-sft cohort synth``).

Every knob of the generative process lives here; docs/synthetic_cohort.md explains each one.

>>> from rationale_sft import config
>>> cfg = config.build(SynthConfig, {}, ["n_subjects=500", "hidden_share=0.2"])
>>> cfg.n_subjects, cfg.hidden_share, cfg.data_end
(500, 0.2, '2022-10-31')
>>> config.build(SynthConfig, {}, ["n_subjects=0"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: n_subjects must be a positive integer, got 0 (e.g. n_subjects=10000)
>>> config.build(SynthConfig, {}, ["hidden_share=1.5"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: hidden_share must lie in [0, 1], got 1.5 (0 = textbook factors only, 1 = hidden signal only)
>>> config.build(SynthConfig, {}, ["hiden_share=0.1"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: unknown key 'hiden_share' (did you mean 'hidden_share' or ...); valid keys: ...
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rationale_sft.config import ConfigError

_DATES = ("assessment_start", "assessment_end", "records_start", "data_end")
_UNIT = ("hidden_share", "visit_share", "prevalent_adrd_ratio", "train_share", "tuning_share")


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic cohort: size, seeds, calendar, the ADRD hazard and the diagnosis process."""

    n_subjects: int = 10_000
    "Number of subjects (all alive and attending the baseline assessment)."
    seed: int = 0
    "Seed of the sample: which people are drawn (same seed -> byte-identical files)."
    world_seed: int = 0
    "Seed of the generative world: code prevalences, age profiles and the hidden weight vector."
    age_min: float = 40.0
    "Youngest age at the baseline assessment (UK Biobank recruited ages 40-69)."
    age_max: float = 70.0
    "Oldest age at the baseline assessment (set 80 for an older cohort with higher incidence)."
    assessment_start: str | dt.date = "2006-03-13"
    "First possible baseline assessment date (YYYY-MM-DD)."
    assessment_end: str | dt.date = "2010-10-01"
    "Last possible baseline assessment date (YYYY-MM-DD)."
    records_start: str | dt.date = "1997-04-01"
    "Start of the electronic hospital records: no diagnosis is dated earlier (YYYY-MM-DD)."
    data_end: str | dt.date = "2022-10-31"
    "Administrative end of data: no event is dated later (YYYY-MM-DD)."
    hidden_share: float = 0.5
    "Share of the non-age log-hazard variance of ADRD carried by the hidden part (0 = textbook only)."
    covariate_sd: float = 1.0
    "Standard deviation of the ADRD log-hazard beyond age and sex (textbook + hidden parts together)."
    adrd_rate_at_70: float = 0.003
    "Annual ADRD incidence at age 70 for an average subject (sets the baseline hazard level)."
    adrd_age_slope: float = 0.125
    "Log hazard ratio of ADRD per year of age (0.125: incidence doubles every ~5.5 years)."
    adrd_female_log_hr: float = 0.1
    "Log hazard ratio of ADRD for women versus men."
    n_hidden_codes: int = 300
    "Number of ordinary ICD codes carrying a weak hidden weight in the ADRD hazard."
    visit_share: float = 0.35
    "Share of the hidden part's variance carried by visit patterns (recent diagnosis counts)."
    prevalent_adrd_ratio: float = 0.15
    "Probability of ADRD already before the assessment, as a multiple of the subject's 5-year risk."
    death_rate_at_60: float = 0.0035
    "Annual all-cause mortality at age 60 for an average subject (UK Biobank volunteers are healthy)."
    death_age_slope: float = 0.09
    "Log hazard ratio of death per year of age (Gompertz slope)."
    death_hr_after_adrd: float = 2.5
    "Hazard ratio of death after ADRD onset."
    ltfu_rate: float = 0.0005
    "Annual rate of loss to follow-up after the assessment."
    mean_codes: float = 7.0
    "Expected number of distinct ordinary ICD codes per subject between records_start and data_end."
    prevalence_exponent: float = 1.8
    "Tail exponent of code prevalence against prevalence rank (larger = thinner tail)."
    train_share: float = 0.8
    "Share of subjects in the train split (the rest is divided between tuning and held_out)."
    tuning_share: float = 0.1
    "Share of subjects in the tuning split."
    shard_size: int = 100_000
    "Subjects per data shard: bounds memory (a shard is generated and written at a time)."
    calibration_n: int = 20_000
    "Size of the separate calibration sample that fixes the hazard's scale constants."
    workers: int = 1
    "Processes generating shards in parallel (results do not depend on it)."

    def __post_init__(self) -> None:
        if isinstance(self.n_subjects, bool) or self.n_subjects <= 0:
            raise ConfigError(f"n_subjects must be a positive integer, got {self.n_subjects} (e.g. n_subjects=10000)")
        if not 0.0 <= self.hidden_share <= 1.0:
            raise ConfigError(f"hidden_share must lie in [0, 1], got {self.hidden_share} "
                             "(0 = textbook factors only, 1 = hidden signal only)")
        self._check_ranges()
        self._check_dates()

    def _check_ranges(self) -> None:
        for name in _UNIT:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.train_share + self.tuning_share > 1.0:
            raise ConfigError(f"train_share + tuning_share must be <= 1, got {self.train_share} + {self.tuning_share}")
        if not 18.0 <= self.age_min < self.age_max <= 100.0:
            raise ConfigError(f"need 18 <= age_min < age_max <= 100, got age_min={self.age_min}, age_max={self.age_max}")
        if self.shard_size > 1_000_000:
            raise ConfigError(f"shard_size must be <= 1000000, got {self.shard_size} (memory grows with it)")
        for name in ("shard_size", "calibration_n", "workers", "n_hidden_codes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("covariate_sd", "adrd_rate_at_70", "death_rate_at_60", "mean_codes", "prevalence_exponent",
                     "death_hr_after_adrd"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.ltfu_rate < 0:
            raise ConfigError(f"ltfu_rate must be >= 0, got {self.ltfu_rate}")

    def _check_dates(self) -> None:
        for name in _DATES:  # YAML reads an unquoted date as a date: keep the text form
            if isinstance(getattr(self, name), dt.date):
                object.__setattr__(self, name, getattr(self, name).isoformat())
            try:
                dt.date.fromisoformat(getattr(self, name))
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a date YYYY-MM-DD, got {getattr(self, name)!r}") from None
        days = [dt.date.fromisoformat(getattr(self, n)) for n in ("records_start", "assessment_start",
                                                                  "assessment_end", "data_end")]
        if days[0].year < 1900 or days[3].year > 2070:
            raise ConfigError(f"dates must lie in 1900-2070, got records_start={days[0]}, data_end={days[3]}")
        if not days[0] <= days[1] <= days[2] < days[3]:
            raise ConfigError("dates must satisfy records_start <= assessment_start <= assessment_end < data_end, "
                             f"got {', '.join(d.isoformat() for d in days)}")

    def day(self, name: str) -> int:
        """A date field as days since 1970-01-01."""
        return (dt.date.fromisoformat(getattr(self, name)) - dt.date(1970, 1, 1)).days
