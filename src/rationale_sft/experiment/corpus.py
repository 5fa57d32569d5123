"""The pretraining corpus of from-scratch bases: other people's histories with label-free rationales.

The subjects come from a second synthetic cohort drawn with another seed, so no pretraining text
belongs to any task split. Each ``base`` text is one subject's prompt, rendered with the task's template
exactly as the fine-tuning prompts are (answer marker included), followed by the knowledge teacher's
label-blind rationale about that subject in one of the grid's rationale styles: a from-scratch base
learns to read a history and to write a grounded rationale about it, as a real LLM already can, but
never sees an outcome. A blind rationale concludes from the teacher's textbook points model, not from
the label. ``reasoning`` texts (history + blind step-by-step reasoning) feed the reasoning-oriented base.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir

STYLES = ("freeform", "stepwise")


def build_corpus(out_dir: Path, synth: dict, task: dict, render: dict, seed: int, teacher: dict | None = None) -> dict:
    """Write ``corpus.parquet`` (kind: base | reasoning, text) into ``out_dir``; return counts.

    ``teacher`` (a ``TeacherConfig`` dict) sets the rationale styles and ``max_factors`` of the base texts,
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
    base = rationale_texts(facts, ids, prompts, styles, seed, teacher_cfg.max_factors, joined=" ")
    reasoning = rationale_texts(facts, ids, prompts, ["stepwise"], seed, None, joined="\n")
    table = pl.DataFrame({"kind": ["base"] * (len(base) + 1) + ["reasoning"] * len(reasoning),
                          "text": base + [knowledge_text()] + reasoning})
    rundir.write_parquet(table, out_dir / "corpus.parquet")
    return {"n_subjects": labels.height, "n_texts": table.height, "styles": styles}


def rationale_texts(facts: dict, ids: list[int], prompts: list[str], styles: list[str], seed: int,
                    max_factors: int | None, joined: str) -> list[str]:
    """One text per subject (``ids``, in the order of ``prompts``; ``facts`` by subject id) and style: the
    prompt, then the knowledge teacher's label-blind rationale.

    ``joined=" "`` keeps the prompt's answer marker and continues after it, as a rationale arm's target
    does; ``joined="\\n"`` drops the marker (plain reasoning text).
    """
    from rationale_sft.rationales.knowledge import load_knowledge, write_rationale
    from rationale_sft.rationales.specs import strip_answer_slot

    kb = load_knowledge()
    out = []
    for sid, prompt in zip(ids, prompts):
        head = prompt if joined == " " else strip_answer_slot(prompt)
        for style in styles:
            text = write_rationale(facts[sid], style, "blind", None, seed, kb, max_factors=max_factors).text
            out.append(f"{head}{joined}{text}")
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
