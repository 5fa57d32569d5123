"""The offline ``knowledge`` teacher: textbook dementia risk factors, a points model, and a rationale writer.

The knowledge base (``knowledge_base.yaml``) lists risk and protective factors with direction, rough
relative risk, mechanism and source, and the codes and thresholds that show each factor in a record. The
writer cites only the subject's own evidence, with its timing and values, and words it with seeded,
deterministic variation. It knows nothing beyond the knowledge base: in blind mode it scores the record
with the points model and concludes from that; in conditioned mode it explains the given label.

>>> kb = load_knowledge()
>>> kb.factor("hypertension").direction, kb.factor("hypertension").relative_risk
('raises', 1.2)
>>> round(kb.risk(65.0, []), 4)
0.0037
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rationale_sft.errors import InputError
from rationale_sft.rationales.facts import Diagnosis, Facts, Measurement
from rationale_sft.rationales.specs import LABELLED_MODES, ParsedRationale, check_style_mode, parse_reply
from rationale_sft.seeding import rng

KNOWLEDGE_BASE = Path(__file__).with_name("knowledge_base.yaml")
PHRASING_VERSION = 5  # bump when the teacher words the same facts differently (in backend_params: cache key, job id)
DIRECTIONS = ("raises", "lowers")
FACTOR_FIELDS = {"factors": "raises", "protective": "lowers"}
"The ``recap_factors`` template's fields that list the record's factors, and the direction each lists."
CITES = ("varied", "record")
"How a measurement or a diagnosis is worded in a rationale (TeacherConfig.cite)."


@dataclass(frozen=True)
class Rule:
    """A measurement threshold that shows a factor: at_least <= value < below, or just present."""

    code: str
    at_least: float | None = None
    below: float | None = None
    present: bool = False

    def matches(self, m: Measurement) -> bool:
        """Whether a measurement (same code, without prefix) satisfies the rule."""
        if m.short != self.code:
            return False
        if self.present:
            return m.value is None or m.value != 0
        return m.value is not None and (self.at_least is None or m.value >= self.at_least) \
            and (self.below is None or m.value < self.below)


@dataclass(frozen=True)
class Factor:
    """One textbook risk or protective factor."""

    id: str
    label: str
    names: tuple[str, ...]
    direction: str
    relative_risk: float
    mechanism: str
    source: str
    diagnoses: tuple[str, ...] = ()
    measurements: tuple[Rule, ...] = ()

    @property
    def strength(self) -> str:
        """'strong', 'moderate' or 'modest', from the relative risk (or its inverse when protective)."""
        rr = self.relative_risk if self.direction == "raises" else 1.0 / self.relative_risk
        return "strong" if rr >= 2.5 else "moderate" if rr >= 1.5 else "modest"


@dataclass(frozen=True)
class Evidence:
    """A factor shown by a subject's diagnosis or measurement."""

    factor: Factor
    diagnosis: Diagnosis | None = None
    measurement: Measurement | None = None


@dataclass(frozen=True)
class KnowledgeBase:
    """Factors, measurement names and the points model."""

    version: int
    sources: dict
    intercept: float
    reference_age: float
    age_per_year: float
    threshold: float
    measurement_names: dict
    factors: tuple[Factor, ...]

    def factor(self, factor_id: str) -> Factor:
        """A factor by id."""
        for f in self.factors:
            if f.id == factor_id:
                return f
        raise InputError(f"unknown factor {factor_id!r}; known: {', '.join(f.id for f in self.factors)}")

    def risk(self, age: float | None, evidence: list[Evidence]) -> float:
        """5-year risk from the points model: age term plus ln(RR) of each distinct factor shown."""
        logit = self.intercept + self.age_per_year * ((age if age is not None else self.reference_age)
                                                      - self.reference_age)
        logit += sum(math.log(f.relative_risk) for f in {e.factor for e in evidence})
        return 1.0 / (1.0 + math.exp(-logit))


@functools.lru_cache(maxsize=8)
def load_knowledge(path: str | Path | None = None) -> KnowledgeBase:
    """Read and check a knowledge base YAML (default: the shipped ``knowledge_base.yaml``)."""
    from rationale_sft.config import read_yaml

    path = Path(path or KNOWLEDGE_BASE)
    data = read_yaml(path)
    try:
        model, sources = data["model"], data["sources"]
        factors = tuple(_factor(f, sources, path) for f in data["factors"])
        return KnowledgeBase(int(data["version"]), dict(sources), float(model["intercept"]),
                             float(model["reference_age"]), float(model["age_per_year"]),
                             float(model["decision_threshold"]),
                             {k: tuple(v["names"]) for k, v in data["measurements"].items()}, factors)
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: missing or malformed entry {exc}; see the shipped knowledge_base.yaml") from None


def _factor(f: dict, sources: dict, path: Path) -> Factor:
    factor = Factor(f["id"], f["label"], tuple(f["names"]), f["direction"], float(f["relative_risk"]), f["mechanism"],
                    f["source"], tuple(f.get("diagnoses", ())), tuple(Rule(**r) for r in f.get("measurements", ())))
    problem = (f"direction must be one of {DIRECTIONS}" if factor.direction not in DIRECTIONS else
               "relative_risk must be > 1 for 'raises' and < 1 for 'lowers'"
               if (factor.relative_risk > 1) != (factor.direction == "raises") else
               f"source {factor.source!r} is not listed under sources" if factor.source not in sources else
               "needs diagnoses or measurements as evidence" if not factor.diagnoses + factor.measurements else None)
    if problem:
        raise InputError(f"{path}: factor {factor.id!r}: {problem}")
    return factor


def find_evidence(facts: Facts, kb: KnowledgeBase) -> list[Evidence]:
    """Every factor the record shows, strongest first; a factor's oldest diagnosis, then its measurement."""
    out = []
    for f in kb.factors:
        diag = next((d for d in facts.diagnoses if d.short[:3] in f.diagnoses), None)
        meas = next((m for m in facts.measurements if any(r.matches(m) for r in f.measurements)), None)
        if diag or meas:
            out.append(Evidence(f, diag, meas))
    return sorted(out, key=lambda e: -abs(math.log(e.factor.relative_risk)))


def write_rationale(facts: Facts, style: str, mode: str, label: bool | None = None, seed: int = 0,
                    kb: KnowledgeBase | None = None, max_factors: int | None = None,
                    cite: str = "varied") -> ParsedRationale:
    """A rationale about one subject in the given style and mode, deterministic for (seed, subject).

    Blind mode concludes from the points model (``Risk:`` line); conditioned mode explains ``label``;
    flipped mode explains ``label`` too, where the caller passes the opposite of the true label.
    ``cite`` words a measurement: "varied" by its usual name in one of three phrasings, "record" as the
    record's own line states it (name, colon, value and unit).
    The reply goes through ``specs.parse_reply``, so it satisfies the same format as any teacher's.
    """
    check_style_mode(style, mode)
    if cite not in CITES:
        raise InputError(f"cite must be one of {', '.join(CITES)}, got {cite!r}")
    if (mode in LABELLED_MODES) != (label is not None):
        need = "needs the label (True/False)" if mode in LABELLED_MODES else "must not see the label"
        raise InputError(f"{mode} mode {need} for subject {facts.subject_id}; got label={label!r}")
    kb = kb or load_knowledge()
    evidence = find_evidence(facts, kb)
    risk = kb.risk(facts.age, evidence)
    outcome = bool(label) if mode in LABELLED_MODES else risk >= kb.threshold
    # flipped mode words the subject like conditioned mode (same draws), so mostly the verdict differs
    g = rng(seed, f"knowledge-rationale/{facts.subject_id}/{style}/{'conditioned' if mode == 'flipped' else mode}")
    writer = _freeform if style == "freeform" else _stepwise
    cited = evidence[:max_factors or (5 if style == "freeform" else 6)]  # the strongest first
    body = writer(facts, cited, evidence, risk, outcome, mode, g, kb, cite)
    risk_line = f"\nRisk: {risk:.3f}" if mode == "blind" else ""
    return parse_reply(body + risk_line, style, mode)


def choose(g: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    """One of ``options``, drawn with the subject's generator."""
    return options[int(g.integers(len(options)))]


# ------------------------------------------------------------------------------------------------ wording
# The record's own word for sex (the prompt's "Sex: female"), as clinical notes write it: a rationale states the
# sex by repeating it, not by translating it into "woman"/"man".
SEX_WORD = {"F": "female", "M": "male"}
_OPEN = (
    "At {age}, this {patient} carries the baseline risk of age, the strongest single risk factor: dementia "
    "incidence roughly doubles with every five years of age.",
    "This {patient} was {age} years old at the {anchor}; age alone sets a baseline risk that doubles about "
    "every five years.",
    "The baseline is set by age: a {age}-year-old {sex}, at an age where dementia incidence rises steeply.",
    "For a {patient} of {age}, the background risk is set mainly by age, which roughly doubles dementia "
    "incidence every five years.",
    "Age is the first consideration: the {patient} was {age} at the {anchor}, and dementia incidence climbs steeply "
    "with each decade.",
)
_RAISES = (
    "{cite_cap} shows {label}, a {strength} risk factor (relative risk about {rr}), because {mech}.",
    "The record shows {cite}; {label} raises dementia risk {adverb} (about {rr}-fold), as {mech}.",
    "{cite_cap} adds risk: {label} is linked to roughly {rr} times the risk, since {mech}.",
    "The record shows {label} ({cite}), which increases risk (about {rr}-fold): {mech}.",
    "{label_cap} is present ({cite}); it raises risk {adverb}, because {mech}.",
    "{cite_cap} matters as well: {label} is a {strength} risk factor (about {rr}-fold).",
    "Next, {label} ({cite}) adds risk, roughly {rr}-fold.",
)
_LOWERS = (
    "{cite_cap} is protective: {label} lowers risk (relative risk about {rr}), because {mech}.",
    "On the protective side, {cite} indicates {label}, which reduces risk: {mech}.",
    "{cite_cap} counts in this person's favour, as {label} lowers risk ({mech}).",
    "{label_cap} ({cite}) is protective (relative risk about {rr}).",
)
_ABSENT = ("No diagnosis of {items} is recorded.", "There is no record of {items}.",
           "The record does not mention {items}.")
_NOTHING = ("The record lists no established dementia risk factor beyond age.",
            "Apart from age, the record shows none of the established risk factors.")
_BLIND = {True: ("Taken together, age and these factors put the estimated 5-year risk at about {pct}, high enough "
                 "to expect a diagnosis.",
                 "Weighing them, the estimated 5-year risk is about {pct}, at or above the level where a diagnosis "
                 "becomes likely.",
                 "On balance the estimated 5-year risk comes to about {pct}, high for this age, so a diagnosis is "
                 "expected."),
          False: ("Weighing these, the estimated 5-year risk is about {pct}, too low to expect a diagnosis within "
                  "5 years.",
                  "Overall the estimated 5-year risk is about {pct}, below the level where a diagnosis would be "
                  "expected.",
                  "On balance the estimated 5-year risk is only about {pct}, so a diagnosis within 5 years is not "
                  "expected.")}
_GIVEN = {(True, True): ("Together these factors make a diagnosis within 5 years plausible.",
                         "This accumulation of risk makes a diagnosis within 5 years a plausible outcome.",
                         "With this burden of risk on top of age, a diagnosis within the next 5 years fits the "
                         "record."),
          (True, False): ("Although the record shows few established risk factors, age at the {anchor} is enough "
                          "for a diagnosis within 5 years to be plausible; much dementia risk is not captured by "
                          "recorded factors.",
                          "Few recorded factors point this way, yet age makes a diagnosis within 5 years plausible, "
                          "and much of the risk of dementia is unrecorded."),
          (False, True): ("Despite {top}, most people with such a profile stay free of dementia for the next 5 "
                          "years, so no diagnosis is the expected outcome.",
                          "Even with {top}, the absolute 5-year risk stays small, and no diagnosis within 5 years is "
                          "the more plausible outcome."),
          (False, False): ("With few risk factors, no diagnosis within 5 years is the expected outcome.",
                           "Little in this record raises risk, so remaining free of dementia for 5 years is "
                           "plausible.",
                           "Nothing beyond age points to dementia here, and staying free of it for 5 years is the "
                           "likely course.")}
_COMMON_ABSENT = ("diabetes", "stroke", "depression", "hearing loss", "hypertension", "atrial fibrillation")


def _cite(e: Evidence, g: np.random.Generator, anchor: str, kb: KnowledgeBase, cite: str = "varied") -> str:
    """The subject's own evidence for a factor, with timing or value: by their usual names in varied phrasings,
    or with ``cite="record"`` as the record's line states it (the recap line's words, so a reader copies them)."""
    if cite == "record":
        if e.diagnosis is None and e.measurement.value is None:
            return f"{e.measurement.name} recorded at the {anchor}"
        return record_cite(e)
    if e.diagnosis is not None:
        d = e.diagnosis
        return choose(g, (f"{d.name} first recorded {d.ago} ({d.date})", f"{d.name} ({d.date}, {d.ago})",
                          f"{d.name}, diagnosed {d.ago} ({d.date})"))
    m = e.measurement
    name = kb.measurement_names.get(m.short, (m.name,))[0]
    if m.value is None:
        return f"{name} recorded at the {anchor}"
    value = f"{_fmt(m.value)}{m.unit}"
    return choose(g, (f"{name} {value}", f"{name} of {value}", f"{name}: {value}"))


def record_line(m: Measurement) -> str:
    """A measurement with a value as the record's line states it: 'LDL cholesterol: 4.07 mmol/L'."""
    return f"{m.name}: {_fmt(m.value)}{m.unit}"


def record_diagnosis(d: Diagnosis) -> str:
    """A diagnosis by the year of its first occurrence: 'Essential (primary) hypertension (2001)'.

    The year alone, right after the name: a tiny model copies the one token that follows a name it has just
    written, but not a month after a dash or a timing after a comma, which follow tokens every dated item shares
    (docs/models.md). The prompt's history line keeps the month and the timing."""
    return f"{d.name} ({d.time.year})"


def factors_fields(facts: Facts, kb: KnowledgeBase) -> dict[str, str]:
    """The ``recap_factors`` template's two lines, by field: the record's factors that raise risk (``factors``)
    and those that lower it (``protective``), each strongest first, as the record states it, '; '-separated
    ('none' without any): 'Number of APOE e4 alleles (0, 1, 2): 1; Essential (primary) hypertension (2001)'."""
    evidence = find_evidence(facts, kb)
    return {field: "; ".join(record_cite(e) for e in evidence if e.factor.direction == direction) or "none"
            for field, direction in FACTOR_FIELDS.items()}


def record_cite(e: Evidence) -> str:
    """A factor's evidence as the record states it: its diagnosis line, its measurement line, or the name of a
    measurement recorded without a value."""
    if e.diagnosis is not None:
        return record_diagnosis(e.diagnosis)
    return e.measurement.name if e.measurement.value is None else record_line(e.measurement)


def _fmt(value: float) -> str:
    from rationale_sft.render.vocab import format_number

    return format_number(value)


def _factor_sentence(e: Evidence, g: np.random.Generator, anchor: str, kb: KnowledgeBase, how: str) -> str:
    f = e.factor
    cite = _cite(e, g, anchor, kb, how)
    adverb = {"strong": "markedly", "moderate": "substantially", "modest": "modestly"}[f.strength]
    text = choose(g, _RAISES if f.direction == "raises" else _LOWERS)
    return text.format(cite=cite, cite_cap=cite[:1].upper() + cite[1:], label=f.label, strength=f.strength,
                       label_cap=f.label[:1].upper() + f.label[1:], adverb=adverb, rr=f"{f.relative_risk:g}",
                       mech=f.mechanism)


def absent_common(evidence: list[Evidence], kb: KnowledgeBase) -> list[str]:
    """The common risk factors (by label) that the evidence lacks, in a fixed order: the ones a rationale may
    say are not recorded."""
    shown = {e.factor.label for e in evidence}
    return [x for x in _COMMON_ABSENT if x not in shown and x in {f.label for f in kb.factors}]


def _absent(facts: Facts, evidence: list[Evidence], g: np.random.Generator, kb: KnowledgeBase) -> str:
    missing = absent_common(evidence, kb)
    if len(missing) < 2 or g.random() < 0.4:
        return ""
    picked = [missing[i] for i in sorted(g.choice(len(missing), size=min(3, len(missing)), replace=False))]
    return choose(g, _ABSENT).format(items=spoken_list(picked))


def spoken_list(items: list[str], last: str = "or") -> str:
    """Items as a sentence lists them.

    >>> spoken_list(["diabetes", "stroke", "depression"]), spoken_list(["stroke"])
    ('diabetes, stroke or depression', 'stroke')
    """
    return ", ".join(items[:-1]) + f" {last} " + items[-1] if len(items) > 1 else "".join(items)


_DRIVER = ("The main drivers are {top}.", "{top_cap} weigh most heavily.", "Most of the excess risk comes from {top}.")
_OFFSET = {True: ("Protective factors ({prot}) only partly offset this.",
                  "On the other side, {prot} lower{s} risk somewhat, but not enough to change the picture."),
           False: ("{prot_cap} also lower{s} risk.", "In addition, {prot} count{s} in this person's favour.")}


def _weigh(facts: Facts, cited: list[Evidence], evidence: list[Evidence], risk: float, outcome: bool, mode: str,
           g: np.random.Generator) -> str:
    """Weigh the evidence: main drivers, protective factors, then the verdict (own risk, or the given label).

    The main drivers are the two strongest risk-raising factors the rationale discussed (``cited``), named
    only when they are a selection of them (more than two discussed); otherwise the verdict refers back to
    "these risk factors" rather than list again what was just said. Protective factors come from all of
    ``evidence``.
    """
    raising = [e.factor.label for e in cited if e.factor.direction == "raises"]
    any_raising = any(e.factor.direction == "raises" for e in evidence)
    prot = [e.factor.label for e in evidence if e.factor.direction == "lowers"]
    top = (" and ".join(raising[:2]) if len(raising) > 2 else "these risk factors" if len(raising) == 2
           else "this risk factor" if raising else "the recorded risk factors")
    lower = " and ".join(prot[:2])
    parts = []
    if len(raising) > 2 and g.random() < 0.5:
        parts.append(choose(g, _DRIVER).format(top=top, top_cap=top[:1].upper() + top[1:]))
    if prot and (any_raising or not outcome) and g.random() < 0.7:
        parts.append(choose(g, _OFFSET[any_raising and outcome]).format(
            prot=lower, prot_cap=lower[:1].upper() + lower[1:], s="s" if len(prot) == 1 else ""))
    if mode == "blind":
        parts.append(choose(g, _BLIND[outcome]).format(pct=_pct(risk)))
    else:
        parts.append(choose(g, _GIVEN[(outcome, any_raising)]).format(top=top, anchor=facts.anchor))
    return " ".join(parts)


def _pct(risk: float) -> str:
    return f"{risk * 100:.1f}%" if risk < 0.1 else f"{risk * 100:.0f}%"


def _opening(facts: Facts, g: np.random.Generator) -> str:
    if facts.age is None:
        return "Age is not recorded, so the baseline risk of age is unknown."
    return choose(g, _OPEN).format(age=int(facts.age), sex=SEX_WORD.get(facts.sex or "", "patient"),
                                   patient=_patient(facts), anchor=facts.anchor)


def who(facts: Facts) -> str:
    """Age and sex as a rationale states them: '68-year-old female' ('68-year-old patient' without a sex, the
    sex alone without an age)."""
    if facts.age is None:
        return _patient(facts)
    return f"{int(facts.age)}-year-old {SEX_WORD.get(facts.sex or '', 'patient')}"


def _patient(facts: Facts) -> str:
    """"female patient", "male patient", or "patient" when the sex is not recorded."""
    return " ".join(w for w in (SEX_WORD.get(facts.sex or ""), "patient") if w)


def _freeform(facts: Facts, cited: list[Evidence], evidence: list[Evidence], risk: float, outcome: bool, mode: str,
              g: np.random.Generator, kb: KnowledgeBase, cite: str) -> str:
    """One paragraph: baseline, each cited factor with its evidence, absences, weighing; then the conclusion."""
    sentences = [_opening(facts, g)]
    sentences += [_factor_sentence(e, g, facts.anchor, kb, cite) for e in cited] or [choose(g, _NOTHING)]
    sentences += [_absent(facts, evidence, g, kb), _weigh(facts, cited, evidence, risk, outcome, mode, g)]
    return " ".join(s for s in sentences if s) + f"\nConclusion: {'likely' if outcome else 'unlikely'}"


def _stepwise(facts: Facts, cited: list[Evidence], evidence: list[Evidence], risk: float, outcome: bool, mode: str,
              g: np.random.Generator, kb: KnowledgeBase, cite: str) -> str:
    """Four numbered steps: evidence, risk factors, weighing, conclusion."""
    cites = [_cite(e, g, facts.anchor, kb, cite) for e in cited]
    step1 = "; ".join([who(facts), *cites]) + ("" if cites else "; no established risk factor recorded")
    roles = [f"{e.factor.label} {e.factor.direction} risk ({e.factor.strength}, relative risk about "
             f"{e.factor.relative_risk:g}: {e.factor.mechanism})" for e in cited]
    if facts.age is not None:
        roles.insert(0, choose(g, ("age raises risk (incidence doubles about every five years)",
                                   "age is the dominant risk factor (incidence doubles about every five years)")))
    weighing = (_absent(facts, evidence, g, kb), _weigh(facts, cited, evidence, risk, outcome, mode, g))
    step3 = " ".join(s for s in weighing if s)
    return "\n".join([f"1. Evidence: {step1}.", f"2. Risk factors: {'; '.join(roles) or 'none recorded'}.",
                      f"3. Weighing: {step3}", f"4. Conclusion: {'likely' if outcome else 'unlikely'}"])


__all__ = ["KNOWLEDGE_BASE", "PHRASING_VERSION", "SEX_WORD", "KnowledgeBase", "Factor", "Rule", "Evidence",
           "load_knowledge", "find_evidence", "write_rationale", "FACTOR_FIELDS", "factors_fields", "record_cite",
           "record_line", "absent_common", "spoken_list", "who"]
