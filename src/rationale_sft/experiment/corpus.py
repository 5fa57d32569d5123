"""The pretraining corpus of from-scratch bases: histories of other people, textbook knowledge, reasoning.

The subjects come from a second synthetic cohort drawn with another seed, so no pretraining text
belongs to any task split. Histories are rendered with the task's template, without the answer slot,
so the base learns to read histories but never sees an answer. The reasoning texts are the knowledge
teacher's label-blind step-by-step reasoning (its own textbook estimate, not an outcome).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir


def build_corpus(out_dir: Path, synth: dict, task: dict, render: dict, seed: int) -> dict:
    """Write ``corpus.parquet`` (kind: base | reasoning, text) into ``out_dir``; return counts."""
    from rationale_sft.cohort.extract import extract_labels
    from rationale_sft.cohort.synth import synthesize
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.config.synth import SynthConfig
    from rationale_sft.config.task import TaskConfig
    from rationale_sft.render.stage import render_examples
    from rationale_sft.rationales.specs import strip_answer_slot

    meds = out_dir / "cohort"
    synth_cfg = cfglib.build(SynthConfig, synth)
    rundir.run_stage(meds, lambda d: synthesize(synth_cfg, d), cfg=synth_cfg)
    labels, _ = extract_labels(cfglib.build(TaskConfig, task), meds)
    render_cfg = cfglib.build(RenderConfig, render)
    examples = render_examples(meds, labels, render_cfg)
    histories = [strip_answer_slot(p) for p in examples["prompt"].to_list()]
    reasoning = reasoning_texts(meds, labels, render_cfg, histories, seed)
    table = pl.DataFrame({"kind": ["base"] * (len(histories) + 1) + ["reasoning"] * len(reasoning),
                          "text": histories + [knowledge_text()] + reasoning})
    rundir.write_parquet(table, out_dir / "corpus.parquet")
    return {"n_subjects": labels.height, "n_texts": table.height}


def reasoning_texts(meds: Path, labels: pl.DataFrame, render_cfg, histories: list[str], seed: int) -> list[str]:
    """History followed by the knowledge teacher's blind step-by-step reasoning, one text per subject."""
    from rationale_sft.rationales.facts import facts_for_labels
    from rationale_sft.rationales.knowledge import load_knowledge, write_rationale

    kb = load_knowledge()
    facts = facts_for_labels(meds, labels, render_cfg)
    ids = labels["subject_id"].to_list()
    return [f"{h}\n{write_rationale(facts[sid], 'stepwise', 'blind', None, seed, kb).text}"
            for sid, h in zip(ids, histories)]


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
