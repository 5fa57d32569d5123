"""End to end on a synthetic cohort: synth -> extract -> render -> `rationales generate --backend knowledge`."""

from __future__ import annotations

import polars as pl
import pytest

from rationale_sft.cli import main as cli
from rationale_sft.rundir import read_json


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    assert cli(["cohort", "synth", "--out", str(root / "meds"), "--n-subjects", "120", "calibration_n=2000"]) == 0
    assert cli(["cohort", "extract", "--meds", str(root / "meds"), "--task", "configs/tasks/adrd_5y.yaml",
                "--out", str(root / "labels.parquet")]) == 0
    assert cli(["render", "--meds", str(root / "meds"), "--labels", str(root / "labels.parquet"),
                "--out", str(root / "render")]) == 0
    return root


def _generate(rendered, out, *extra):
    return cli(["rationales", "generate", "--examples", str(rendered / "render" / "examples.parquet"),
                "--meds", str(rendered / "meds"), "--out", str(out), *extra])


@pytest.mark.slow
def test_knowledge_rationales_end_to_end(rendered, tmp_path, capsys):
    examples = pl.read_parquet(rendered / "render" / "examples.parquet")
    train = examples.filter(pl.col("split") == "train")
    assert _generate(rendered, tmp_path / "cond") == 0
    assert {p.name for p in (tmp_path / "cond").iterdir()} == {
        "rationales.parquet", "failures.json", "cache", "config.yaml", "manifest.json", "DONE"}
    out = pl.read_parquet(tmp_path / "cond" / "rationales.parquet")
    assert out.height == 2 * train.height and set(out["style"]) == {"freeform", "stepwise"}
    joined = out.join(train.select("subject_id", "label"), on="subject_id")
    assert ((joined["conclusion"] == "Yes") == joined["label"]).all()
    assert out["model"].unique().to_list() == ["knowledge"] and out["teacher_risk"].is_null().all()
    assert read_json(tmp_path / "cond" / "failures.json") == []

    assert _generate(rendered, tmp_path / "cond", "--force") == 0  # everything from the cache
    assert "every item is in the cache" in capsys.readouterr().err
    assert pl.read_parquet(tmp_path / "cond" / "rationales.parquet").equals(out)

    assert _generate(rendered, tmp_path / "blind", "--mode", "blind", "--styles", "stepwise",
                     "splits=[train,tuning]") == 0
    blind = pl.read_parquet(tmp_path / "blind" / "rationales.parquet")
    assert set(blind["split"]) == {"train", "tuning"} and blind["teacher_risk"].is_not_null().all()
    assert blind["text"].str.contains("4. Conclusion: (likely|unlikely)$").all()

    assert _generate(rendered, tmp_path / "flipped", "--mode", "flipped", "--styles", "freeform") == 0
    flipped = pl.read_parquet(tmp_path / "flipped" / "rationales.parquet").join(
        train.select("subject_id", "label"), on="subject_id")
    assert flipped.height == train.height and set(flipped["mode"]) == {"flipped"}
    assert ((flipped["conclusion"] == "Yes") != flipped["label"]).all()


def test_knowledge_backend_needs_the_meds_dataset(rendered, tmp_path, capsys):
    code = cli(["rationales", "generate", "--examples", str(rendered / "render" / "examples.parquet"),
                "--out", str(tmp_path / "x")])
    assert code == 2 and "pass --meds DIR" in capsys.readouterr().err
    assert _generate(rendered, tmp_path / "y", "splits=[nope]") == 2
    assert "no examples in splits ['nope']" in capsys.readouterr().err
