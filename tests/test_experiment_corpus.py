"""The pretraining corpus: base texts (prompt + blind rationale), reasoning texts, short texts of the same
people (only sex and age recorded; measurements but no diagnosis), whose rationales state their sex and age, and
copy drills (a drawn sex, age and measurement lines, restated) and redrawn texts (measured short texts with values
permuted across people)."""

import re

import polars as pl
import pytest

from rationale_sft.config import read_yaml
from rationale_sft.experiment.corpus import FACTOR_QUESTION, build_corpus
from rationale_sft.answer import PROMPT_END


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
    drills = n.pop("drill")  # two per subject with two measured values or more
    assert drills % 2 == 0 and counts["n_subjects"] <= drills <= 2 * counts["n_subjects"]
    assert n.pop("redrawn") == 2 * 2 * counts["n_subjects"]  # two cohort copies, two styles
    assert n == {"base": 2 * counts["n_subjects"] + 1, "reasoning": counts["n_subjects"],
                 "short": 4 * counts["n_subjects"]}


def _items(line: str) -> list[str]:
    """The items of a factors line after its heading: none for 'none.'."""
    line = line.removesuffix(".")
    return [] if line == "none" else line.split("; ")


def _prompt_sex_age(text):
    prompt, rationale = text.split(PROMPT_END, 1)
    lines = prompt.split("\n")
    sex, age = lines[1].removeprefix("Sex: "), lines[2].removeprefix("Age at assessment: ").removesuffix(" years")
    assert lines[-2] == f"About: {sex}, {age} years old at the assessment."
    assert re.search(rf"\b{age}\b", rationale.split(".")[0] + rationale.split(";")[0])
    said = set(re.findall(r"\b(female|male|woman|man|she|he)\b", rationale))
    assert said and said <= ({"female", "she"} if sex == "female" else {"male", "he"})  # the record's own word
    return lines, rationale


def test_short_texts_hold_sex_and_age_then_the_measurements_and_their_rationales_state_them(corpus):
    _, table = corpus
    base = table.filter(pl.col("kind") == "base")["text"].to_list()
    short = table.filter(pl.col("kind") == "short")["text"].to_list()
    bare, measured = short[: len(base) - 1], short[len(base) - 1:]  # the same people and styles, in base order
    assert len(measured) == len(bare) == len(base) - 1
    for text in bare:
        lines, rationale = _prompt_sex_age(text)
        assert "Measurements" not in text.split(PROMPT_END)[0] and lines[4] == "- none recorded"
        assert "established" in rationale  # "no established (dementia) risk factor": nothing to cite beyond age
    with_values = 0
    for text, full in zip(measured, base):
        lines, rationale = _prompt_sex_age(text)
        values = [ln for ln in full.split(PROMPT_END)[0].split("\n") if ln.startswith("- ") and ": " in ln
                  and not ln[2:6].isdigit()]
        assert [ln for ln in lines if ln.startswith("- ") and ln != "- none recorded"] == values
        assert "- none recorded" in lines
        with_values += any(ln.split(": ", 1)[0][2:] in rationale for ln in values)
    assert with_values > len(measured) / 2  # most of these rationales cite a measurement line of their prompt


def test_base_and_short_texts_end_as_a_rationale_target_ends_with_the_conclusions_own_answer(corpus):
    _, table = corpus
    kb_text = table.filter(pl.col("kind") == "base")["text"][-1]
    written = table.filter(pl.col("kind").is_in(["base", "short"]) & (pl.col("text") != kb_text))["text"].to_list()
    ends = re.compile(rf"Conclusion: (likely|unlikely){re.escape(PROMPT_END)} (Yes|No)\Z")
    answers = []
    for text in written:
        found = ends.search(text)
        assert found, text[-120:]
        assert (found.group(1) == "likely") == (found.group(2) == "Yes")
        assert text.count(PROMPT_END) == 2  # the prompt's answer slot, and the answer after the rationale
        answers.append(found.group(2))
    assert set(answers) == {"Yes", "No"}
    for text in table.filter(pl.col("kind") == "reasoning")["text"].to_list():
        assert PROMPT_END not in text and text.endswith(("Conclusion: likely", "Conclusion: unlikely"))


def test_copy_drills_restate_the_listed_sex_age_and_measurements_with_their_values_in_another_order(corpus):
    _, table = corpus
    drills = table.filter(pl.col("kind") == "drill")["text"].to_list()
    assert len(drills) > 100
    listed_orders, values, sexes, ages = [], {}, [], set()
    for text in drills:
        head, answer = text.split("\nQuestion: Restate the sex, the age and every measurement.\nAnswer: ")
        sex_line, age_line, title, *lines = head.split("\n")
        sex, age = sex_line.removeprefix("Sex: "), age_line.removeprefix("Age at assessment: ").removesuffix(" years")
        assert title == "Measurements at the assessment visit:" and len(lines) >= 2
        who, *restated = answer.removesuffix(".").split("; ")
        assert who == f"{age}-year-old {sex}"  # the drawn sex in the record's word, the drawn age
        listed = [line.removeprefix("- ") for line in lines]
        assert sorted(restated) == sorted(listed)  # every line restated, with its value, nothing else
        listed_orders.append(listed == restated)
        sexes.append(sex)
        ages.add(int(age))
        for line in listed:
            name, value = line.rsplit(": ", 1)
            values.setdefault(name, set()).add(value)
    assert sum(listed_orders) < len(drills) / 2  # restated in a shuffled order
    ldl = [name for name in values if name.startswith("LDL")]
    assert ldl and len(values[ldl[0]]) > 20  # values are drawn across people, not a stock one
    assert 0.35 < sexes.count("female") / len(sexes) < 0.65 and set(sexes) == {"female", "male"}  # drawn at random
    assert len(ages) > 10


def test_redrawn_texts_are_the_measured_short_texts_with_other_peoples_values_stated_by_prompt_and_rationale(corpus):
    _, table = corpus
    measured = [t for t in table.filter(pl.col("kind") == "short")["text"] if "Measurements at" in t]
    redrawn = table.filter(pl.col("kind") == "redrawn")["text"].to_list()
    assert len(redrawn) == 2 * len(measured)
    value = re.compile(r"(LDL cholesterol: [\d.]+ mmol/L)")

    def ldl(text):
        prompt, rationale = text.split(PROMPT_END, 1)
        stated = value.findall(prompt)
        return stated[-1] if stated else None, value.findall(rationale)

    pairs = [(ldl(a), ldl(b)) for a, b in zip(measured, redrawn) if ldl(a)[0] and ldl(b)[0]]
    assert len(pairs) > 20 and sum(a[0] != b[0] for a, b in pairs) > len(pairs) / 2  # other people's values
    cited = [b for _, b in pairs if b[1]]
    assert cited and all(set(rationale) == {prompt} for prompt, rationale in cited)  # the rationale quotes its own


@pytest.fixture(scope="module")
def factor_drills(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus_factors")
    build_corpus(out, {"n_subjects": 120, "seed": 3}, read_yaml("configs/tasks/adrd_5y.yaml"),
                 {"template": "recap_factors"}, 0, {"styles": ["freeform"], "max_factors": 2})
    table = pl.read_parquet(out / "corpus.parquet")
    drills = table.filter(pl.col("kind") == "drill")["text"].to_list()
    return {"factor": [t for t in drills if FACTOR_QUESTION in t and t.startswith("About: ")],
            "date": [t for t in drills if FACTOR_QUESTION in t and t.startswith("Sex: ")],
            "base": table.filter(pl.col("kind") == "base")["text"].to_list()}


def test_factor_drills_restate_age_and_sex_then_name_each_listed_factor_in_order_and_the_absent_common_ones(factor_drills):
    apoe = {"0": "no APOE e4 allele", "1": "one APOE e4 allele", "2": "two APOE e4 alleles"}
    seen_apoe, lacking = set(), 0
    for text in factor_drills["factor"]:
        head, answer = text.split(f"\nQuestion: {FACTOR_QUESTION}\nAnswer: ")
        about, risk, protective = head.split("\n")
        sex, age = re.fullmatch(r"About: (female|male), (\d+) years old at the assessment\.", about).groups()
        raising = _items(risk.removeprefix("Risk factors in the record (strongest first): "))
        lowering = _items(protective.removeprefix("Protective factors in the record: "))
        who, _, answer = answer.partition("; ")
        assert who == f"{age}-year-old {sex}"  # the age and sex first, copied as a copy drill copies them
        named, _, lacks = answer.partition(". The record does not mention ")
        items = re.findall(r"(?:^|; )([a-zA-Z0-9 ]+?) \((.+?)\) (raises|lowers) risk", named.removesuffix("."))
        assert [cite for _, cite, _ in items] == raising + lowering  # every item of the lines, in their order
        assert [d for _, _, d in items] == ["raises"] * len(raising) + ["lowers"] * len(lowering)
        for label, cite, direction in items:
            if cite.startswith("Number of APOE e4 alleles"):
                assert label == apoe[cite.rsplit(": ", 1)[1]]
                assert direction == ("lowers" if label.startswith("no ") else "raises")
                seen_apoe.add(label)
            if cite.startswith("LDL cholesterol"):
                assert float(cite.split(": ")[1].split()[0]) >= 3.0 and label == "high LDL cholesterol"
        absent = re.split(r", | or ", lacks.removesuffix("."))
        assert not set(absent) & {label for label, _, _ in items}  # never denies a listed factor
        lacking += bool(lacks)
    assert len(factor_drills["factor"]) > 100 and len(seen_apoe) >= 2 and 0 < lacking


def test_date_drills_list_redated_diagnoses_and_cite_each_factor_one_with_the_date_its_line_gives(factor_drills):
    real = {m for text in factor_drills["base"] for m in re.findall(r"- (\d{4}-\d\d) \(.+?\): (.+)", text)}
    drawn, years = set(), set()
    for text in factor_drills["date"]:
        head, answer = text.split(f"\nQuestion: {FACTOR_QUESTION}\nAnswer: ")
        lines = head.split("\n")
        sex, age = lines[0].removeprefix("Sex: "), lines[1].removeprefix("Age at assessment: ").removesuffix(" years")
        assert lines[2] == "Diagnoses before the assessment (first occurrence, oldest first):"
        history = [re.fullmatch(r"- (\d{4}-\d\d) \((.+?)\): (.+)", line).groups() for line in lines[3:-3]]
        assert [d for d, _, _ in history] == sorted(d for d, _, _ in history)  # oldest first, as a prompt lists
        assert lines[-3] == f"About: {sex}, {age} years old at the assessment."
        factors = "\n".join(lines[-2:])  # the risk and protective factors lines
        assert answer.startswith(f"{age}-year-old {sex}; ")
        cited = [f"{name} ({date[:4]})" for date, _, name in history if f"{name} ({date[:4]})" in factors]
        assert cited  # a factor diagnosis, stated in the factors line with the year its history line gives
        assert all(f"({c}) raises risk" in answer or f"({c}) lowers risk" in answer for c in cited)
        assert len(re.findall(r"\((?:19|20)\d\d\)", factors)) == len(cited)  # no other year in the lines
        drawn |= {(d, n) for d, _, n in history}
        years |= {d[:4] for d, _, _ in history}
    assert len(factor_drills["date"]) > 50 and len(years) >= 15
    assert len(drawn & real) < 0.2 * len(drawn)  # dates drawn anew: mostly not the person's own
