"""Extract a labelled prediction cohort (MEDS label schema plus split, age, sex) from any MEDS dataset.

Conventions (docs/task.md): a subject's inputs are its events strictly before the prediction time (and
its static, null-time events); the outcome window is ``(prediction_time, prediction_time + horizon]``.
One lazy pass over the events computes everything per subject; the rules are then applied in a fixed
order and every exclusion is counted in the summary.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft import rundir
from rationale_sft.cohort import meds_io
from rationale_sft.cohort.scales import nested_subsets
from rationale_sft.config.task import TaskConfig
from rationale_sft.errors import InputError

YEAR_US = 365.25 * 86_400 * 1_000_000
LABEL_COLUMNS = ("subject_id", "prediction_time", "boolean_value", "split", "age", "sex")
# Exclusion rules in the order they are applied; each subject is counted under the first rule it fails.
RULES = ("no_split", "no_prediction_time", "age_out_of_range", "prior_outcome", "no_followup", "censored")


def years(n: float) -> pl.Expr:
    """A duration literal of ``n`` years of 365.25 days (microsecond precision)."""
    return pl.duration(microseconds=int(round(n * YEAR_US)))


def _is_outcome(task: TaskConfig) -> pl.Expr:
    return pl.any_horizontal([pl.col("code").str.starts_with(p) for p in task.outcome_prefixes]
                             + [pl.col("code").is_in(list(task.outcome_codes))])


def _prediction_time(task: TaskConfig, birth: pl.Expr) -> pl.Expr:
    if task.trigger_code is not None:
        return pl.col("time").filter(pl.col("code") == task.trigger_code).min()
    return birth + years(task.trigger_age_years)


def subject_table(events: pl.LazyFrame, task: TaskConfig) -> pl.LazyFrame:
    """One row per subject: prediction_time, birth, sex, last event, first censoring, outcome times."""
    t, code = pl.col("time"), pl.col("code")
    birth = t.filter(code == task.birth_code).min()
    pt = _prediction_time(task, birth)
    out = _is_outcome(task)
    return events.group_by("subject_id").agg(
        prediction_time=pt,
        birth=birth,
        sex=code.filter(code.str.starts_with(task.sex_prefix)).first().str.strip_prefix(task.sex_prefix),
        last_time=t.max(),
        censor_time=t.filter(code.is_in(list(task.censor_codes))).min(),
        prior_outcome=(out & (t.is_null() | (t <= pt))).any(),
        outcome_time=t.filter(out & (t > pt)).min(),
        n_trigger_times=t.filter(code == task.trigger_code).drop_nulls().n_unique() if task.trigger_code
        else pl.lit(0, pl.UInt32),
    )


def _with_windows(subjects: pl.DataFrame, splits: pl.DataFrame, task: TaskConfig) -> pl.DataFrame:
    """Add split, age, end of follow-up, end of the observed outcome window and the label."""
    end, pt = task.data_end_time(), pl.col("prediction_time")
    horizon_end = pt + years(task.horizon_years)
    df = subjects.join(splits, on="subject_id", how="left").with_columns(
        age=(pt - pl.col("birth")).dt.total_microseconds() / YEAR_US,
        follow_end=pl.min_horizontal(pl.col("censor_time"), pl.lit(end) if end else pl.col("last_time")),
        window_end=pl.min_horizontal(horizon_end, pl.lit(end)) if end else horizon_end)
    return df.with_columns(
        boolean_value=pl.col("outcome_time").is_not_null() & (pl.col("outcome_time") <= pl.col("window_end")))


def _rule_failures(task: TaskConfig) -> dict[str, pl.Expr]:
    """For each rule in RULES, the expression that is true where a subject fails it."""
    pt = pl.col("prediction_time")
    lo, hi = task.min_age_years, task.max_age_years
    age_ok = pl.col("age").is_between(-np.inf if lo is None else lo, np.inf if hi is None else hi)
    return {
        "no_split": pl.col("split").is_null(),
        "no_prediction_time": pt.is_null(),
        "age_out_of_range": ~age_ok.fill_null(False) & pl.lit(lo is not None or hi is not None),
        "prior_outcome": pl.col("prior_outcome") & pl.lit(task.exclude_prior_outcome),
        "no_followup": (pl.col("follow_end").is_null() | (pl.col("follow_end") <= pt)
                        | (pl.col("censor_time") <= pt).fill_null(False)) & pl.lit(task.require_followup),
        "censored": ~pl.col("boolean_value") & (pl.col("follow_end") < pt + years(task.horizon_years))
        & pl.lit(task.drop_censored),
    }


def apply_rules(subjects: pl.DataFrame, splits: pl.DataFrame, task: TaskConfig) -> tuple[pl.DataFrame, dict]:
    """Label each subject and drop those failing a rule; return (labels, excluded counts per rule)."""
    df, fails, excluded = _with_windows(subjects, splits, task), _rule_failures(task), {}
    for rule in RULES:
        mask = df.with_columns(_fails=fails[rule].fill_null(False))["_fails"]  # with_columns broadcasts literals
        excluded[rule] = int(mask.sum())
        df = df.filter(~mask)
    labels = df.select(pl.col("subject_id"), pl.col("prediction_time").cast(pl.Datetime("us")),
                       pl.col("boolean_value"), pl.col("split"), pl.col("age").cast(pl.Float64),
                       pl.col("sex").cast(pl.String))
    return labels.sort("subject_id"), excluded


def _check_codes(events: pl.LazyFrame, task: TaskConfig, meds_dir: Path) -> list[str]:
    """Fail when the trigger or every outcome prefix is absent; return outcome prefixes never seen."""
    codes = events.select(pl.col("code").unique()).collect()["code"].to_list()
    if task.trigger_code is not None and task.trigger_code not in set(codes):
        close = difflib.get_close_matches(task.trigger_code, codes, n=3)
        raise InputError(f"{meds_dir}: trigger_code {task.trigger_code!r} never occurs in the data"
                         + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                         + "; set trigger_code in the task YAML to a code present in data/")
    unseen = [p for p in task.outcome_prefixes if not any(c.startswith(p) for c in codes)] \
        + [c for c in task.outcome_codes if c not in set(codes)]
    if len(unseen) == len(task.outcome_prefixes) + len(task.outcome_codes):
        exact = f" or equals an outcome code {list(task.outcome_codes)}" if task.outcome_codes else ""
        raise InputError(f"{meds_dir}: no code starts with any outcome prefix {list(task.outcome_prefixes)}{exact}; "
                         "fix outcome_prefixes in the task YAML (codes look like "
                         f"{', '.join(map(repr, sorted(codes)[:3]))})")
    if task.birth_code not in set(codes) and (task.trigger_age_years is not None):
        raise InputError(f"{meds_dir}: trigger_age_years needs birth events ({task.birth_code!r}), none found")
    return unseen


def extract_labels(task: TaskConfig, meds_dir: str | Path) -> tuple[pl.DataFrame, dict]:
    """Labels of ``task`` on the MEDS data in ``meds_dir`` and a summary (counts, exclusions)."""
    meds_dir = Path(meds_dir)
    checks = meds_io.validate_events(meds_dir)
    if checks["n_duplicates"] and task.on_duplicate_events == "error":
        d = checks["first_duplicate"]
        raise InputError(f"{meds_dir}: {checks['n_duplicates']} repeated event(s), e.g. subject {d['subject_id']} "
                         f"code {d['code']!r} at {d['time']}; remove them or set on_duplicate_events: drop")
    splits = meds_io.read_splits(meds_dir)
    events = meds_io.scan_events(meds_dir)
    unseen = _check_codes(events, task, meds_dir)
    # a subject lives in one shard, so the per-subject pass runs shard by shard with bounded memory
    subjects = pl.concat([subject_table(meds_io.scan_shard(p), task).collect() for p in meds_io.data_files(meds_dir)])
    _check_repeated_trigger(subjects, task, meds_dir)
    labels, excluded = apply_rules(subjects, splits, task)
    if labels.height == 0:
        raise InputError(f"{meds_dir}: empty cohort for task {task.name!r}: every subject was excluded "
                         f"({excluded}); check trigger, horizon, data_end and censoring in the task YAML")
    return labels, _summary(task, labels, excluded, checks, unseen)


def _check_repeated_trigger(subjects: pl.DataFrame, task: TaskConfig, meds_dir: Path) -> None:
    """With ``repeated_trigger: error``, fail on a subject whose trigger code occurs at several times."""
    many = subjects.filter(pl.col("n_trigger_times") > 1).sort("subject_id")
    if task.repeated_trigger == "error" and many.height:
        raise InputError(f"{meds_dir}: trigger_code {task.trigger_code!r} occurs at {many['n_trigger_times'][0]} "
                         f"different times for subject {many['subject_id'][0]} ({many.height} subject(s) in all); "
                         "ACES labels every occurrence, rationale-sft predicts once per subject: set "
                         "repeated_trigger=first to predict at the first, or pass labels computed elsewhere "
                         "(--labels) with one prediction time per subject")


def summarize(name: str, labels: pl.DataFrame, excluded: dict, checks: dict) -> dict:
    """Counts of a labelled cohort: subjects and events in the data, cases, exclusions, per split."""
    n, n_pos = labels.height, int(labels["boolean_value"].sum())
    by_split = {s: {"n": int(g.height), "n_pos": int(g["boolean_value"].sum())}
                for (s,), g in labels.group_by("split", maintain_order=True)}
    return {"task": name, "n_subjects_in_data": checks["n_subjects"], "n_events": checks["n_events"],
            "n_duplicate_events": checks["n_duplicates"], "n": n, "n_pos": n_pos, "prevalence": n_pos / n,
            "excluded": excluded, "by_split": dict(sorted(by_split.items()))}


def _summary(task: TaskConfig, labels: pl.DataFrame, excluded: dict, checks: dict, unseen: list) -> dict:
    return summarize(task.name, labels, excluded, checks) | {"outcome_prefixes_unseen": unseen}


def sidecar_paths(out: str | Path) -> dict[str, Path]:
    """Files written next to ``LABELS.parquet``: ``LABELS.summary.json`` and ``LABELS.subsets.parquet``.

    >>> {k: v.name for k, v in sidecar_paths("/x/labels.parquet").items()}
    {'summary': 'labels.summary.json', 'subsets': 'labels.subsets.parquet'}
    """
    out = Path(out)
    return {"summary": out.with_name(out.stem + ".summary.json"),
            "subsets": out.with_name(out.stem + ".subsets.parquet")}


def extract(task: TaskConfig, meds_dir: str | Path, out: str | Path, scales: tuple[int, ...] = (),
            subset_seed: int = 0, case_ratio: float | None = None) -> dict:
    """Write labels, their summary json and (with ``scales``) nested training subsets; return the summary.

    Everything is computed before anything is written, and each write is atomic, so bad input leaves
    no output behind.
    """
    labels, summary = extract_labels(task, meds_dir)
    return write_cohort(labels, summary, out, scales, subset_seed, case_ratio)


def write_cohort(labels: pl.DataFrame, summary: dict, out: str | Path, scales: tuple[int, ...] = (),
                 subset_seed: int = 0, case_ratio: float | None = None) -> dict:
    """Write labels, their summary and (with ``scales``) nested subsets, computing everything first."""
    subsets = nested_subsets(labels, scales, subset_seed, case_ratio) if scales else None
    side = sidecar_paths(out)
    if subsets is not None:
        summary["subsets"] = {"sizes": list(scales), "seed": subset_seed, "case_ratio": case_ratio,
                              "path": side["subsets"].name}
        rundir.write_parquet(subsets, side["subsets"])
    rundir.write_parquet(labels.select(LABEL_COLUMNS), out)
    rundir.write_json(side["summary"], summary)
    return summary


def input_events(meds_dir: str | Path, labels: pl.DataFrame) -> pl.LazyFrame:
    """The events a model may see: each labelled subject's static events and those strictly before its
    prediction time (columns subject_id, prediction_time, time, code, numeric_value)."""
    keys = labels.lazy().select(pl.col("subject_id"), pl.col("prediction_time"))
    return (meds_io.scan_events(meds_dir).join(keys, on="subject_id", how="inner")
            .filter(pl.col("time").is_null() | (pl.col("time") < pl.col("prediction_time")))
            .select("subject_id", "prediction_time", "time", "code", "numeric_value"))
