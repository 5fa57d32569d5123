"""Teacher prompt specs: versioned instructions for two rationale styles and two modes, and the reply parser.

Styles: ``freeform`` (one short clinical paragraph) and ``stepwise`` (numbered steps: evidence -> risk
factors -> weighing -> conclusion). Modes: ``conditioned`` (the teacher is told the true outcome and
explains it), ``blind`` (the teacher predicts, then explains) and ``flipped`` (the teacher gets exactly the
conditioned instruction, but with the opposite of the true outcome: the control rationales of the
``flipped_rationale`` arm; callers pass the flipped label, ``generate.Item.teacher_label``). Every reply must end with a conclusion
line (see ``docs/rationale_specs.md``)::

    Conclusion: likely          (or: Conclusion: unlikely; a step number "4. " may precede it)
    Risk: 0.12                  (optional, blind mode; a probability in [0, 1] or a percentage)

``parse_reply`` keeps the rationale up to and including the conclusion line, canonicalised, and drops the
risk line and any answer-marker line: the SFT target appends ``Answer: Yes|No`` itself.

>>> msgs = teacher_messages("Age: 70 years\\nQuestion: ...?\\nAnswer:", "stepwise", "blind", None)
>>> [m["role"] for m in msgs], msgs[1]["content"].endswith("Question: ...?")
(['system', 'user'], True)
>>> p = parse_reply("Hypertension and age raise risk.\\nConclusion: likely\\nRisk: 0.31", "freeform", "blind")
>>> p.text, p.conclusion, p.teacher_risk
('Hypertension and age raise risk.\\nConclusion: likely', 'Yes', 0.31)
>>> parse_reply("Risk seems low.", "freeform", "blind")
Traceback (most recent call last):
...
rationale_sft.errors.InputError: teacher reply has no conclusion line (expected a last line 'Conclusion: likely' or 'Conclusion: unlikely', optionally followed by 'Risk: 0.12'); reply ends with: 'Risk seems low.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rationale_sft.errors import InputError
from rationale_sft.answer import ANSWER_MARKER
from rationale_sft.rundir import hash_text

SPEC_VERSION = "1"
"""Bump when any instruction text or the reply format changes (it is part of every cache key)."""

STYLES = ("freeform", "stepwise")
MODES = ("conditioned", "blind", "flipped")
LABELLED_MODES = ("conditioned", "flipped")
"Modes in which the teacher is told an outcome (the true one, or its opposite)."
CONCLUSION_WORDS = {"Yes": "likely", "No": "unlikely"}
DEFAULT_OUTCOME = "diagnosed with Alzheimer's disease or a related dementia within 5 years of the assessment"

_SYSTEM = (
    "You are a clinical epidemiologist who explains dementia risk assessments to clinicians. You will read "
    "a structured health history recorded up to a baseline assessment visit. Base every statement only on "
    "facts in the record: quote diagnoses, measurement values and timings as they are written there, never "
    "invent findings, and never describe anything after the assessment. Relate the findings to established "
    "risk factors and protective factors for dementia (age, APOE e4, education, hearing loss, hypertension, "
    "LDL cholesterol, diabetes, obesity, smoking, alcohol, physical inactivity, depression, social "
    "isolation, air pollution, vision loss, traumatic brain injury, and prodromal signs such as memory "
    "complaints).")

_STYLE = {
    "freeform": (
        "Write one short clinical paragraph (about 80 to 180 words) that names the relevant evidence from "
        "the record with its values and timing, says which findings raise or lower risk, and weighs them."),
    "stepwise": (
        "Reason in numbered steps, exactly in this order:\n"
        "1. Evidence: the relevant findings from the record, with values and timing.\n"
        "2. Risk factors: for each finding, whether it raises or lowers dementia risk, and how strongly.\n"
        "3. Weighing: weigh the factors against each other, with age and sex as the baseline.\n"
        "4. Conclusion: likely or unlikely."),
}

_MODE = {
    "conditioned": (
        "You are told the true outcome: this person {outcome_verb} {outcome}. Explain, from the record "
        "alone, why this outcome is plausible: cite evidence for and against, then weigh it toward the "
        "known outcome. Do not say that you were told the outcome."),
    "blind": (
        "Predict whether this person will be {outcome}, then explain your prediction from the record."),
}

_FORMAT = {
    "conditioned": "End your reply with the line 'Conclusion: {word}'. Do not write '{marker}'.",
    "blind": ("End your reply with the line 'Conclusion: likely' (diagnosis expected) or 'Conclusion: "
              "unlikely', followed by a line 'Risk: p' with your probability p between 0 and 1 (for example "
              "'Risk: 0.12'). Do not write '{marker}'."),
}

_CONCLUSION_RE = re.compile(
    r"^[\s*#>-]*(?P<step>\d+[.)]\s*)?[*_]*conclusion[*_]*\s*[:\-]\s*[*_]*\s*"
    r"(?P<word>unlikely|likely|yes|no)\b(?P<rest>.*)$", re.IGNORECASE)
_RISK_RE = re.compile(r"\brisk\b[*_]*\s*[:=]?\s*[*_]*(?P<num>\d*\.?\d+)\s*(?P<pct>%)?", re.IGNORECASE)
_ANSWER_RE = re.compile(r"^[\s*#>]*" + re.escape(ANSWER_MARKER.rstrip(":")) + r"[*_]*\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedRationale:
    """A teacher reply reduced to the stored rationale, its conclusion and the teacher's own risk."""

    text: str
    "The rationale, ending with its canonical conclusion line, without the answer marker."
    conclusion: str
    "'Yes' (the outcome is likely) or 'No'."
    teacher_risk: float | None = None
    "The teacher's probability of the outcome (blind mode), None when it gave none."


def check_style_mode(style: str, mode: str) -> None:
    """Raise InputError for an unknown style or mode.

    >>> check_style_mode("stepwise", "blind")
    >>> check_style_mode("bullet", "blind")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: unknown rationale style 'bullet'; allowed: freeform, stepwise
    """
    if style not in STYLES:
        raise InputError(f"unknown rationale style {style!r}; allowed: {', '.join(STYLES)}")
    if mode not in MODES:
        raise InputError(f"unknown rationale mode {mode!r}; allowed: {', '.join(MODES)}")


def system_text(style: str, mode: str, label: bool | None = None, outcome: str = DEFAULT_OUTCOME) -> str:
    """The system instruction for one style, mode and (conditioned, flipped) label to explain.

    >>> system_text("freeform", "flipped", False) == system_text("freeform", "conditioned", False)
    True
    """
    check_style_mode(style, mode)
    if mode in LABELLED_MODES and label is None:
        raise InputError(f"{mode} mode needs the label to explain (True/False); got None. "
                         "Pass the subject's boolean_value (its opposite in flipped mode), or use mode='blind'.")
    if mode == "blind" and label is not None:
        raise InputError("blind mode must not see the label; pass label=None, or use mode='conditioned'.")
    word = CONCLUSION_WORDS["Yes" if label else "No"]
    verb = "was" if label else "was not"
    told = "conditioned" if mode == "flipped" else mode  # the teacher must not know the outcome is flipped
    return "\n\n".join([
        _SYSTEM, _STYLE[style],
        _MODE[told].format(outcome_verb=verb, outcome=outcome),
        _FORMAT[told].format(word=word, marker=ANSWER_MARKER)])


def spec_hash(style: str, mode: str) -> str:
    """Hash of the spec version and the instruction templates of one style and mode (for cache keys).

    >>> spec_hash("freeform", "blind") == spec_hash("freeform", "blind") != spec_hash("stepwise", "blind")
    True
    """
    check_style_mode(style, mode)
    told = "conditioned" if mode == "flipped" else mode  # same instruction; the cache key holds the mode
    return hash_text("\x1f".join([SPEC_VERSION, _SYSTEM, _STYLE[style], _MODE[told], _FORMAT[told]]))


def strip_answer_slot(prompt: str) -> str:
    """The rendered prompt without its trailing answer marker (the teacher writes a rationale, not the answer).

    >>> strip_answer_slot("History...\\nQuestion: Will it?\\nAnswer:")
    'History...\\nQuestion: Will it?'
    """
    text = prompt.rstrip()
    if text.endswith(ANSWER_MARKER):
        text = text[: -len(ANSWER_MARKER)]
    return text.rstrip()


def teacher_messages(prompt: str, style: str, mode: str, label: bool | None = None,
                     outcome: str = DEFAULT_OUTCOME) -> list[dict]:
    """OpenAI chat messages asking a teacher for one rationale about one rendered prompt.

    >>> m = teacher_messages("Sex: female\\nAnswer:", "freeform", "conditioned", True)
    >>> "this person was diagnosed" in m[0]["content"], m[1]["content"]
    (True, 'Health history:\\nSex: female')
    >>> teacher_messages("x", "freeform", "conditioned", None)
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: conditioned mode needs the label to explain (True/False); got None. Pass the subject's boolean_value (its opposite in flipped mode), or use mode='blind'.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("teacher prompt is empty; render the subject's history first (rationale-sft render)")
    return [{"role": "system", "content": system_text(style, mode, label, outcome)},
            {"role": "user", "content": "Health history:\n" + strip_answer_slot(prompt)}]


def parse_reply(text: str, style: str, mode: str) -> ParsedRationale:
    """Parse a teacher reply: the last conclusion line decides; text after it is dropped, a risk kept.

    >>> r = parse_reply("1. Evidence: age 74.\\n2. Risk factors: age.\\n3. Weighing: age dominates.\\n"
    ...                 "4. **Conclusion:** Likely.\\nAnswer: Yes", "stepwise", "blind")
    >>> r.text.splitlines()[-1], r.conclusion, r.teacher_risk
    ('4. Conclusion: likely', 'Yes', None)
    >>> parse_reply("Few factors.\\nConclusion: unlikely (risk 4%)", "freeform", "blind").teacher_risk
    0.04
    >>> parse_reply("Conclusion: unlikely", "freeform", "blind")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: teacher reply has a conclusion but no rationale before it; ask the teacher to explain first
    >>> parse_reply("Age.\\nConclusion: likely\\nRisk: 7", "freeform", "blind")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: teacher risk 7.0 is not a probability in [0, 1] (write 'Risk: 0.12' or 'Risk: 12%')
    """
    check_style_mode(style, mode)
    lines = [ln.rstrip() for ln in str(text).strip().splitlines()]
    idx = next((i for i in range(len(lines) - 1, -1, -1) if _CONCLUSION_RE.match(lines[i])), None)
    if idx is None:
        tail = str(text).strip()[-80:]
        raise InputError("teacher reply has no conclusion line (expected a last line 'Conclusion: likely' or "
                         f"'Conclusion: unlikely', optionally followed by 'Risk: 0.12'); reply ends with: {tail!r}")
    match = _CONCLUSION_RE.match(lines[idx])
    word = match["word"].lower()
    conclusion = "Yes" if word in ("likely", "yes") else "No"
    risk = _parse_risk(" ".join([match["rest"], *lines[idx + 1:]]))
    body = [ln for ln in lines[:idx] if not _ANSWER_RE.match(ln)]
    while body and not body[-1].strip():
        body.pop()
    if not any(ln.strip() for ln in body):
        raise InputError("teacher reply has a conclusion but no rationale before it; ask the teacher to explain first")
    step = (match["step"] or "").strip()
    final = f"{step + ' ' if step else ''}Conclusion: {CONCLUSION_WORDS[conclusion]}"
    return ParsedRationale("\n".join(body + [final]), conclusion, risk)


def _parse_risk(text: str) -> float | None:
    found = _RISK_RE.search(text)
    if not found:
        return None
    value = float(found["num"]) / (100.0 if found["pct"] else 1.0)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"teacher risk {value} is not a probability in [0, 1] (write 'Risk: 0.12' or 'Risk: 12%')")
    return value


__all__ = ["SPEC_VERSION", "STYLES", "MODES", "LABELLED_MODES", "ParsedRationale", "teacher_messages", "parse_reply",
           "system_text", "spec_hash", "strip_answer_slot", "check_style_mode"]
