"""Teacher prompt specs: messages per style and mode, the reply format and its errors."""

from __future__ import annotations

import pytest

from rationale_sft.errors import InputError
from rationale_sft.rationales import specs
from rationale_sft.rationales.specs import SPEC_VERSION, parse_reply, spec_hash, system_text, teacher_messages

PROMPT = "Health history recorded up to the assessment on 2009-06-15.\nSex: female\nQuestion: Will it?\nAnswer:"


@pytest.mark.parametrize("style", specs.STYLES)
@pytest.mark.parametrize("mode", specs.MODES)
def test_messages_per_style_and_mode(style, mode):
    label = True if mode in specs.LABELLED_MODES else None
    msgs = teacher_messages(PROMPT, style, mode, label)
    assert [m["role"] for m in msgs] == ["system", "user"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert user.endswith("Question: Will it?") and "Answer:" not in user
    assert ("numbered steps" in system) == (style == "stepwise")
    assert ("You are told the true outcome" in system) == (mode in specs.LABELLED_MODES)
    assert "flipped" not in system  # the flipped teacher is not told that its outcome is the opposite
    assert ("Risk: p" in system) == (mode == "blind")
    assert "Conclusion: likely" in system


def test_conditioned_text_states_the_label():
    assert "this person was diagnosed" in system_text("freeform", "conditioned", True)
    assert "this person was not diagnosed" in system_text("freeform", "conditioned", False)
    assert "'Conclusion: unlikely'" in system_text("freeform", "conditioned", False)
    assert "within 3 years" in system_text("freeform", "blind", None, outcome="diagnosed with X within 3 years")


def test_spec_hash_is_stable_and_distinct():
    hashes = {(s, m): spec_hash(s, m) for s in specs.STYLES for m in specs.MODES}
    assert len(set(hashes.values())) == 4 and SPEC_VERSION == "1"
    assert all(hashes[(s, "flipped")] == hashes[(s, "conditioned")] for s in specs.STYLES)  # same instruction
    assert hashes == {(s, m): spec_hash(s, m) for s in specs.STYLES for m in specs.MODES}


@pytest.mark.parametrize("reply,conclusion,risk,last", [
    ("Age raises risk.\nConclusion: likely\nRisk: 0.31", "Yes", 0.31, "Conclusion: likely"),
    ("Age.\n**Conclusion:** Unlikely.", "No", None, "Conclusion: unlikely"),
    ("Age.\nConclusion: No\nRisk: 4%", "No", 0.04, "Conclusion: unlikely"),
    ("1. Evidence: x\n2. Risk factors: y\n3. Weighing: z\n4. Conclusion: likely (risk 0.2)\nAnswer: Yes",
     "Yes", 0.2, "4. Conclusion: likely"),
    ("Conclusion: unlikely at first sight.\nMore thought.\nConclusion: likely", "Yes", None, "Conclusion: likely"),
])
def test_parse_reply_variants(reply, conclusion, risk, last):
    style = "stepwise" if reply.startswith("1.") else "freeform"
    parsed = parse_reply(reply, style, "blind")
    assert (parsed.conclusion, parsed.teacher_risk) == (conclusion, risk)
    assert parsed.text.splitlines()[-1] == last and "Answer:" not in parsed.text and "Risk:" not in parsed.text


@pytest.mark.parametrize("reply,message", [
    ("The person is at low risk.", "no conclusion line"),
    ("", "no conclusion line"),
    ("Conclusion: likely", "no rationale before it"),
    ("Age.\nAnswer: Yes\nConclusion: maybe", "no conclusion line"),
    ("Age.\nConclusion: likely\nRisk: 1.7", "not a probability"),
])
def test_parse_reply_errors(reply, message):
    with pytest.raises(InputError, match=message):
        parse_reply(reply, "freeform", "blind")


def test_unknown_style_mode_and_bad_label():
    with pytest.raises(InputError, match="unknown rationale style"):
        teacher_messages(PROMPT, "bullets", "blind")
    with pytest.raises(InputError, match="unknown rationale mode"):
        parse_reply("Age.\nConclusion: likely", "freeform", "oracle")
    with pytest.raises(InputError, match="must not see the label"):
        teacher_messages(PROMPT, "freeform", "blind", False)
    with pytest.raises(InputError, match="prompt is empty"):
        teacher_messages("  ", "freeform", "blind")
