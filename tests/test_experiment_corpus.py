"""The pretraining corpus: base texts (prompt + blind rationale), reasoning texts, and short texts of the same
people with only sex and age recorded, whose rationale states that sex and age."""

import re

import polars as pl
import pytest

from rationale_sft.config import read_yaml
from rationale_sft.experiment.corpus import build_corpus
from rationale_sft.render.markers import PROMPT_END


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    task = read_yaml("configs/tasks/adrd_5y.yaml")
    counts = build_corpus(out, {"n_subjects": 120, "seed": 3}, task, {"template": "recap"}, 0,
                          {"styles": ["freeform", "stepwise"], "max_factors": 2})
    return counts, pl.read_parquet(out / "corpus.parquet")


def test_every_subject_has_a_base_and_a_short_text_per_style(corpus):
    counts, table = corpus
    n = dict(table.group_by("kind").len().iter_rows())
    assert n == {"base": 2 * counts["n_subjects"] + 1, "reasoning": counts["n_subjects"],
                 "short": 2 * counts["n_subjects"]}


def test_short_texts_hold_only_sex_and_age_and_their_rationale_states_them(corpus):
    _, table = corpus
    for text in table.filter(pl.col("kind") == "short")["text"]:
        prompt, rationale = text.split(PROMPT_END, 1)
        lines = prompt.split("\n")
        sex, age = lines[1].removeprefix("Sex: "), lines[2].removeprefix("Age at assessment: ").removesuffix(" years")
        assert "Measurements" not in prompt and lines[4] == "- none recorded"
        assert lines[5] == f"About: {sex}, {age} years old at the assessment."
        assert re.search(rf"\b{age}\b", rationale.split(".")[0] + rationale.split(";")[0])
        said = set(re.findall(r"\b(woman|man|she|he)\b", rationale))
        assert said and said <= ({"woman", "she"} if sex == "female" else {"man", "he"})
        assert "established" in rationale  # "no established (dementia) risk factor": nothing to cite beyond age
