"""Prompt parts and their assembly under a token budget: the oldest history goes first, never the question.

This is the one truncation of the project: render (``render.max_tokens``), training (``train.max_len``),
scoring and the few-shot arm all fit a prompt by dropping its oldest history items here, from the
structured parts stored in examples.parquet (``header``, ``items``, ``group_ids``, ``question``), so a
template's layout never has to be parsed back out of the text.

>>> t = get_template("chronological")
>>> items = ("- 2001-03 (8 years before): Asthma", "- 2005-07 (4 years before): Gout",
...          "- 2009-01 (1 year before): Hypertension")
>>> parts = PromptParts(header="Intro\\nDiagnoses:", items=items, group_ids=(10, 12, 8),
...                     question="Question: Will it?\\nAnswer:", template=t)
>>> print(assemble(parts)[0])
Intro
Diagnoses:
- 2001-03 (8 years before): Asthma
- 2005-07 (4 years before): Gout
- 2009-01 (1 year before): Hypertension
Question: Will it?
Answer:
>>> prompt, dropped = assemble(parts, max_tokens=19)
>>> dropped, prompt.splitlines()[2:4]
(2, ['- (2 earlier diagnoses not shown)', '- 2009-01 (1 year before): Hypertension'])
>>> assemble(parts, max_tokens=3)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: prompt without any history still takes 12 tokens, over max_tokens=3; raise the budget or shorten the template/question
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rationale_sft.errors import InputError
from rationale_sft.render.templates import Template, get_template
from rationale_sft.render.vocab import CHAPTERS


@dataclass(frozen=True)
class PromptParts:
    """One subject's prompt before assembly: fixed header and question, droppable history items."""

    header: str
    "Intro, demographics, measurements and the history title (never dropped)."
    items: tuple[str, ...]
    "History lines, oldest first (dropped oldest first)."
    group_ids: tuple[int, ...]
    "ICD-10 chapter index (render.vocab.CHAPTERS) per item; used by grouped templates."
    question: str
    "The question block ending with the answer marker (never dropped)."
    template: Template
    "The template whose group heading, empty and omitted lines apply."
    dropped: int = 0
    "Oldest items already left out of the stored prompt (render's budget); a fit never drops fewer."

    @classmethod
    def from_row(cls, row: dict, template: Template | str) -> PromptParts:
        """Parts from one row of ``render_parts`` or examples.parquet (header, items, group_ids, question, and
        n_history_dropped when present)."""
        t = get_template(template) if isinstance(template, str) else template
        return cls(row["header"], tuple(row["items"]), tuple(row["group_ids"]), row["question"], t,
                   int(row.get("n_history_dropped") or 0))


def whitespace_tokens(text: str) -> int:
    """Number of whitespace-separated words (the default token count)."""
    return len(text.split())


def history_text(parts: PromptParts, n_dropped: int = 0) -> str:
    """The history block with the ``n_dropped`` oldest items removed, laid out by the template."""
    t = parts.template
    kept = list(zip(parts.items, parts.group_ids))[n_dropped:]
    lines = [t.omitted_line.format(n=n_dropped)] if n_dropped else []
    if not kept:
        return "\n".join(lines or [t.empty_history])
    if t.group_title:
        kept = sorted(kept, key=lambda item: item[1])  # stable: chronological within each chapter
    previous = None
    for line, group in kept:
        if t.group_title and group != previous:
            lines.append(t.group_title.format(group=CHAPTERS[group] if 0 <= group < len(CHAPTERS) else "Other"))
        previous = group
        lines.append(line)
    return "\n".join(lines)


def assemble(parts: PromptParts, max_tokens: int | None = None,
             count_tokens: Callable[[str], int] | None = None) -> tuple[str, int]:
    """The prompt and the number of oldest history items dropped to fit ``max_tokens`` (never fewer than
    ``parts.dropped``).

    ``count_tokens`` counts a text's tokens (default: whitespace words). Raises InputError when even the
    header and question without any history exceed the budget.
    """
    def build(n: int) -> str:
        return f"{parts.header}\n{history_text(parts, n)}\n{parts.question}"

    first = min(parts.dropped, len(parts.items))
    if max_tokens is None:
        return build(first), first
    count = count_tokens or whitespace_tokens
    if count(build(first)) <= max_tokens:
        return build(first), first
    n_items = len(parts.items)
    if count(build(n_items)) > max_tokens:
        raise InputError(f"prompt without any history still takes {count(build(n_items))} tokens, over "
                         f"max_tokens={max_tokens}; raise the budget or shorten the template/question")
    lo, hi = first + 1, n_items  # the smallest n that fits lies in [lo, hi]; build(hi) fits
    while lo < hi:
        mid = (lo + hi) // 2
        if count(build(mid)) <= max_tokens:
            hi = mid
        else:
            lo = mid + 1
    return build(lo), lo


PART_COLUMNS = ("header", "items", "group_ids", "question", "template")
"The columns of examples.parquet that hold a prompt's structured parts (contract section 4)."


def prompt_parts(row: dict, where: str = "example") -> PromptParts | str:
    """A row's prompt as parts (checked: they assemble to the stored prompt), or its text when the row has
    no parts (an examples table built by hand), which cannot be shortened."""
    if any(row.get(c) is None for c in PART_COLUMNS):
        return row["prompt"]
    parts = PromptParts.from_row(row, row["template"])
    if assemble(parts)[0] != row["prompt"]:
        raise InputError(f"{where}: the stored prompt differs from its parts under the current "
                         f"{row['template']!r} template (edited since rendering?); render the examples again")
    return parts


def prompt_text(prompt: PromptParts | str) -> str:
    """The prompt as stored, uncut: parts assembled without a budget (only render's drops), or the text itself."""
    return prompt if isinstance(prompt, str) else assemble(prompt)[0]


def fit_prompt(prompt: PromptParts | str, budget: int, count: Callable[[str], int]) -> tuple[str, int]:
    """``prompt`` within ``budget`` tokens as ``count`` counts them, and the number of history items dropped.

    Parts lose their oldest history items (``assemble``); a plain text is kept whole, and over the budget
    it is an error, because without parts its history lines cannot be told apart.

    >>> fit_prompt("Q?\\nAnswer:", 10, len)
    ('Q?\\nAnswer:', 0)
    >>> fit_prompt("Q?\\nAnswer:", 5, len)
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: prompt takes 10 tokens, over the budget of 5, and has no structured parts (header, items, group_ids, question, template) to drop history from; raise the budget or pass examples.parquet written by `render`
    """
    if isinstance(prompt, PromptParts):
        return assemble(prompt, budget, count)
    if count(prompt) > budget:
        raise InputError(f"prompt takes {count(prompt)} tokens, over the budget of {budget}, and has no structured "
                         f"parts ({', '.join(PART_COLUMNS)}) to drop history from; raise the budget or pass "
                         "examples.parquet written by `render`")
    return prompt, 0
