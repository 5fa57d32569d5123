"""Subject facts: what a record shows before the prediction time, for the knowledge teacher and the checker.

Facts come from the prompt's own history frame (``render.history``): first occurrences of
diagnoses with their names and timing, last measurement values with their units, age and sex. Events at
or after the prediction time are kept apart (``later_diagnoses``, only when asked for): the checker needs
them to recognise future-leaking claims; the teacher never reads them.

>>> import datetime as dt, polars as pl
>>> pt = dt.datetime(2009, 6, 15, 23, 59, 59)
>>> ev = pl.DataFrame({"subject_id": [1, 1, 1, 1], "code": ["MEDS_BIRTH", "ICD10//I10", "UKB//LDL", "ICD10//F03"],
...                    "time": [dt.datetime(1942, 5, 1), dt.datetime(2002, 3, 10), pt.replace(hour=9), dt.datetime(2012, 1, 1)],
...                    "numeric_value": [None, None, 4.6, None]})
>>> codes = pl.DataFrame({"code": ["ICD10//I10", "UKB//LDL"], "description": ["Essential (primary) hypertension", "LDL cholesterol (mmol/L)"]})
>>> f = subject_facts(ev, codes, pt, include_later=True)
>>> round(f.age, 1), f.diagnoses[0].short, f.diagnoses[0].ago, f.measurements[0].text
(67.1, 'I10', '7 years before assessment', 'LDL cholesterol 4.6 mmol/L')
>>> [d.short for d in f.later_diagnoses]
['F03']
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rationale_sft.config.render import RenderConfig
from rationale_sft.render.history import KEYS, HistoryFrame, history_frame
from rationale_sft.render.vocab import DAYS_PER_YEAR, ago_phrase, format_number


@dataclass(frozen=True)
class Diagnosis:
    """A diagnosis' first occurrence relative to the prediction time."""

    code: str
    "Full code, e.g. ICD10//I10."
    short: str
    "Code without its prefix, e.g. I10."
    name: str
    "Name from codes.parquet."
    time: dt.datetime
    "Time of the first occurrence."
    days_before: int
    "Whole days from the event to the prediction time (negative: after it)."
    ago: str
    "Timing phrase as in the prompt, e.g. '7 years before assessment'."

    @property
    def date(self) -> str:
        """Calendar month as in the prompt, e.g. '2002-03'."""
        return self.time.strftime("%Y-%m")

    @property
    def years_before(self) -> float:
        """Years from the event to the prediction time."""
        return self.days_before / DAYS_PER_YEAR


@dataclass(frozen=True)
class Measurement:
    """The last value of a measurement before the prediction time."""

    code: str
    "Full code, e.g. UKB//LDL."
    short: str
    "Code without its prefix, e.g. LDL."
    name: str
    "Name from codes.parquet (unit removed)."
    unit: str
    "Unit suffix as printed after the number ('' when none, ' mmol/L', '%')."
    value: float | None
    "Last value (None: an item recorded without a value)."

    @property
    def text(self) -> str:
        """The measurement as the teacher cites it, e.g. 'LDL cholesterol 4.6 mmol/L'."""
        return self.name if self.value is None else f"{self.name} {format_number(self.value)}{self.unit}"


@dataclass(frozen=True)
class Facts:
    """Everything a record shows about one subject before the prediction time."""

    subject_id: int
    "Subject id."
    prediction_time: dt.datetime
    "The prediction time."
    age: float | None
    "Age in years at the prediction time."
    sex: str | None
    "'F', 'M' or None."
    diagnoses: tuple[Diagnosis, ...] = ()
    "First occurrences before the prediction time, oldest first."
    measurements: tuple[Measurement, ...] = ()
    "Last values before the prediction time, in codes.parquet order."
    later_diagnoses: tuple[Diagnosis, ...] = field(default=(), repr=False)
    "Diagnoses first seen at or after the prediction time (filled only for the checker)."
    anchor: str = "assessment"
    "Word for the prediction time in timing phrases."


def facts_frame(events: pl.DataFrame, codes: pl.DataFrame, times: pl.DataFrame, cfg: RenderConfig,
                include_later: bool = False) -> dict[int, Facts]:
    """Facts for every (subject_id, prediction_time) row of ``times`` (optional columns age, sex), vectorised."""
    frame = history_frame(events, codes, times, cfg, include_later)
    return facts_from_frame(frame, people(events, times), cfg.anchor)


def people(events: pl.DataFrame, times: pl.DataFrame) -> pl.DataFrame:
    """``times`` with each subject's birth time (MEDS_BIRTH) and sex code (SEX//) from ``events``."""
    births = events.filter(pl.col("code") == "MEDS_BIRTH").group_by("subject_id").agg(birth=pl.col("time").min())
    sexes = events.filter(pl.col("code").str.starts_with("SEX//")).group_by("subject_id").agg(
        sex_code=pl.col("code").first().str.replace("SEX//", ""))
    return times.join(births, on="subject_id", how="left").join(sexes, on="subject_id", how="left")


def facts_from_frame(frame: HistoryFrame, base: pl.DataFrame, anchor: str) -> dict[int, Facts]:
    """Facts per subject from its history frame and ``people`` (age, sex, birth)."""
    return _assemble(base, frame.diagnoses, frame.measurements, anchor)


def _assemble(base: pl.DataFrame, diag: pl.DataFrame, meas: pl.DataFrame, anchor: str) -> dict[int, Facts]:
    by_subject: dict[int, dict] = {}
    for r in diag.iter_rows(named=True):
        days = int(r["days"])
        ago = ago_phrase(days, anchor) if days >= 0 else ago_phrase(-days, anchor).replace(" before ", " after ")
        d = Diagnosis(r["code"], r["short"], r["name"], r["time"], days, ago)
        by_subject.setdefault(r["subject_id"], {"d": [], "l": [], "m": []})["d" if r["before"] else "l"].append(d)
    for r in meas.iter_rows(named=True):
        m = Measurement(r["code"], r["short"], r["name"], r["unit_suffix"], r["numeric_value"])
        by_subject.setdefault(r["subject_id"], {"d": [], "l": [], "m": []})["m"].append(m)
    out = {}
    for r in base.iter_rows(named=True):
        parts = by_subject.get(r["subject_id"], {"d": [], "l": [], "m": []})
        age = r.get("age")
        if age is None and r.get("birth") is not None:
            age = (r["prediction_time"] - r["birth"]).days / DAYS_PER_YEAR
        out[r["subject_id"]] = Facts(r["subject_id"], r["prediction_time"], age, r.get("sex") or r.get("sex_code"),
                                     tuple(parts["d"]), tuple(parts["m"]), tuple(parts["l"]), anchor)
    return out


def subject_facts(events: pl.DataFrame, codes: pl.DataFrame, prediction_time: dt.datetime,
                  cfg: RenderConfig | None = None, include_later: bool = False) -> Facts:
    """Facts of the one subject whose events are given (age from MEDS_BIRTH, sex from SEX//)."""
    ev = _normalise(events)
    sid = ev["subject_id"][0]
    times = pl.DataFrame({"subject_id": [sid], "prediction_time": [prediction_time]},
                         schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")})
    return facts_frame(ev, codes, times, cfg or RenderConfig(), include_later)[sid]


def facts_for_labels(meds_dir: str | Path, labels: pl.DataFrame, cfg: RenderConfig | None = None,
                     include_later: bool = False) -> dict[int, Facts]:
    """Facts of every labelled subject of a MEDS dataset (age and sex from the labels), by subject id."""
    from rationale_sft.cohort.meds_io import scan_events
    from rationale_sft.render.stage import read_codes

    sids = labels["subject_id"].to_list()
    events = scan_events(meds_dir).filter(pl.col("subject_id").is_in(sids)).collect()
    times = labels.select(*KEYS, *[c for c in ("age", "sex") if c in labels.columns])
    return facts_frame(events, read_codes(meds_dir), times, cfg or RenderConfig(), include_later)


def _normalise(events: pl.DataFrame) -> pl.DataFrame:
    cols = [pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")), pl.col("code").cast(pl.String),
            (pl.col("numeric_value") if "numeric_value" in events.columns else pl.lit(None)).cast(pl.Float64)
            .alias("numeric_value")]
    return events.select(cols)
