"""Property tests: extraction equals a plain-Python reading of the rules on random cohorts; no leakage;
nested scales stay nested, stratified and off the held-out set."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationale_sft.cohort import meds_io
from rationale_sft.cohort.extract import extract_labels, input_events
from rationale_sft.cohort.scales import nested_subsets
from rationale_sft.config.task import TaskConfig
from rationale_sft.errors import InputError

T0 = dt.datetime(2010, 1, 1)
YEAR = dt.timedelta(days=365.25)
CODES = ("VISIT", "OUT//A", "OUT//B", "DEATH", "LAB", "MEDS_BIRTH")


def reference(rows: list[tuple], splits: dict, task: TaskConfig) -> tuple[dict, dict]:
    """The task's rules read literally, one subject at a time: ({sid: label}, {rule: n excluded})."""
    by_sid: dict[int, list] = {}
    for sid, t, code in rows:
        by_sid.setdefault(sid, []).append((t, code))
    h = dt.timedelta(microseconds=round(task.horizon_years * 365.25 * 86_400 * 1e6))
    admin_end = task.data_end_time()
    labels, excl = {}, dict.fromkeys(("no_split", "no_prediction_time", "age_out_of_range", "prior_outcome",
                                      "no_followup", "censored"), 0)
    for sid, evs in by_sid.items():
        pts = [t for t, c in evs if c == task.trigger_code]
        is_out = [(t, c) for t, c in evs if c.startswith(task.outcome_prefixes)]
        pt = min(pts) if pts else None
        timed = [t for t, _ in evs if t is not None]
        censor = [t for t, c in evs if c in task.censor_codes]
        end = min([admin_end if admin_end else max(timed)] + censor) if timed else None
        window_end = None if pt is None else min(pt + h, admin_end) if admin_end else pt + h
        label = pt is not None and any(t is not None and pt < t <= window_end for t, _ in is_out)
        rule = ("no_split" if sid not in splits else "no_prediction_time" if pt is None
                else "prior_outcome" if task.exclude_prior_outcome and any(t is None or t <= pt for t, _ in is_out)
                else "no_followup" if end is None or end <= pt or any(t <= pt for t in censor)
                else "censored" if task.drop_censored and not label and end < pt + h else None)
        if rule:
            excl[rule] += 1
        else:
            labels[sid] = label
    return labels, excl


offsets = st.one_of(st.sampled_from([0.0, 5.0, -1e-9, 1e-9, 5.0 + 1e-9, 5.0 - 1e-9]), st.floats(-3, 9))


@st.composite
def cohorts(draw):
    """Random subjects whose events sit on, just around and far from the window edges."""
    rows = []
    for sid in range(draw(st.integers(2, 8))):
        pt = T0 + draw(st.integers(0, 1000)) * dt.timedelta(days=1)
        if draw(st.booleans()):
            rows.append((sid, pt, "VISIT"))
            rows.append((sid, pt + YEAR * draw(st.floats(0.5, 2)), "VISIT"))  # later visits never move pt
        for _ in range(draw(st.integers(0, 4))):
            code = draw(st.sampled_from(CODES[1:5]))
            static = code.startswith("OUT") and draw(st.integers(0, 9)) == 0
            rows.append((sid, None if static else pt + YEAR * draw(offsets), code))
    if not any(c.startswith("OUT") for _, _, c in rows):
        rows.append((0, T0 - YEAR, "OUT//A"))
    return rows


def write(tmp: Path, rows: list[tuple], split_of) -> Path:
    df = pl.DataFrame([(s, t, c) for s, t, c in rows], schema={"subject_id": pl.Int64, "time": pl.Datetime("us"),
                                                             "code": pl.String}, orient="row")
    df = df.with_columns(pl.col("time").dt.truncate("1us")).unique(maintain_order=True)
    sids = sorted({s for s, _, _ in rows})
    splits = pl.DataFrame({"subject_id": [s for s in sids if split_of(s)],
                           "split": [split_of(s) for s in sids if split_of(s)]})
    return meds_io.write_meds(tmp, df, splits, n_shards=2), df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=cohorts(), drop_censored=st.booleans(), exclude_prior=st.booleans(),
       data_end=st.sampled_from([None, "2012-06-30", "2016-01-01"]))
def test_extraction_matches_reference_and_never_leaks(rows, drop_censored, exclude_prior, data_end):
    task = TaskConfig(trigger_code="VISIT", outcome_prefixes=("OUT//",), censor_codes=("DEATH",),
                      drop_censored=drop_censored, exclude_prior_outcome=exclude_prior, data_end=data_end)
    split_of = lambda s: None if s == 7 else ("train", "tuning", "held_out")[s % 3]  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        meds_dir, df = write(Path(tmp), rows, split_of)
        expected, excl = reference([tuple(r) for r in df.iter_rows()], {s for s in range(9) if split_of(s)}, task)
        try:
            labels, summary = extract_labels(task, meds_dir)
        except InputError as exc:
            assert not expected and ("empty cohort" in str(exc) or "'VISIT' never occurs" in str(exc))
            return
        assert dict(zip(labels["subject_id"], labels["boolean_value"])) == expected
        assert summary["excluded"] == excl
        inputs = input_events(meds_dir, labels).collect()
        assert inputs.filter(pl.col("time") >= pl.col("prediction_time")).height == 0
        seen = df.join(labels.select("subject_id", "prediction_time"), on="subject_id").filter(
            pl.col("time").is_null() | (pl.col("time") < pl.col("prediction_time")))
        assert inputs.height == seen.height  # and nothing before the prediction time is lost


@st.composite
def label_sets(draw):
    n = draw(st.integers(4, 120))
    flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    split = draw(st.lists(st.sampled_from(["train", "train", "tuning", "held_out"]), min_size=n, max_size=n))
    return pl.DataFrame({"subject_id": [i * 7 + 3 for i in range(n)], "boolean_value": flags, "split": split})


@settings(max_examples=80, deadline=None)
@given(labels=label_sets(), data=st.data(), seed=st.integers(0, 2**31), ratio=st.sampled_from([None, 1.0, 3.0]))
def test_nested_subsets_properties(labels, data, seed, ratio):
    train = labels.filter(pl.col("split") == "train")
    sizes = data.draw(st.lists(st.integers(1, max(train.height, 1) + 3), min_size=1, max_size=4))
    try:
        sub = nested_subsets(labels, sizes, seed, ratio)
    except InputError as exc:
        assert "train split" in str(exc) or "needs" in str(exc)
        return
    members = {s: set(g["subject_id"]) for (s,), g in sub.group_by("scale")}
    ordered = sorted(members)
    assert ordered == sorted(set(sizes))
    for small, big in zip(ordered, ordered[1:]):
        assert members[small] <= members[big]
    assert all(len(members[s]) == s for s in ordered)
    assert members[ordered[-1]] <= set(train["subject_id"])
    pos = set(train.filter(pl.col("boolean_value"))["subject_id"])
    frac = train["boolean_value"].mean() if ratio is None else 1 / (1 + ratio)
    for s in ordered:
        assert len(members[s] & pos) == int(s * frac + 0.5)
    assert nested_subsets(labels, sizes, seed, ratio).equals(sub)  # same seed, same subsets


def test_subsets_do_not_depend_on_row_order():
    labels = pl.DataFrame({"subject_id": range(100), "boolean_value": [i % 4 == 0 for i in range(100)],
                           "split": ["train"] * 80 + ["held_out"] * 20})
    a = nested_subsets(labels, [10, 40], seed=5)
    b = nested_subsets(labels.reverse(), [10, 40], seed=5)
    assert a.equals(b) and not a.equals(nested_subsets(labels, [10, 40], seed=6))
    with pytest.raises(InputError, match="positive subject counts"):
        nested_subsets(labels, [0, 10], seed=5)
