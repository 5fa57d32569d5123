"""Prompt templates: versioned text specs whose hash changes whenever any of their text changes.

A template is plain data: format strings with named fields. The vectorised renderer turns each format
string into a polars string expression (``fmt_expr``) and the Python assembler uses ``str.format`` on the
same strings, so both produce identical text. Every prompt ends with the question block, which must end
with the answer marker (``answer.ANSWER_MARKER``): the label word follows it directly.

>>> t = get_template("chronological")
>>> t.name, t.version, len(template_hash(t, "Q?", "assessment"))
('chronological', '1', 16)
>>> template_hash(t, "Q?", "assessment") != template_hash(get_template("by_system"), "Q?", "assessment")
True
>>> get_template("bullets")
Traceback (most recent call last):
...
rationale_sft.errors.InputError: unknown template 'bullets'; allowed: chronological, by_system, recap, recap_factors
"""

from __future__ import annotations

import dataclasses
import json
import string
from dataclasses import dataclass

import polars as pl

from rationale_sft.errors import InputError
from rationale_sft.answer import ANSWER_MARKER
from rationale_sft.rundir import hash_text


@dataclass(frozen=True)
class Template:
    """The text of a prompt, as format strings; fields in braces are filled per subject."""

    name: str
    "Template name (stored per example)."
    version: str
    "Bumped by hand on deliberate changes; the hash catches every change."
    intro: str = "Health history recorded up to the {anchor} on {date}."
    "First line; fields: anchor, date (prediction date, YYYY-MM-DD)."
    demographics: str = "Sex: {sex}\nAge at {anchor}: {age} years"
    "Demographics; fields: sex, age, anchor."
    measurements_title: str = "Measurements at the {anchor} visit:"
    "Title above the measurement lines (omitted when a subject has none); field: anchor."
    measurement_line: str = "- {name}: {value}"
    "One measurement with a value (the value includes its unit); fields: name, value."
    flag_line: str = "- {name}"
    "One measurement without a value (a recorded yes/no item); field: name."
    history_title: str = "Diagnoses before the {anchor} (first occurrence, oldest first):"
    "Title above the dated history; field: anchor."
    history_line: str = "- {date} ({ago}): {name}"
    "One first-occurrence diagnosis; fields: date (YYYY-MM), ago (e.g. '7 years before assessment'), name, code."
    group_title: str = ""
    "Heading printed before the first item of each group (by_system); field: group. Empty = no groups."
    empty_history: str = "- none recorded"
    "The history block when a subject has no diagnoses."
    omitted_line: str = "- ({n} earlier diagnoses not shown)"
    "First history line when the oldest items were dropped to fit a token budget; field: n."
    question_block: str = "Question: {question}\n" + ANSWER_MARKER
    """The last block; must end with the answer marker; fields: question, sex, age, anchor, factors and protective
    (the record's knowledge-base factors that raise, or lower, risk, strongest first, '; '-separated, or 'none')."""


TEMPLATES = {
    "chronological": Template(name="chronological", version="1"),
    "by_system": Template(
        name="by_system", version="1",
        history_title="Diagnoses before the {anchor} by body system (first occurrence, oldest first):",
        history_line="  - {date} ({ago}): {name}", group_title="- {group}:"),
    # Chronological, with sex and age restated right before the question, as a clinician's question names the
    # person it is about. A model then finds them next to where its answer or rationale starts, not only
    # in the header hundreds of tokens back.
    "recap": Template(
        name="recap", version="1",
        question_block="About: {sex}, {age} years old at the {anchor}.\nQuestion: {question}\n" + ANSWER_MARKER),
    # recap, plus two lines that restate the record's risk factors, then its protective factors, known to the
    # knowledge base, strongest first, each as the record states it: the reading a clinician (or a real LLM)
    # does before answering, written out for a from-scratch model that cannot yet do it (which way a value
    # points, e.g. 486 MET-minutes of activity, needs its threshold). Every arm reads the same lines.
    "recap_factors": Template(
        name="recap_factors", version="2",
        question_block="About: {sex}, {age} years old at the {anchor}.\nRisk factors in the record (strongest "
                       "first): {factors}.\nProtective factors in the record: {protective}.\nQuestion: "
                       "{question}\n" + ANSWER_MARKER),
}


def get_template(name: str) -> Template:
    """A built-in template by name."""
    if name not in TEMPLATES:
        raise InputError(f"unknown template {name!r}; allowed: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def check_template(t: Template) -> None:
    """Raise InputError unless the question block ends with the answer marker (the answer slot).

    >>> check_template(dataclasses.replace(get_template("chronological"), question_block="Q: {question}"))
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: template 'chronological': question_block must end with the answer marker 'Answer:' so the label word follows the prompt directly; got 'Q: {question}'
    """
    if not t.question_block.rstrip(" ").endswith(ANSWER_MARKER) or t.question_block.endswith((" ", "\n")):
        raise InputError(f"template {t.name!r}: question_block must end with the answer marker {ANSWER_MARKER!r} "
                         f"so the label word follows the prompt directly; got {t.question_block!r}")
    for f in dataclasses.fields(t):
        fields = {n for _, n, _, _ in string.Formatter().parse(getattr(t, f.name)) if n}
        allowed = _FIELDS.get(f.name, set())
        if fields - allowed:
            raise InputError(f"template {t.name!r}: {f.name} uses unknown field(s) {sorted(fields - allowed)}; "
                             f"allowed: {sorted(allowed) or 'none'}")


_FIELDS = {"intro": {"anchor", "date"}, "demographics": {"sex", "age", "anchor"},
           "measurements_title": {"anchor"}, "measurement_line": {"name", "value"}, "flag_line": {"name"},
           "history_title": {"anchor"}, "history_line": {"date", "ago", "name", "code"},
           "group_title": {"group"}, "omitted_line": {"n"},
           "question_block": {"question", "sex", "age", "anchor", "factors", "protective"}}


def template_hash(t: Template, question: str, anchor: str) -> str:
    """Hash of every text that shapes a prompt: the template's fields, the question and the anchor word."""
    return hash_text(json.dumps([dataclasses.asdict(t), question, anchor], sort_keys=True))


def fmt_expr(template: str, **values: pl.Expr | str) -> pl.Expr:
    """A polars string expression filling ``template``'s fields with expressions or constant strings.

    >>> df = pl.DataFrame({"n": ["a", "b"]})
    >>> df.select(fmt_expr("<{n}> {k}", n=pl.col("n"), k="x")).to_series().to_list()
    ['<a> x', '<b> x']
    """
    parts: list[pl.Expr] = []
    for literal, field, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(pl.lit(literal))
        if field is not None:
            value = values[field]
            parts.append(value if isinstance(value, pl.Expr) else pl.lit(str(value)))
    return pl.concat_str(parts) if parts else pl.lit("")
