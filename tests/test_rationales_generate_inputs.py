"""Generation input errors: one line naming the file and what is missing."""

from __future__ import annotations

import polars as pl
import pytest
from openai_server import write_examples

from rationale_sft.config import build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.generate import generate, plan_items, read_examples


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(InputError, match=r"examples file not found: .*nope.parquet \(write it with"):
        generate(build(TeacherConfig, {}), tmp_path / "nope.parquet", tmp_path / "out")
    path = write_examples(tmp_path / "examples.parquet", ["ok"])
    pl.read_parquet(path).drop("prompt_hash").write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad.parquet: missing column\(s\) prompt_hash; examples.parquet needs"):
        read_examples(tmp_path / "bad.parquet")


def test_plan_covers_styles_and_dedupes_keys(tmp_path):
    path = write_examples(tmp_path / "examples.parquet", ["ok", "ok", "ok"], ["train", "tuning", "train"])
    df = read_examples(path)
    cfg = build(TeacherConfig, {"styles": ["freeform", "stepwise"]})
    items = plan_items(cfg, pl.concat([df, df]))  # every example twice: planned once
    assert [(i.subject_id, i.style) for i in items] == [(1, "freeform"), (1, "stepwise"), (3, "freeform"),
                                                        (3, "stepwise")]
    blind = plan_items(build(TeacherConfig, {"mode": "blind"}), df)
    assert all(i.teacher_label is None for i in blind) and all(i.teacher_label is not None for i in items)
    assert {i.key for i in blind}.isdisjoint(i.key for i in items)
