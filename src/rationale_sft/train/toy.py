"""Toy inputs in the contract shapes (examples.parquet, rationales.parquet) and a tiny model, for tests and benchmarks.

The toy prompts follow the render template (dated history lines, the question, the answer marker) and carry
their structured parts as ``render`` stores them (chronological template); the
label depends on age, APOE e4 and two diagnoses through a logistic model, so a model can learn it.

>>> ex, rat = toy_data(n=20, seed=1)
>>> ex.columns[:5], ex["prompt"][0].endswith("\\nAnswer:"), sorted(set(rat["style"]))
(['subject_id', 'prediction_time', 'split', 'label', 'template'], True, ['freeform', 'stepwise'])
>>> flip = toy_data(n=20, seed=1, modes=("flipped",))[1].join(ex.select("subject_id", "label"), on="subject_id")
>>> bool(((flip["conclusion"] == "Yes") != flip["label"]).all())
True
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.answer import PROMPT_END
from rationale_sft.render.vocab import icd_chapter
from rationale_sft.rundir import hash_text
from rationale_sft.seeding import rng

RISK_DX = {"F32": "Depressive episode", "E11": "Type 2 diabetes mellitus"}
OTHER_DX = {"I10": "Essential hypertension", "J45": "Asthma", "M17": "Gonarthrosis", "K21": "Reflux",
            "H25": "Senile cataract", "N39": "Urinary tract disorder"}
QUESTION = "Question: Will this person be diagnosed with dementia within the next 5 years?"


def _subject(r: np.random.Generator, sid: int) -> dict:
    age = int(r.integers(50, 80))
    apoe = int(r.choice([0, 0, 0, 1, 1, 2]))
    pool = {**RISK_DX, **OTHER_DX}
    codes = list(r.choice(sorted(pool), size=int(r.integers(0, 7)), replace=False))
    logit = -3.2 + 0.12 * (age - 65) + 1.1 * apoe + sum(0.9 for c in codes if c in RISK_DX)
    label = bool(r.random() < 1 / (1 + np.exp(-logit)))
    years = sorted((int(r.integers(1, 20)) for _ in codes), reverse=True)
    return {"sid": sid, "age": age, "apoe": apoe, "dx": [(y, pool[c], c) for y, c in zip(years, codes)],
            "label": label, "sex": str(r.choice(["F", "M"])), "logit": logit}


def _parts(s: dict, when: dt.date) -> dict:
    """The prompt's structured parts (as ``render`` stores them, chronological template) and the prompt."""
    header = "\n".join([f"Health history recorded up to the assessment on {when.isoformat()}.",
                        f"Sex: {s['sex']}", f"Age at assessment: {s['age']} years",
                        "Measurements at the assessment visit:", f"- APOE e4 alleles: {s['apoe']}",
                        "Diagnoses before the assessment (first occurrence, oldest first):"])
    items = [f"- {when.year - y}-{(s['sid'] % 12) + 1:02d} ({y} years before assessment): {name}"
             for y, name, _ in s["dx"]]
    question = QUESTION + PROMPT_END
    history = "\n".join(items) or "- none recorded"
    return {"header": header, "items": items, "group_ids": [icd_chapter(c) for _, _, c in s["dx"]],
            "question": question, "prompt": f"{header}\n{history}\n{question}"}


def _rationales(s: dict, high: bool) -> tuple[str, str]:
    risk = [name for _, name, c in s["dx"] if c in RISK_DX]
    factors = [f"age {s['age']}", f"{s['apoe']} APOE e4 alleles"] + [n.lower() for n in risk]
    verdict = "high" if high else "low"
    free = (f"The main factors are {', '.join(factors)}. Taken together the five-year risk of dementia "
            f"looks {verdict}.")
    steps = [f"Step {i + 1}: {f} {'raises' if i and f != '0 APOE e4 alleles' else 'shapes'} the risk."
             for i, f in enumerate(factors)]
    steps.append(f"Step {len(steps) + 1}: overall the risk is {verdict}.")
    return free, " ".join(steps)


def _verdict(s: dict, mode: str) -> bool:
    """The conclusion a toy rationale states: the label (conditioned), its opposite (flipped), the logit (blind)."""
    return {"conditioned": s["label"], "flipped": not s["label"], "blind": s["logit"] >= 0}[mode]


def toy_data(n: int = 200, seed: int = 0, held_out: float = 0.3,
             modes: tuple[str, ...] = ("conditioned",)) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(examples, rationales)`` for ``n`` toy subjects in the contract shapes (rationales in ``modes``)."""
    r = rng(seed, "toy_cohort")
    subjects = [_subject(r, 1000 + i) for i in range(n)]
    when = dt.date(2010, 6, 1)
    split = np.where(rng(seed, "toy_split").random(n) < held_out, "held_out", "train")
    parts = [_parts(s, when) for s in subjects]
    prompts = [p["prompt"] for p in parts]
    examples = pl.DataFrame({
        "subject_id": [s["sid"] for s in subjects],
        "prediction_time": [dt.datetime(2010, 6, 1, 23, 59, 59)] * n,
        "split": split.tolist(), "label": [s["label"] for s in subjects],
        "template": ["chronological"] * n, "template_version": ["1"] * n, "prompt": prompts,
        "prompt_hash": [hash_text(p) for p in prompts], "n_history_items": [len(s["dx"]) for s in subjects],
        "n_history_dropped": [0] * n, "truncated": [False] * n,
        **{k: [p[k] for p in parts] for k in ("header", "items", "group_ids", "question")},
    }, schema_overrides={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                         "items": pl.List(pl.String), "group_ids": pl.List(pl.Int64)})
    rows = []
    for mode in modes:
        for s in subjects:
            high = _verdict(s, mode)
            for style, text in zip(("freeform", "stepwise"), _rationales(s, high)):
                rows.append({"subject_id": s["sid"], "style": style, "mode": mode, "backend": "toy",
                             "model": "toy", "spec_version": "1", "text": text, "conclusion": "Yes" if high else "No",
                             "teacher_risk": None, "cache_key": hash_text(f"{s['sid']}{style}{text}")})
    rats = pl.DataFrame(rows, schema_overrides={"subject_id": pl.Int64, "teacher_risk": pl.Float64})
    return examples, rats


def toy_model(out_dir: str | Path, texts: list[str], family: str = "llama", size: str = "xs",
              vocab_size: int = 600, seed: int = 0) -> Path:
    """A randomly initialised tiny model with a BPE tokenizer trained on ``texts``, saved to ``out_dir``."""
    from rationale_sft.models.families import build_model
    from rationale_sft.models.tokenizer import train_tokenizer

    out_dir = Path(out_dir)
    tok = train_tokenizer(texts, vocab_size)
    model = build_model(family, size, tok, seed)
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return out_dir
