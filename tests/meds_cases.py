"""Hand-made MEDS subjects for extraction tests: a prediction time, a horizon, events around them, a writer."""

from __future__ import annotations

import datetime as dt

import polars as pl

from rationale_sft.cohort import meds_io


PT = dt.datetime(2010, 6, 1, 23, 59, 59)
H = dt.timedelta(microseconds=int(round(5 * 365.25 * 86_400 * 1_000_000)))
US = dt.timedelta(microseconds=1)
BASE = ["trigger_code=VISIT", "outcome_prefixes=[ICD10//F00, ICD10//G30]", "censor_codes=[MEDS_DEATH, LOST]"]


def subject(sid: int, *extra: tuple, birth: dt.datetime = dt.datetime(1950, 1, 1), sex: str = "F",
            trigger: dt.datetime | None = PT) -> list[tuple]:
    """Static sex, birth, a lab before the visit, the visit (trigger), then ``extra`` (time, code) events."""
    rows = [(sid, None, f"SEX//{sex}", None), (sid, birth, "MEDS_BIRTH", None),
            (sid, PT - dt.timedelta(days=30), "LAB//LDL", 3.1)]
    if trigger is not None:
        rows.append((sid, trigger, "VISIT", None))
    rows += [(sid, t, c, None) for t, c in extra]
    return rows


def events_frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                      "numeric_value": pl.Float32}, orient="row")


def make(tmp_path, rows, splits=None, **kw):
    ev = events_frame(rows)
    sids = ev["subject_id"].unique().sort()
    splits = splits if splits is not None else pl.DataFrame({"subject_id": sids, "split": "train"})
    return meds_io.write_meds(tmp_path / "meds", ev, splits, **kw)


END = PT + H + dt.timedelta(days=400)  # an unrelated event that keeps follow-up open past the horizon
FIXTURE = {
    1: subject(1, (PT, "ICD10//F00"), (END, "X")),                    # outcome exactly at pt: prior, excluded
    2: subject(2, (PT + US, "ICD10//G30"), (END, "X")),               # just after pt: positive
    3: subject(3, (PT + H, "ICD10//F001"), (END, "X")),               # exactly at pt + horizon: positive
    4: subject(4, (PT + H + US, "ICD10//F00"), (END, "X")),           # just after the window: negative
    5: subject(5, (PT + dt.timedelta(days=700), "MEDS_DEATH")),       # dies in the window without outcome
    6: subject(6, (PT - dt.timedelta(days=1), "LOST"), (END, "X")),   # lost before pt: no follow-up
    7: subject(7, (END, "X"), trigger=None),                          # never has the trigger
    8: subject(8, (PT + dt.timedelta(days=100), "ICD10//G30"), (PT + dt.timedelta(days=101), "MEDS_DEATH")),
    9: subject(9, (END, "X"), sex="M"),                               # plain negative
    10: subject(10, (dt.datetime(1990, 1, 1), "ICD10//G30"), (END, "X")),  # long-past outcome: prior
}


def fixture_rows(ids=None):
    return [r for sid in (ids or FIXTURE) for r in FIXTURE[sid]]
