"""Teacher backend ``knowledge``: the offline rule-based writer, fed with each subject's facts from MEDS.

Facts are read once for all pending subjects (``facts.facts_for_labels``); the writer is deterministic
for (seed, subject, style, mode), so this backend needs no retries and runs at thousands of items a second.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.generate import Emit, Item, Outcome, parse_item_reply


def run(cfg: TeacherConfig, items: list[Item], emit: Emit, meds: str | Path | None = None, **_: object) -> dict:
    """Write every item's rationale from its subject's facts."""
    from rationale_sft.rationales.facts import facts_for_labels
    from rationale_sft.rationales.knowledge import load_knowledge, write_rationale

    if meds is None:
        raise InputError("the knowledge backend reads each subject's facts from the MEDS dataset; pass --meds DIR "
                         "(the dataset examples.parquet was rendered from)")
    times = pl.DataFrame({"subject_id": [i.subject_id for i in items],
                          "prediction_time": [i.prediction_time for i in items]},
                         schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")}).unique("subject_id")
    facts = facts_for_labels(meds, times)
    kb = load_knowledge()
    for item in items:
        emit(_one(item, facts.get(item.subject_id), cfg, kb, write_rationale))
    return {"subjects": times.height}


def _one(item: Item, facts, cfg: TeacherConfig, kb, write) -> Outcome:
    if facts is None:
        return Outcome(item, None, None, f"subject {item.subject_id} has no events in the MEDS dataset")
    try:
        parsed = write(facts, item.style, item.mode, item.teacher_label, seed=cfg.seed, kb=kb,
                       max_factors=cfg.max_factors, cite=cfg.cite)
        return Outcome(item, parse_item_reply(item, parsed.text + _risk_line(parsed)), parsed.text)
    except InputError as exc:
        return Outcome(item, None, None, str(exc))


def _risk_line(parsed) -> str:
    return "" if parsed.teacher_risk is None else f"\nRisk: {parsed.teacher_risk}"
