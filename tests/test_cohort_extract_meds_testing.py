"""Extraction on MEDS datasets written by another tool: meds-testing-helpers' static sample and generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from meds_testing_helpers.dataset import MEDSDataset
from meds_testing_helpers.static_sample_data import exported_yamls

from rationale_sft.cohort.extract import extract, extract_labels, input_events
from rationale_sft.cohort.task import load_task
from rationale_sft.errors import InputError

# the package's own date parser warns about time zones on every generated datetime; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:no explicit representation of timezones")


@pytest.fixture(scope="module")
def static_sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("static") / "meds"
    MEDSDataset.from_yaml(exported_yamls["SIMPLE_STATIC_SHARDED_BY_SPLIT"]).write(out)
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """200 random subjects from the package's own generator config (nested shard folders, static codes)."""
    import hydra
    from hydra import compose, initialize_config_dir
    from meds_testing_helpers import GEN_YAML

    with initialize_config_dir(config_dir=str(Path(str(GEN_YAML)).parent), version_base=None):
        cfg = compose(config_name="generate_dataset")
    out = tmp_path_factory.mktemp("gen") / "meds"
    hydra.utils.instantiate(cfg.dataset_spec).sample(200, np.random.default_rng(0)).write(out)
    return out


def test_static_sample_admission_to_discharge(static_sample):
    # prediction time = first cardiac admission; outcome = discharge within 3 hours
    task = load_task(None, ["trigger_code=ADMISSION//CARDIAC", "outcome_prefixes=[DISCHARGE]",
                            f"horizon_years={3 / 24 / 365.25}", "censor_codes=[]"])
    labels, summary = extract_labels(task, static_sample)
    assert labels["subject_id"].to_list() == [239684, 1195293]
    assert labels["boolean_value"].to_list() == [True, True] and labels["split"].to_list() == ["train"] * 2
    assert summary["excluded"]["no_prediction_time"] == 4
    short, _ = extract_labels(load_task(None, ["trigger_code=ADMISSION//CARDIAC", "outcome_prefixes=[DISCHARGE]",
                                               f"horizon_years={1 / 24 / 365.25}", "drop_censored=false"]),
                              static_sample)
    assert short["boolean_value"].to_list() == [False, False]  # both discharges come after 1 hour


def test_static_sample_age_trigger(static_sample):
    labels, summary = extract_labels(load_task(None, ["trigger_age_years=25", "outcome_prefixes=[ADMISSION//]",
                                                      "drop_censored=false"]), static_sample)
    ev = pl.read_parquet(static_sample / "data", hive_partitioning=False)
    birth = ev.filter(pl.col("code") == "MEDS_BIRTH").select("subject_id", pt=pl.col("time") + pl.duration(
        days=25 * 365.25))
    adm = ev.filter(pl.col("code").str.starts_with("ADMISSION//")).group_by("subject_id").agg(
        pl.col("time").min().alias("adm")).join(birth, on="subject_id")
    prior = adm.filter(pl.col("adm") <= pl.col("pt"))["subject_id"].to_list()
    pos = adm.filter((pl.col("adm") > pl.col("pt")) & (pl.col("adm") <= pl.col("pt") + pl.duration(days=5 * 365.25)))
    assert summary["excluded"]["prior_outcome"] == len(prior) > 0 and not set(prior) & set(labels["subject_id"])
    assert set(labels.filter(pl.col("boolean_value"))["subject_id"]) == set(pos["subject_id"]) != set()
    assert labels["age"].to_list() == pytest.approx([25.0] * labels.height)
    splits = pl.read_parquet(static_sample / "metadata" / "subject_splits.parquet")
    assert labels.join(splits, on="subject_id")["split_right"].to_list() == labels["split"].to_list()


def test_generated_dataset_labels_follow_the_definition(generated, tmp_path):
    task = load_task(None, ["trigger_code=dynamic//0", "outcome_prefixes=[dynamic//5]", "horizon_years=10",
                            "drop_censored=false"])
    with pytest.raises(InputError, match="repeated event"):  # the generator repeats events; the default refuses
        extract_labels(task, generated)
    task = load_task(None, ["trigger_code=dynamic//0", "outcome_prefixes=[dynamic//5]", "horizon_years=10",
                            "drop_censored=false", "on_duplicate_events=drop"])
    summary = extract(task, generated, tmp_path / "labels.parquet", scales=(10, 20))
    labels = pl.read_parquet(tmp_path / "labels.parquet")
    events = pl.read_parquet(generated / "data", hive_partitioning=False)
    pt = events.filter(pl.col("code") == "dynamic//0").group_by("subject_id").agg(pl.col("time").min().alias("pt"))
    out = events.filter(pl.col("code") == "dynamic//5").join(pt, on="subject_id")
    in_window = out.filter((pl.col("time") > pl.col("pt"))
                           & (pl.col("time") <= pl.col("pt") + pl.duration(days=3652.5)))["subject_id"].unique()
    assert set(labels.filter(pl.col("boolean_value"))["subject_id"]) == set(in_window) & set(labels["subject_id"])
    assert summary["n"] == labels.height > 20 and summary["n_pos"] > 0
    inputs = input_events(generated, labels).collect()
    assert inputs.filter(pl.col("time") >= pl.col("prediction_time")).height == 0
