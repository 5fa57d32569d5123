"""ACES task configs as `--task` / `data.task`: the shipped ADRD config labels a synthetic MEDS cohort as ACES
would (checked against a direct reading of the config) and as adrd_5y.yaml does on the subjects both keep;
window edges on hand-made subjects; every construct outside the translatable subset fails naming it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest
import pytimeparse
import yaml

from rationale_sft import config
from rationale_sft.cli import main
from rationale_sft.cohort import aces
from rationale_sft.cohort.extract import extract_labels
from rationale_sft.cohort.synth import synthesize
from rationale_sft.cohort.task import load_task
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.config.synth import SynthConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment.plan import plan
from meds_cases import END, PT, US, H, make, subject

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ACES_ADRD = CONFIGS / "tasks" / "adrd_5y.aces.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "meds"
    synthesize(config.build(SynthConfig, {"n_subjects": 2000, "seed": 3}), out)
    return out


def aces_reading(cfg_path: Path, meds: Path) -> pl.DataFrame:
    """Labels as ACES defines them, read straight off the config: one row per trigger event; the label is
    whether the label regex matches a code in (trigger, trigger + offset]; rows with a match at or before the
    trigger are dropped."""
    parse = pytimeparse.parse
    cfg = yaml.safe_load(cfg_path.read_text())
    trigger = cfg["predicates"][cfg["trigger"]]["code"]
    regex = cfg["predicates"]["adrd"]["code"]["regex"]
    horizon = dt.timedelta(seconds=parse(cfg["windows"]["target"]["end"].split("+")[1]))
    ev = pl.read_parquet(meds / "data" / "**" / "*.parquet").filter(pl.col("time").is_not_null())
    t = ev.filter(pl.col("code") == trigger).select("subject_id", prediction_time="time")
    out = ev.filter(pl.col("code").str.contains(regex)).join(t, on="subject_id")
    prior = out.filter(pl.col("time") <= pl.col("prediction_time"))["subject_id"].unique()
    case = out.filter((pl.col("time") > pl.col("prediction_time"))
                      & (pl.col("time") <= pl.col("prediction_time") + horizon))["subject_id"].unique()
    return (t.filter(~pl.col("subject_id").is_in(prior.implode()))
            .with_columns(boolean_value=pl.col("subject_id").is_in(case.implode())).sort("subject_id"))


def test_the_aces_adrd_config_labels_as_aces_reads_it(synth):
    labels, summary = extract_labels(load_task(ACES_ADRD), synth)
    expected = aces_reading(ACES_ADRD, synth)
    assert labels.select("subject_id", "prediction_time", "boolean_value").equals(expected)
    assert summary["n_pos"] > 0 and summary["excluded"]["prior_outcome"] > 0


def test_it_matches_the_task_yaml_without_censoring_and_differs_only_by_the_censored(synth, tmp_path):
    base = config.read_yaml(CONFIGS / "tasks" / "adrd_5y.yaml")
    uncensored = tmp_path / "adrd_5y_uncensored.yaml"
    uncensored.write_text(yaml.safe_dump(base | {"censor_codes": [], "data_end": None, "drop_censored": False,
                                                 "require_followup": False}))
    from_aces = extract_labels(load_task(ACES_ADRD), synth)[0]
    assert from_aces.equals(extract_labels(load_task(uncensored), synth)[0])
    # adrd_5y.yaml drops the censored (dead or lost within 5 years without ADRD); the rest get the same labels
    dropping, summary = extract_labels(load_task(CONFIGS / "tasks" / "adrd_5y.yaml"), synth)
    assert summary["excluded"]["censored"] > 0
    assert from_aces.height == dropping.height + summary["excluded"]["censored"] + summary["excluded"]["no_followup"]
    assert dropping.equals(from_aces.join(dropping.select("subject_id"), on="subject_id"))
    extra = from_aces.join(dropping, on="subject_id", how="anti")
    assert not extra["boolean_value"].any()


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "task.aces.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def aces_cfg(**changes) -> dict:
    """An ACES config of the hand-made fixture's task (trigger VISIT, outcome ICD10//F00 or G30, 5 years)."""
    cfg = {"predicates": {"visit": {"code": "VISIT"}, "dementia": {"code": {"regex": "^ICD10//(F00|G30)"}},
                          "death": {"code": "MEDS_DEATH"}},
           "trigger": "visit",
           "windows": {"input": {"start": None, "end": "trigger", "start_inclusive": True, "end_inclusive": True,
                                 "index_timestamp": "end", "has": {"dementia": "(None, 0)"}},
                       "target": {"start": "input.end", "end": "start + 1826.25 days", "start_inclusive": False,
                                  "end_inclusive": True, "label": "dementia"}}}
    for key, value in changes.items():
        *path, last = key.split("__")
        node = cfg
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def test_window_edges_and_no_follow_up_rule(tmp_path):
    rows = [*subject(1, (PT, "ICD10//F00"), (END, "X")),      # at the trigger: prior, dropped
            *subject(2, (PT + US, "ICD10//G30")),             # just after: case
            *subject(3, (PT + H, "ICD10//F001")),             # exactly at +5 years: case (prefix match)
            *subject(4, (PT + H + US, "ICD10//F00")),         # just after the window: control
            *subject(5, (PT + dt.timedelta(days=700), "MEDS_DEATH")),  # dies without ADRD: control
            *subject(6),                                      # nothing after the trigger: control
            *subject(7, (END, "X"), trigger=None)]            # no trigger: no row
    labels, summary = extract_labels(load_task(write(tmp_path, aces_cfg())), make(tmp_path, rows))
    assert dict(zip(labels["subject_id"], labels["boolean_value"])) == {2: True, 3: True, 4: False, 5: False,
                                                                          6: False}
    assert summary["excluded"]["prior_outcome"] == 1 and summary["excluded"]["no_prediction_time"] == 1


def test_exact_codes_match_exactly_and_without_the_prior_window_prior_cases_stay(tmp_path):
    cfg = aces_cfg(predicates__dementia={"code": {"any": ["ICD10//F00", "ICD10//G30"]}})
    del cfg["windows"]["input"]["has"]
    rows = [*subject(1, (PT, "ICD10//F00"), (PT + US, "ICD10//G30")), *subject(2, (PT + US, "ICD10//F001"))]
    task = load_task(write(tmp_path, cfg))
    assert task.outcome_codes == ("ICD10//F00", "ICD10//G30") and not task.exclude_prior_outcome
    labels, _ = extract_labels(task, make(tmp_path, rows))
    assert labels["boolean_value"].to_list() == [True, False]


def test_a_trigger_at_several_times_fails_as_aces_would_label_each(tmp_path):
    rows = [*subject(1, (PT + dt.timedelta(days=30), "VISIT")), *subject(2, (PT + US, "ICD10//G30"))]
    with pytest.raises(InputError, match=r"'VISIT' occurs at 2 different times for subject 1 .*repeated_trigger"):
        extract_labels(load_task(write(tmp_path, aces_cfg())), make(tmp_path, rows))


def test_durations_read_as_pytimeparse_reads_them():
    parse = pytimeparse.parse
    for text in ["1826.25 days", "30d", "1 day 12h", "2 weeks, 3 days", "90 mins", "1.5h", "36 hours 10 s"]:
        assert aces.duration_us(text, "w") == round(parse(text) * 1_000_000), text
    for text in ["5 years", "5y", "6 months", "soon"]:
        assert parse(text) is None
        with pytest.raises(InputError, match="ACES"):
            aces.duration_us(text, "w")


@pytest.mark.parametrize("pattern", ["^ICD10//(F0[0-3]|G30)", "^(ICD10//F0[0-3]|ICD9CM//331\\.0).*", "^A[BC](D|E)"])
def test_prefixes_match_what_the_regex_matches(pattern):
    prefixes = aces.regex_prefixes(pattern, "p")
    codes = [p + tail for p in prefixes for tail in ("", "1", ".9")] + ["ICD10//F04", "ICD10//G3", "XICD10//F00", "AB"]
    for code in codes:
        assert bool(re.search(pattern, code)) == any(code.startswith(p) for p in prefixes), code


REFUSED = [
    ({"predicates__dementia": {"expr": "and(visit, death)"}}, "and\\(...\\) holds where all predicates"),
    ({"predicates__visit": {"code": "VISIT", "value_min": 1}}, "predicates.visit: value_min is not supported"),
    ({"predicates__dementia": {"code": {"regex": "G30"}}}, "is not anchored with"),
    ({"predicates__dementia": {"code": {"regex": "^ICD10//G3\\d"}}}, "uses '\\\\\\\\'"),
    ({"trigger": "dementia"}, "trigger 'dementia' must be a predicate of exactly one code"),
    ({"windows__target__end": "start + 5 years"}, "windows.target.end: cannot read the duration '5 years'"),
    ({"windows__target__end": "start -> death"}, "next or previous event of a predicate"),
    ({"windows__target__has": {"death": "(None, 0)"}}, "windows.target.has.death: .*cases included"),
    ({"windows__target__start_inclusive": True}, "counts an outcome exactly at the trigger as a case"),
    ({"windows__target__end_inclusive": False}, "must end a fixed time after its start, inclusive"),
    ({"windows__target__start": "input.end + 1 day"}, "must start at the trigger"),
    ({"windows__input__end_inclusive": False}, "windows.input.has.dementia: end_inclusive: false"),
    ({"windows__input__start": "end - 365 days"}, "a limited lookback cannot be expressed"),
    ({"windows__input__has": {"_ANY_EVENT": "(1, None)"}}, "windows.input.has._ANY_EVENT: only has"),
    ({"windows__input__has": {"death": "(None, 0)"}}, "windows.input.has.death: only has"),
    ({"windows__input__index_timestamp": "start"}, "the prediction time must be the trigger time"),
    ({"windows__target__index_timestamp": "end"}, "exactly one window must set index_timestamp"),
    ({"windows__input__label": "dementia"}, "exactly one window must set label"),
    ({"windows__target__start": "gap.end"}, "windows.target: its boundaries never lead back to the trigger"),
    ({"windows__target__gap": 3}, "windows.target: unknown key 'gap'"),
]


@pytest.mark.parametrize("changes, message", REFUSED)
def test_unsupported_constructs_fail_naming_them(tmp_path, changes, message):
    with pytest.raises(InputError, match=message):
        load_task(write(tmp_path, aces_cfg(**changes)))


def test_static_predicates_are_refused(tmp_path):
    cfg = aces_cfg() | {"patient_demographics": {"male": {"code": "SEX//M"}}}
    with pytest.raises(InputError, match="ACES key 'patient_demographics' is not supported"):
        load_task(write(tmp_path, cfg))


def test_cli_extracts_an_aces_task(synth, tmp_path, capsys):
    out = tmp_path / "labels.parquet"
    assert main(["cohort", "extract", "--meds", str(synth), "--task", str(ACES_ADRD), "--out", str(out)]) == 0
    assert '"task": "adrd_5y.aces"' in capsys.readouterr().out
    assert pl.read_parquet(out).select("subject_id", "boolean_value").equals(
        aces_reading(ACES_ADRD, synth).select("subject_id", "boolean_value"))


def test_a_grid_plans_and_validates_with_an_aces_task(capsys):
    smoke = CONFIGS / "smoke.yaml"
    default = plan(config.load(ExperimentConfig, smoke), CONFIGS)
    with_aces = plan(config.load(ExperimentConfig, smoke, ["data.task=tasks/adrd_5y.aces.yaml"]), CONFIGS)
    task = next(j for j in with_aces.jobs if j.function == "labels").kwargs["task"]
    assert task["require_followup"] is False and task["repeated_trigger"] == "error" and task["censor_codes"] == []
    assert {j.id for j in with_aces.runs}.isdisjoint({j.id for j in default.runs})
    assert main(["validate", str(smoke), "data.task=tasks/adrd_5y.aces.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok"
