"""The knowledge teacher's length knob: citing fewer factors gives shorter rationales, still grounded."""

from __future__ import annotations

import pytest

from rationale_sft.cohort.meds_io import read_labels
from rationale_sft.config import ConfigError, build
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.rationales.check import Lexicon, SubjectView, check_text
from rationale_sft.rationales.facts import facts_for_labels
from rationale_sft.rationales.knowledge import find_evidence, load_knowledge, write_rationale
from rationale_sft.render import read_codes
from test_render_fixtures import write_labels, write_meds


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    root = tmp_path_factory.mktemp("kl")
    meds, labels = write_meds(root / "meds"), read_labels(write_labels(root / "labels.parquet"))
    return meds, facts_for_labels(meds, labels, include_later=True)


@pytest.mark.parametrize("style", ["freeform", "stepwise"])
def test_max_factors_cites_only_the_strongest(facts, style):
    meds, by_id = facts
    kb = load_knowledge()
    lex = Lexicon.build(read_codes(meds), kb)
    sid = max(by_id, key=lambda s: len(find_evidence(by_id[s], kb)))
    evidence = find_evidence(by_id[sid], kb)
    assert len(evidence) >= 2
    full = write_rationale(by_id[sid], style, "blind", None, 0, kb)
    short = write_rationale(by_id[sid], style, "blind", None, 0, kb, max_factors=1)
    assert len(short.text.split()) < len(full.text.split())
    assert short.conclusion == full.conclusion and short.teacher_risk == full.teacher_risk  # same weighing
    dropped = [e.diagnosis.name for e in evidence[1:] if e.diagnosis is not None]
    assert dropped, "the fixture subject needs a second diagnosed factor"
    assert all(name in full.text for name in dropped[:1]) and not any(name in short.text for name in dropped)
    claims, _ = check_text(short.text, SubjectView(by_id[sid], kb), lex)
    assert claims and all(c.status == "grounded" for c in claims)


def test_max_factors_is_validated_and_part_of_the_cache_key():
    from rationale_sft.rationales.generate import backend_params

    with pytest.raises(ConfigError, match="max_factors must be >= 1 or null, got 0"):
        build(TeacherConfig, {"max_factors": 0})
    assert backend_params(build(TeacherConfig, {"max_factors": 2})) != backend_params(build(TeacherConfig, {}))
    assert "max_factors" not in backend_params(build(TeacherConfig, {}))
