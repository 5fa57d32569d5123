"""The pretraining corpus of from-scratch bases: other people's histories with label-free rationales.

The subjects come from a second synthetic cohort drawn with another seed, so no pretraining text
belongs to any task split. Each ``base`` text is one subject's prompt, rendered with the task's template
exactly as the fine-tuning prompts are (answer marker included), followed by the knowledge teacher's
label-blind rationale about that subject in one of the grid's rationale styles, then the answer marker
and the answer word of the rationale's own conclusion (" Yes" for likely, " No" for unlikely), exactly as
a rationale arm's target ends: a from-scratch base learns to read a history, to write a grounded rationale
about it and to answer after it, as a real LLM already can, but never sees an outcome. A blind rationale
concludes from the teacher's textbook points model, not from the label. ``reasoning`` texts (history + blind step-by-step reasoning) feed the reasoning-oriented base.
``short`` texts are the same people twice more: with nothing recorded but sex and age, and with their
measurements but no diagnosis; each is the prompt such a record gets and the teacher's blind rationale for it.
They teach, where the signal is dense, what the long texts bury: reading sex, age and the cited values off
the prompt (``pretrain.short_steps``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir

STYLES = ("freeform", "stepwise")
CORPUS_VERSION = 4
"""Bumped when the texts build_corpus writes change (2: short texts, 3: short texts with measurements too, 4: the
answer after each rationale), so a grid never reuses an older corpus."""


def build_corpus(out_dir: Path, synth: dict, task: dict, render: dict, seed: int, teacher: dict | None = None) -> dict:
    """Write ``corpus.parquet`` (kind: base | reasoning | short, text) into ``out_dir``; return counts.

    ``teacher`` (a ``TeacherConfig`` dict) sets the rationale styles, ``max_factors`` and ``cite`` of the base texts,
    so the base writes rationales shaped like the ones the rationale arms fine-tune on.
    """
    from rationale_sft.cohort.extract import extract_labels
    from rationale_sft.cohort.synth import synthesize
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.config.synth import SynthConfig
    from rationale_sft.config.task import TaskConfig
    from rationale_sft.config.teacher import TeacherConfig
    from rationale_sft.rationales.facts import facts_for_labels
    from rationale_sft.render.stage import render_examples

    meds = out_dir / "cohort"
    synth_cfg = cfglib.build(SynthConfig, synth)
    rundir.run_stage(meds, lambda d: synthesize(synth_cfg, d), cfg=synth_cfg)
    labels, _ = extract_labels(cfglib.build(TaskConfig, task), meds)
    render_cfg = cfglib.build(RenderConfig, render)
    teacher_cfg = cfglib.build(TeacherConfig, teacher or {})
    prompts = render_examples(meds, labels, render_cfg)["prompt"].to_list()
    styles = [s for s in teacher_cfg.styles if s in STYLES] or list(STYLES)
    facts = facts_for_labels(meds, labels, render_cfg)  # read once, shared by both corpora
    ids = labels["subject_id"].to_list()
    base = rationale_texts(facts, ids, prompts, styles, seed, teacher_cfg.max_factors, joined=" ", cite=teacher_cfg.cite)
    reasoning = rationale_texts(facts, ids, prompts, ["stepwise"], seed, None, joined="\n", cite=teacher_cfg.cite)
    bare = {sid: dataclasses.replace(f, diagnoses=(), measurements=()) for sid, f in facts.items()}
    measured = {sid: dataclasses.replace(f, diagnoses=()) for sid, f in facts.items()}
    short = rationale_texts(bare, ids, bare_prompts(labels, render_cfg), styles, seed, teacher_cfg.max_factors,
                            joined=" ", cite=teacher_cfg.cite) \
        + rationale_texts(measured, ids, measured_prompts(meds, labels, render_cfg), styles, seed,
                          teacher_cfg.max_factors, joined=" ", cite=teacher_cfg.cite)
    kinds = ["base"] * (len(base) + 1) + ["reasoning"] * len(reasoning) + ["short"] * len(short)
    table = pl.DataFrame({"kind": kinds, "text": base + [knowledge_text()] + reasoning + short})
    rundir.write_parquet(table, out_dir / "corpus.parquet")
    return {"n_subjects": labels.height, "n_texts": table.height, "styles": styles}


def measured_prompts(meds: Path, labels: pl.DataFrame, render_cfg) -> list[str]:
    """Per label row, the prompt its subject would get with its measurements but no diagnosis recorded: the
    renderer's own output for the record without its diagnosis events."""
    from rationale_sft.cohort.meds_io import scan_events
    from rationale_sft.render.stage import read_codes, render_parts

    events = scan_events(meds).filter(
        ~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in render_cfg.diagnosis_prefixes]))
    return render_parts(events, read_codes(meds), labels, render_cfg)["prompt"].to_list()


def bare_prompts(labels: pl.DataFrame, render_cfg) -> list[str]:
    """Per label row, the prompt its subject would get with no measurement and no diagnosis recorded: the
    renderer's own output for a record without events.

    >>> import datetime as dt
    >>> from rationale_sft.config.render import RenderConfig
    >>> labels = pl.DataFrame({"subject_id": [1], "prediction_time": [dt.datetime(2009, 6, 15)], "age": [74.6],
    ...                        "sex": ["F"]})
    >>> print(bare_prompts(labels, RenderConfig(template="recap"))[0])
    Health history recorded up to the assessment on 2009-06-15.
    Sex: female
    Age at assessment: 74 years
    Diagnoses before the assessment (first occurrence, oldest first):
    - none recorded
    About: female, 74 years old at the assessment.
    Question: Will this person be diagnosed with Alzheimer's disease or a related dementia within 5 years? Answer Yes or No.
    Answer:
    """
    from rationale_sft.render.stage import render_parts

    no_events = pl.LazyFrame(schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                     "numeric_value": pl.Float32})
    no_codes = pl.DataFrame(schema={"code": pl.String, "description": pl.String})
    return render_parts(no_events, no_codes, labels, render_cfg)["prompt"].to_list()


def rationale_texts(facts: dict, ids: list[int], prompts: list[str], styles: list[str], seed: int,
                    max_factors: int | None, joined: str, cite: str = "varied") -> list[str]:
    """One text per subject (``ids``, in the order of ``prompts``; ``facts`` by subject id) and style: the
    prompt, then the knowledge teacher's label-blind rationale.

    ``joined=" "`` keeps the prompt's answer marker and continues after it, as a rationale arm's target
    does, and ends as that target ends: the answer marker on a new line and the answer word of the rationale's
    own (label-blind) conclusion. ``joined="\\n"`` drops the marker (plain reasoning text, no answer).
    """
    from rationale_sft.config.train import TrainConfig
    from rationale_sft.rationales.knowledge import load_knowledge, write_rationale
    from rationale_sft.rationales.specs import strip_answer_slot
    from rationale_sft.train.arms import render_tasks
    from rationale_sft.train.data import segment_texts

    kb = load_knowledge()
    out = []
    for sid, prompt in zip(ids, prompts):
        head = prompt if joined == " " else strip_answer_slot(prompt)
        for style in styles:
            written = write_rationale(facts[sid], style, "blind", None, seed, kb, max_factors=max_factors,
                                      cite=cite)
            if joined == " ":  # the style's own arm renders the target: rationale, answer marker, label word
                task = render_tasks(TrainConfig(arm=style), head, written.conclusion == "Yes", written.text)[0]
                out.append(head + "".join(piece for _, piece in segment_texts(head, task.segments)))
            else:
                out.append(f"{head}{joined}{written.text}")
    return out


def knowledge_text() -> str:
    """The knowledge base as plain sentences: every factor's direction, strength, mechanism and source."""
    from rationale_sft.rationales.knowledge import load_knowledge

    kb = load_knowledge()
    lines = []
    for f in kb.factors:
        verb = "raises" if f.direction == "raises" else "lowers"
        lines.append(f"{f.label} {verb} the risk of dementia ({f.strength}; relative risk about "
                     f"{f.relative_risk:g}). {f.mechanism} Source: {kb.sources.get(f.source, f.source).strip()}")
    return "\n".join(lines)
