"""Knowledge teacher: facts, knowledge base checks, determinism, grounding, modes, format."""

from __future__ import annotations

import polars as pl
import pytest

from rationale_sft.cohort.meds_io import read_labels
from rationale_sft.config.render import RenderConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.check import Lexicon, SubjectView, check_text
from rationale_sft.rationales.facts import facts_for_labels, subject_facts
from rationale_sft.rationales.knowledge import (KNOWLEDGE_BASE, find_evidence, load_knowledge, record_cite,
                                                write_rationale)
from rationale_sft.rationales.specs import parse_reply
from rationale_sft.render import ANSWER_MARKER, read_codes, render_examples
from test_render_fixtures import PT, write_labels, write_meds

COMBOS = [(s, m) for s in ("freeform", "stepwise") for m in ("conditioned", "blind")]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("kw")
    meds, labels = write_meds(root / "meds"), read_labels(write_labels(root / "labels.parquet"))
    return meds, labels, facts_for_labels(meds, labels, include_later=True)


def _label(labels, sid):
    return bool(labels.filter(pl.col("subject_id") == sid)["boolean_value"][0])


def _write(facts, labels, sid, style, mode, seed=0):
    return write_rationale(facts[sid], style, mode, _label(labels, sid) if mode == "conditioned" else None, seed)


def test_facts_match_the_prompt(cohort):
    meds, labels, facts = cohort
    prompts = dict(zip(*render_examples(meds, labels, RenderConfig())[["subject_id", "prompt"]].to_dict().values()))
    f = facts[1]
    assert [d.short for d in f.diagnoses] == ["I10", "E11", "R41"]
    assert sorted(d.short for d in f.later_diagnoses) == ["F03", "F32", "G47"]
    assert f.sex == "F" and int(f.age) == 67
    for d in f.diagnoses:
        assert f"- {d.date} ({d.ago}): {d.name}" in prompts[1]
    events = pl.read_parquet(meds / "data" / "0.parquet").filter(pl.col("subject_id") == 1)
    single = subject_facts(events, read_codes(meds), PT)
    assert single.diagnoses == f.diagnoses and single.later_diagnoses == ()
    assert {m.short: m.value for m in single.measurements}["LDL"] == pytest.approx(4.6, abs=1e-6)


@pytest.mark.parametrize("style,mode", COMBOS)
def test_writer_is_deterministic_and_seeded(cohort, style, mode):
    _, labels, facts = cohort
    texts = {seed: [_write(facts, labels, sid, style, mode, seed).text for sid in facts] for seed in (0, 0, 1, 2)}
    assert texts[0] == [_write(facts, labels, sid, style, mode, 0).text for sid in facts]
    assert texts[1] != texts[0] or texts[2] != texts[0]  # other seeds word at least one rationale differently


@pytest.mark.parametrize("style,mode", COMBOS)
def test_writer_output_is_fully_grounded(cohort, style, mode):
    meds, labels, facts = cohort
    kb = load_knowledge()
    lex = Lexicon.build(read_codes(meds), kb)
    for sid in facts:
        r = _write(facts, labels, sid, style, mode)
        claims, dirs = check_text(r.text, SubjectView(facts[sid], kb), lex)
        assert claims and all(c.status == "grounded" for c in claims), (sid, [c for c in claims if c.status != "grounded"])
        assert dirs["wrong"] == 0
        assert ANSWER_MARKER not in r.text
        assert parse_reply(r.text, style, mode).conclusion == r.conclusion


@pytest.mark.parametrize("style", ["freeform", "stepwise"])
def test_the_sex_is_stated_with_the_records_word(cohort, style):
    import dataclasses
    import re

    meds, labels, facts = cohort
    prompts = dict(zip(*render_examples(meds, labels, RenderConfig())[["subject_id", "prompt"]].to_dict().values()))
    said = {}
    for sid, f in facts.items():
        record = re.search(r"^Sex: (\w+)$", prompts[sid], re.M).group(1)  # "female" / "male"
        for seed in range(8):
            words = set(re.findall(r"\b(female|male|woman|man|she|he|patient)\b", _write(facts, labels, sid, style,
                                                                                           "blind", seed).text))
            assert words - {"patient"} == {record}, (sid, words)  # every opening states it, never as a pronoun
            said.setdefault(record, set()).update(words)
    assert said["female"] >= {"female"} and said["male"] >= {"male"}  # both sexes occur, each in its own word
    unknown = dataclasses.replace(facts[1], sex=None)
    texts = [write_rationale(unknown, style, "blind", None, seed).text for seed in range(8)]
    assert not any(re.search(r"\b(female|male|woman|man|she|he)\b", t) for t in texts)
    assert all("patient" in re.split(r"[;\n]|(?<=[a-z])\. ", t)[0] for t in texts)  # a sexless patient opens it


def test_writer_cites_evidence_with_timing_and_values(cohort):
    _, labels, facts = cohort
    text = " ".join(_write(facts, labels, 1, "freeform", "blind", seed).text for seed in range(6))
    assert "6 months before assessment" in text and "2008-12" in text
    assert "LDL cholesterol" in text and "4.6 mmol/L" in text
    assert "Sleep disorders" not in text and "Depressive episode" not in text  # only after the assessment


@pytest.mark.parametrize("style", ["freeform", "stepwise"])
def test_record_citations_quote_the_prompt_lines(cohort, style):
    meds, labels, facts = cohort
    prompts = dict(zip(*render_examples(meds, labels, RenderConfig())[["subject_id", "prompt"]].to_dict().values()))
    recaps = render_examples(meds, labels, RenderConfig(template="recap_factors"))
    recaps = dict(zip(recaps["subject_id"].to_list(), recaps["prompt"].to_list()))
    kb = load_knowledge()
    lex = Lexicon.build(read_codes(meds), kb)
    quoted = diagnoses = 0
    for sid in facts:
        text = write_rationale(facts[sid], style, "blind", None, 0, kb, cite="record").text
        for e in find_evidence(facts[sid], kb)[:5 if style == "freeform" else 6]:
            if e.diagnosis is None and e.measurement.value is not None:
                line = next(x[2:] for x in prompts[sid].splitlines() if x.startswith(f"- {e.measurement.name}: "))
                assert line in text, (sid, line, text)  # the prompt's own line, word for word
                quoted += 1
            elif e.diagnosis is not None:  # as the recap's factors line states it: name (date, timing)
                assert record_cite(e) in text and record_cite(e) in recaps[sid], (sid, record_cite(e), text)
                diagnoses += 1
        claims, _ = check_text(text, SubjectView(facts[sid], kb), lex)
        assert claims and all(c.status == "grounded" for c in claims)
    assert quoted >= 2 and diagnoses >= 1
    with pytest.raises(InputError, match="cite must be one of varied, record, got 'verbatim'"):
        write_rationale(facts[1], style, "blind", None, 0, kb, cite="verbatim")


def test_modes_conclusions_and_risk(cohort):
    _, labels, facts = cohort
    kb = load_knowledge()
    for sid, f in facts.items():
        blind = write_rationale(f, "stepwise", "blind", None, 0)
        assert blind.teacher_risk is not None and blind.text.splitlines()[-1].startswith("4. Conclusion: ")
        risk = kb.risk(f.age, find_evidence(f, kb))
        assert blind.teacher_risk == pytest.approx(risk, abs=5e-4)
        assert blind.conclusion == ("Yes" if risk >= kb.threshold else "No")
        for label in (True, False):
            given = write_rationale(f, "freeform", "conditioned", label, 0)
            assert given.conclusion == ("Yes" if label else "No") and given.teacher_risk is None
    assert write_rationale(facts[3], "freeform", "blind").conclusion == "Yes"  # two APOE e4 alleles and more
    assert write_rationale(facts[2], "freeform", "blind").conclusion == "No"


def test_flipped_mode_explains_the_opposite_label(cohort):
    from rationale_sft.rationales.cache import cache_key
    from rationale_sft.rationales.generate import Item, parse_item_reply

    _, labels, facts = cohort
    for sid, f in facts.items():
        truth = _label(labels, sid)
        item = Item("k", sid, None, "train", truth, "p", "h", "stepwise", "flipped")
        assert item.teacher_label is (not truth)
        flipped = write_rationale(f, "stepwise", "flipped", item.teacher_label, 0)
        assert flipped.conclusion == ("No" if truth else "Yes") and flipped.teacher_risk is None
        assert flipped.text.splitlines()[-1] == f"4. Conclusion: {'unlikely' if truth else 'likely'}"
        # worded like the conditioned rationale written for that (opposite) label
        assert flipped.text == write_rationale(f, "stepwise", "conditioned", not truth, 0).text
        assert flipped.text != write_rationale(f, "stepwise", "conditioned", truth, 0).text
        assert parse_item_reply(item, flipped.text).conclusion == flipped.conclusion
        conditioned = write_rationale(f, "stepwise", "conditioned", truth, 0)
        with pytest.raises(InputError, match="flipped teacher concluded"):
            parse_item_reply(item, conditioned.text)
    keys = {m: cache_key("knowledge", "k", {}, "1", 1, "h", "freeform", m, True) for m in ("conditioned", "flipped")}
    assert keys["conditioned"] != keys["flipped"]
    assert keys["flipped"] != cache_key("knowledge", "k", {}, "1", 1, "h", "freeform", "flipped", False)
    with pytest.raises(InputError, match="flipped mode needs the label"):
        write_rationale(facts[1], "freeform", "flipped", None)


def test_bad_modes_and_styles(cohort):
    _, _, facts = cohort
    with pytest.raises(InputError, match="conditioned mode needs the label"):
        write_rationale(facts[1], "freeform", "conditioned", None)
    with pytest.raises(InputError, match="blind mode must not see the label"):
        write_rationale(facts[1], "freeform", "blind", True)
    with pytest.raises(InputError, match="unknown rationale style 'essay'"):
        write_rationale(facts[1], "essay", "blind")
    with pytest.raises(InputError, match="unknown rationale mode 'oracle'"):
        write_rationale(facts[1], "freeform", "oracle")


def test_knowledge_base_is_checked(tmp_path):
    good = load_knowledge()
    assert {f.source for f in good.factors} <= set(good.sources)
    assert all((f.relative_risk > 1) == (f.direction == "raises") for f in good.factors)
    assert "lancet2024" in good.sources and "Livingston" in good.sources["lancet2024"]
    text = KNOWLEDGE_BASE.read_text()
    bad = tmp_path / "kb.yaml"
    bad.write_text(text.replace("direction: lowers\n    relative_risk: 0.8", "direction: lowers\n    relative_risk: 1.8", 1))
    with pytest.raises(InputError, match="factor 'more_education': relative_risk must be > 1 for 'raises'"):
        load_knowledge(bad)
    bad.write_text(text.replace("source: farrer1997", "source: nobody2020", 1))
    with pytest.raises(InputError, match="source 'nobody2020' is not listed"):
        load_knowledge(bad)


@pytest.mark.parametrize("style", ["freeform", "stepwise"])
def test_weighing_names_no_risk_factor_beyond_those_discussed(cohort, style):
    _, labels, facts = cohort
    kb = load_knowledge()
    beyond = 0
    for sid in facts:
        raising = [e for e in find_evidence(facts[sid], kb) if e.factor.direction == "raises"]
        for seed in range(4):
            text = write_rationale(facts[sid], style, "conditioned", _label(labels, sid), seed, kb, max_factors=1,
                                   cite="record").text
            for e in raising[1:]:  # not discussed: not restated as a driver or in the verdict either
                assert e.factor.label not in text, (sid, e.factor.label, text)
                beyond += 1
    assert beyond  # some subject has a risk factor beyond the one discussed
