"""Quality of one run's generated rationales: grounding, stated age and sex, factor directions, repetition loops.

The generated texts in ``scores.parquet`` are read by the same checker as the teacher's rationales
(``rationales.check``), against the same facts of each test subject. Per subject: the number of claims
and of grounded claims, whether the age is stated correctly (an age claim is grounded and none is
ungrounded), whether the sex is stated correctly (a sex word for the subject's sex and none for the other
one), how many statements say which way a factor moves the risk and how many of them point the other way
than the knowledge base says for this subject, and whether the text loops. The run's summary feeds the
quality gates of the report (directions are reported, not gated).

>>> rows = pl.DataFrame({"subject_id": [1, 2], "n_claims": [4, 6], "n_grounded": [4, 3],
...                      "age_correct": [True, False], "sex_correct": [True, True], "loops": [False, True],
...                      "n_direction_checked": [3, 1], "n_direction_wrong": [1, 0]})
>>> summarise(rows)
{'gen_grounding_rate': 0.7, 'gen_age_correct_rate': 0.5, 'gen_sex_correct_rate': 1.0, 'gen_loop_rate': 0.5, 'gen_direction_accuracy': 0.75}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.config.render import RenderConfig
from rationale_sft.rationales.check import Lexicon, SubjectView, check_text
from rationale_sft.rationales.facts import Facts

FILE = "generation_quality.parquet"
SCHEMA = {"subject_id": pl.Int64, "n_claims": pl.Int64, "n_grounded": pl.Int64, "n_ungrounded": pl.Int64,
          "n_future": pl.Int64, "age_correct": pl.Boolean, "sex_correct": pl.Boolean, "loops": pl.Boolean,
          "n_words": pl.Int64, "n_direction_checked": pl.Int64, "n_direction_wrong": pl.Int64}
LOOP_MIN_REPEATS = 3
"A block of words written this many times back to back is a loop."
LOOP_MIN_WORDS = 12
"... when the repeated stretch covers at least this many words (so 'very, very, very' is not one)."


def loops(text: str | None, min_repeats: int = LOOP_MIN_REPEATS, min_words: int = LOOP_MIN_WORDS) -> bool:
    """Whether ``text`` contains a repetition loop: a block of k >= 1 words written ``min_repeats`` times back
    to back, the repeated stretch covering >= ``min_words`` words (words compared lower-cased).

    This is how a small model degenerates under greedy decoding: one phrase or sentence over and over, to the
    token limit. A phrase that recurs with different words between (a teacher's "raises risk (modest, relative
    risk about ...)" for each of three factors) is not a loop.

    >>> loops("The record shows hypertension. " * 2), loops("The record shows hypertension. " * 3)
    (False, True)
    >>> loops("Age 74. " + "risk risk " * 6 + "Answer:"), loops(None), loops("")
    (True, False, False)

    A normal teacher rationale (``rationales.knowledge``), in both styles, is not a loop:

    >>> import datetime as dt
    >>> from rationale_sft.rationales.facts import Diagnosis, Measurement
    >>> from rationale_sft.rationales.knowledge import write_rationale
    >>> f = Facts(1, dt.datetime(2009, 6, 15), 74.2, "F",
    ...           (Diagnosis("ICD10//I10", "I10", "Essential (primary) hypertension", dt.datetime(2002, 3, 10), 2653,
    ...                      "7 years before assessment"),
    ...            Diagnosis("ICD10//E11", "E11", "Type 2 diabetes mellitus", dt.datetime(2004, 1, 5), 1988,
    ...                      "5 years before assessment")),
    ...           (Measurement("UKB//LDL", "LDL", "LDL cholesterol", " mmol/L", 4.6),))
    >>> [loops(write_rationale(f, style, "blind", None, 0).text) for style in ("freeform", "stepwise")]
    [False, False]
    """
    words = (text or "").lower().split()
    if len(words) < min_words:
        return False
    ids = np.unique(np.asarray(words), return_inverse=True)[1]
    for k in range(1, len(words) // min_repeats + 1):
        same = np.concatenate([[0], (ids[k:] == ids[:-k]).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(same))  # starts and ends of runs where word i equals word i + k
        runs = edges[1::2] - edges[::2]
        # a run of r matches at lag k spans r + k words, i.e. (r + k) / k copies of the block
        if runs.size and (runs.max() >= (min_repeats - 1) * k) and runs.max() + k >= min_words:
            return True
    return False


def subject_quality(subject_id: int, text: str | None, view: SubjectView, lex: Lexicon) -> dict:
    """One generated text checked against its subject's facts (a missing text states nothing)."""
    claims, directions = check_text(text or "", view, lex)
    status = [c.status for c in claims]
    age = [c.status for c in claims if c.kind == "age"]
    sex = [c.status for c in claims if c.kind == "sex"]
    return {"subject_id": subject_id, "n_claims": len(claims), "n_grounded": status.count("grounded"),
            "n_ungrounded": status.count("ungrounded"), "n_future": status.count("future"),
            "age_correct": "grounded" in age and "ungrounded" not in age,
            "sex_correct": "grounded" in sex and "ungrounded" not in sex,
            "loops": loops(text), "n_words": len((text or "").split()),
            "n_direction_checked": directions["checked"], "n_direction_wrong": directions["wrong"]}


def quality_rows(scores: pl.DataFrame, facts: dict[int, Facts], lex: Lexicon, kb) -> pl.DataFrame:
    """One row per scored subject (``SCHEMA``); a subject without facts is an error naming it."""
    from rationale_sft.errors import InputError

    rows = []
    for sid, text in zip(scores["subject_id"].to_list(), scores["generated_text"].to_list()):
        if sid not in facts:
            raise InputError(f"scores: subject_id {sid} has no labelled record in the cohort; score the test set "
                             "of the cohort the facts are read from")
        rows.append(subject_quality(sid, text, SubjectView(facts[sid], kb), lex))
    return pl.DataFrame(rows, schema=SCHEMA)


def summarise(rows: pl.DataFrame) -> dict:
    """Run-level rates: grounded claims over all claims; shares of subjects with correct age, sex, a loop;
    factor statements pointing the knowledge base's way over those whose direction could be checked."""
    n_claims = int(rows["n_claims"].sum())
    checked = int(rows["n_direction_checked"].sum())
    share = lambda col: float(rows[col].mean()) if rows.height else None  # noqa: E731
    return {"gen_grounding_rate": int(rows["n_grounded"].sum()) / n_claims if n_claims else None,
            "gen_age_correct_rate": share("age_correct"), "gen_sex_correct_rate": share("sex_correct"),
            "gen_loop_rate": share("loops"),
            "gen_direction_accuracy": 1 - int(rows["n_direction_wrong"].sum()) / checked if checked else None}


def generation_quality(scores: pl.DataFrame, meds_dir: str | Path, labels: pl.DataFrame,
                       render_cfg: RenderConfig | None = None) -> pl.DataFrame:
    """Per-subject quality of the generated texts of ``scores`` (facts from ``meds_dir`` at the labels' times)."""
    from rationale_sft.rationales.facts import facts_for_labels
    from rationale_sft.rationales.knowledge import load_knowledge
    from rationale_sft.render.stage import read_codes

    kb = load_knowledge()
    subjects = labels.filter(pl.col("subject_id").is_in(scores["subject_id"].implode()))
    facts = facts_for_labels(meds_dir, subjects, render_cfg, include_later=True)
    return quality_rows(scores, facts, Lexicon.build(read_codes(meds_dir), kb, render_cfg), kb)


__all__ = ["FILE", "loops", "subject_quality", "quality_rows", "summarise", "generation_quality"]
