"""Config of a prediction task on MEDS data: prediction time, horizon, outcome, exclusions, follow-up.

Exactly one way of finding the prediction time is set: the first event of ``trigger_code``, or the
moment the subject reaches ``trigger_age_years`` (from ``MEDS_BIRTH``).

>>> from rationale_sft import config
>>> cfg = config.build(TaskConfig, {"trigger_code": "UKB//ASSESSMENT", "outcome_prefixes": ["ICD10//G30"]})
>>> cfg.horizon_years, cfg.drop_censored
(5.0, True)
>>> config.build(TaskConfig, {"trigger_code": "X", "outcome_prefixes": ["Y"]}, ["data_end=2022-10-31"]).data_end
'2022-10-31'

>>> config.build(TaskConfig, {"trigger_code": "X", "outcome_prefixes": ["Y"], "horizon": 3})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: unknown key 'horizon' (did you mean 'horizon_years'?); valid keys: ...
>>> config.build(TaskConfig, {"trigger_code": "X", "outcome_prefixes": ["Y"], "horizon_years": 0})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: horizon_years must be > 0, got 0.0 (e.g. horizon_years: 5)
>>> config.build(TaskConfig, {"outcome_prefixes": ["Y"]})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: set exactly one of trigger_code (first event of a code) or trigger_age_years (age from MEDS_BIRTH)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskConfig:
    """A binary prediction task: does an outcome code occur in (prediction_time, prediction_time + horizon]?"""

    name: str = "task"
    "Name of the task (recorded in the summary)."
    trigger_code: str | None = None
    "Prediction time = time of the subject's first event with exactly this code (e.g. UKB//ASSESSMENT)."
    trigger_age_years: float | None = None
    "Prediction time = birth (birth_code) + this many years of 365.25 days (instead of trigger_code)."
    horizon_years: float = 5.0
    "Length of the outcome window after the prediction time, in years of 365.25 days."
    outcome_prefixes: tuple[str, ...] = ()
    "Codes starting with any of these prefixes are the outcome (e.g. ICD10//F00, ICD10//G30)."
    outcome_codes: tuple[str, ...] = ()
    "Codes that are the outcome when equal to one of these exactly (as an ACES `code:` predicate)."
    exclude_prior_outcome: bool = True
    "Drop subjects with an outcome event at or before the prediction time (or a static one)."
    censor_codes: tuple[str, ...] = ("MEDS_DEATH",)
    "Codes that end a subject's follow-up (death, loss to follow-up)."
    data_end: str | dt.date | None = None
    "Administrative end of data, YYYY-MM-DD (inclusive, whole day); null = each subject's last event."
    drop_censored: bool = True
    "Drop subjects whose follow-up ends before the horizon without the outcome; false keeps them as negatives."
    require_followup: bool = True
    "Drop subjects whose follow-up ends at or before the prediction time; false keeps them (as ACES does)."
    repeated_trigger: str = "first"
    "A trigger_code at several times: first (predict at the first) or error (ACES would label every one)."
    min_age_years: float | None = None
    "Drop subjects younger than this at the prediction time (null = no limit)."
    max_age_years: float | None = None
    "Drop subjects older than this at the prediction time (null = no limit)."
    birth_code: str = "MEDS_BIRTH"
    "Code of the birth event (age is computed from its time)."
    sex_prefix: str = "SEX//"
    "Static code prefix giving sex: the rest of the code (F or M) is the subject's sex."
    on_duplicate_events: str = "error"
    "What to do with exactly repeated events (same subject, time, code, value): error or drop."

    def __post_init__(self) -> None:
        if (self.trigger_code is None) == (self.trigger_age_years is None):
            raise ValueError("set exactly one of trigger_code (first event of a code) or trigger_age_years "
                             "(age from MEDS_BIRTH)")
        if not self.horizon_years > 0:
            raise ValueError(f"horizon_years must be > 0, got {self.horizon_years} (e.g. horizon_years: 5)")
        if not (self.outcome_prefixes or self.outcome_codes) \
                or any(not p for p in (*self.outcome_prefixes, *self.outcome_codes)):
            raise ValueError("outcome_prefixes must list at least one non-empty code prefix "
                             "(e.g. [ICD10//F00, ICD10//G30]), or outcome_codes exact codes")
        if self.repeated_trigger not in ("first", "error"):
            raise ValueError(f"repeated_trigger must be 'first' or 'error', got {self.repeated_trigger!r}")
        if self.on_duplicate_events not in ("error", "drop"):
            raise ValueError(f"on_duplicate_events must be 'error' or 'drop', got {self.on_duplicate_events!r}")
        if isinstance(self.data_end, dt.date):  # YAML reads an unquoted date as a date: keep the text form
            object.__setattr__(self, "data_end", self.data_end.isoformat())
        if self.data_end is not None:
            try:
                dt.date.fromisoformat(self.data_end)
            except ValueError:
                raise ValueError(f"data_end must be a date YYYY-MM-DD, got {self.data_end!r}") from None
        if self.min_age_years is not None and self.max_age_years is not None \
                and self.min_age_years > self.max_age_years:
            raise ValueError(f"min_age_years {self.min_age_years} > max_age_years {self.max_age_years}")

    def hashed(self) -> dict:
        """The task as a plain dict for job ids: fields added after the first grids are left out while they
        hold their defaults, so the ids of existing tasks do not change.

        >>> from rationale_sft import config
        >>> cfg = config.build(TaskConfig, {"trigger_code": "X", "outcome_prefixes": ["Y"]})
        >>> sorted(set(config.to_dict(cfg)) - set(cfg.hashed()))
        ['outcome_codes', 'repeated_trigger', 'require_followup']
        >>> "require_followup" in config.build(TaskConfig, {"trigger_code": "X", "outcome_prefixes": ["Y"],
        ...                                                 "require_followup": False}).hashed()
        True
        """
        from rationale_sft import config

        data = config.to_dict(self)
        for name, default in LATER_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    def data_end_time(self) -> dt.datetime | None:
        """Last instant of the administrative end date (its 23:59:59.999999), or None."""
        if self.data_end is None:
            return None
        day = dt.date.fromisoformat(self.data_end)
        return dt.datetime.combine(day, dt.time.max)


LATER_DEFAULTS = {"outcome_codes": [], "require_followup": True, "repeated_trigger": "first"}
"Fields added after grids were first planned, with their defaults: left out of job ids while at these values."
