"""The scoring stage: risk = P(Yes)/(P(Yes)+P(No)) at the answer slot, one row per subject.

Direct arms (label_only, label_then_rationale, multitask) read the slot right after the prompt in one
forward pass. Rationale arms first generate up to the answer marker, then read the slot after it; they
also record the direct score (the slot right after the prompt) and the greedy word at the slot
(``conclusion``). Both slots come from the decoder's own forward passes
(score/decode.py). How a checkpoint is scored (arm, marker, task prefix, chat template, max_len) comes from
its ``training.json``; a plain base model is scored directly with the defaults. With ``score.n_samples``
> 0 a generating arm also samples that many rationales per subject (score/samples.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir
from rationale_sft.answer import ANSWER_MARKER, joiner, prompt_ids, uses_chat, wrap_prompt
from rationale_sft.config.score import ScoreConfig
from rationale_sft.errors import InputError
from rationale_sft.models.tokenizer import slot_label_tokens
from rationale_sft.precision import resolve_bf16
from rationale_sft.seeding import derive_seed
from rationale_sft.score.decode import decode_to_marker
from rationale_sft.score.samples import FILE as SAMPLES_FILE
from rationale_sft.score.samples import SEED_RULE, sample_metrics, sample_rationales, with_sample_risk
from rationale_sft.score.slot import candidate_ids, read_scores, single_token_words, slot_scores
from rationale_sft.render.assemble import PromptParts, fit_prompt, prompt_parts
from rationale_sft.train.loop import META, device_of, read_table

SCORE_SCHEMA = {"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "label": pl.Boolean,
                "p_yes": pl.Float64, "label_mass": pl.Float64, "p_direct": pl.Float64, "conclusion": pl.String,
                "marker_found": pl.Boolean, "generated_text": pl.String, "rationale_conclusion": pl.String,
                "n_prompt_tokens": pl.Int64,
                "n_generated_tokens": pl.Int64, "n_history_dropped": pl.Int64}
SAMPLE_COLUMNS = {"p_yes_k": pl.Float64}
"Added to scores.parquet when rationales were sampled (score.n_samples > 0, generating arms)."


def float_head(model) -> None:
    """Compute the output layer in float32 (in place): bfloat16 logits near 20 step by 0.125, which ties
    P(Yes) across subjects and blurs their ranking."""
    import torch

    head = model.get_output_embeddings()
    weight = head.weight.detach().float()
    bias = None if head.bias is None else head.bias.detach().float()

    class FloatHead(torch.nn.Module):
        def forward(self, hidden):
            return torch.nn.functional.linear(hidden.float(), weight, bias)

    model.set_output_embeddings(FloatHead())


def load_scorer(model_dir, dtype: str, device: str):
    """``(model, tokenizer)`` ready to score on ``device``: weights in ``dtype`` ('float32' or 'bfloat16'; a
    bfloat16 model keeps its output layer in float32), in eval mode."""
    from rationale_sft import models

    model, tok = models.load(model_dir, dtype=dtype)
    if dtype != "float32":
        float_head(model)
    return model.to(device).eval(), tok


def scoring_dtype(requested: str, device: str) -> str:
    """The dtype scoring runs in: bfloat16 when asked for and native on ``device``, else float32 (a warning
    when bfloat16 was asked for and is not native).

    >>> scoring_dtype("float32", "cpu")
    'float32'
    """
    return "bfloat16" if resolve_bf16(requested == "bfloat16", device) else "float32"


AUTO_BATCH = {"cpu": 8, "cuda": 64}
"Batch size of ``score.batch_size: 0`` (auto) per device type; other devices take the cpu value."


def batch_size_for(requested: int, device: str) -> int:
    """Prompts per scoring batch: ``requested``, or for 0 (auto) the device type's ``AUTO_BATCH``.

    >>> batch_size_for(16, "cpu"), batch_size_for(0, "cpu"), batch_size_for(0, "cuda:1")
    (16, 8, 64)
    """
    kind = str(device).split(":")[0]
    return requested or AUTO_BATCH.get(kind, AUTO_BATCH["cpu"])


def model_meta(model_dir, model) -> dict:
    """How to score a model: its checkpoint's training.json, or direct scoring for a base model."""
    path = Path(str(model_dir)) / META
    if path.is_file():
        # a checkpoint trained before the system prompt was a setting left it to the template (None)
        return {"system_prompt": None} | json.loads(path.read_text())
    from rationale_sft.models import context_length

    ctx = context_length(model.config) or 2048
    return {"arm": None, "scoring": "direct", "answer_marker": ANSWER_MARKER, "prefix": "", "chat": None,
            "system_prompt": "", "max_len": int(ctx)}


def marker_text(marker: str) -> str:
    """The answer marker as it appears after a rationale (on its own line).

    >>> marker_text("Answer:")
    '\\nAnswer:'
    """
    return joiner("x", "marker") + marker


def build_contexts(tokenizer, prompts: list[PromptParts | str], *, chat: bool, budget: int, prefix: str = "",
                   system: str | None = "") -> tuple[list[list[int]], list[str], list[int]]:
    """Token ids of each (wrapped, ``prefix``-ed) prompt within ``budget`` tokens, the text each ends with, and
    the history items dropped (``render.assemble.fit_prompt``)."""
    count = lambda p: len(prompt_ids(tokenizer, wrap_prompt(tokenizer, prefix + p, chat, system), chat))  # noqa: E731
    ids, tails, dropped = [], [], []
    for prompt in prompts:
        fitted, n = fit_prompt(prompt, budget, count)
        text = wrap_prompt(tokenizer, prefix + fitted, chat, system)
        ids.append(prompt_ids(tokenizer, text, chat))
        tails.append(text[-16:])
        dropped.append(n)
    return ids, tails, dropped


def score_contexts(model, tokenizer, contexts: list[list[int]], tails: list[str], *, mode: str, marker: str,
                   cfg: ScoreConfig, device: str, stage: str = "score") -> dict:
    """Score prepared contexts: direct slot, and for mode 'generate' the slot after a generated rationale.

    The direct pass reports progress as ``stage``; generation as the decoder does ('generate')."""
    n = len(contexts)
    if mode == "direct":
        direct = slot_scores(model, tokenizer, contexts, tails, batch_size=cfg.batch_size, device=device,
                             states=cfg.save_states, stage=stage)
        return {"p_yes": direct["p_yes"], "label_mass": direct["label_mass"], "p_direct": direct["p_yes"],
                "conclusion": direct["top"], "marker_found": [None] * n, "generated_text": [None] * n,
                "n_generated_tokens": [0] * n, "states": direct["states"]}
    gens, direct, after = generate_and_read(model, tokenizer, contexts, tails, marker=marker, cfg=cfg, device=device)
    return {"p_yes": after["p_yes"], "label_mass": after["label_mass"], "p_direct": direct["p_yes"],
            "conclusion": after["top"], "marker_found": [g.marker_found for g in gens],
            "generated_text": [g.text for g in gens], "n_generated_tokens": [len(g.ids) for g in gens],
            "states": after["states"]}


def generate_and_read(model, tokenizer, contexts: list[list[int]], tails: list[str], *, marker: str,
                      cfg: ScoreConfig, device: str, row_seeds: list[int] | None = None,
                      repeats: int = 1) -> tuple[list, dict, dict]:
    """Rationales up to the marker, and slot scores right after the prompt and right after the marker.

    With single-token label words both slots come from the decoder's own passes (the prefill and the step
    that feeds the marker); otherwise each slot takes a pass of ``slot_scores`` per word. With ``row_seeds``
    every rationale is sampled from its own seed, no hidden states are kept, and without single-token words
    the direct slot is not read (None). ``repeats`` = K writes K rationales per context from one prefill of
    it; results are context-major (context 0's K rows first), ``row_seeds`` one per row in that order.
    """
    n = len(contexts) * repeats
    sampled = row_seeds is not None
    mtext = marker_text(marker)
    marker_ids = list(tokenizer(mtext, add_special_tokens=False)["input_ids"])
    cands = [candidate_ids(tokenizer, t) for t in tails for _ in range(repeats)]
    after_cands = [candidate_ids(tokenizer, marker)] * n
    single = single_token_words(cands + after_cands)
    states = cfg.save_states and not sampled
    read_ids = sorted({w[0] for row in cands + after_cands for w in row}) if single else []
    dec = decode_to_marker(model, tokenizer, contexts, marker=mtext, marker_ids=marker_ids,
                           max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                           greedy=cfg.greedy and not sampled, temperature=cfg.temperature, top_p=cfg.top_p,
                           seed=derive_seed(cfg.seed, "generation"), row_seeds=row_seeds, device=device,
                           slot_ids=read_ids, states=states and single, repeats=repeats)
    if single:
        direct = read_scores(dec.direct.logp, dec.direct.top, read_ids, cands)
        after = {**read_scores(dec.after.logp, dec.after.top, read_ids, after_cands), "states": dec.states}
        return dec.gens, direct, after
    rows = [c for c in contexts for _ in range(repeats)]
    direct = None if sampled else slot_scores(model, tokenizer, rows, [t for t in tails for _ in range(repeats)],
                                              batch_size=cfg.batch_size, device=device)
    after = slot_scores(model, tokenizer, [c + g.ids for c, g in zip(rows, dec.gens)], [marker] * n,
                        batch_size=cfg.batch_size, device=device, states=states)
    return dec.gens, direct, after


def score(cfg: ScoreConfig, run_dir, examples, model_dir) -> dict:
    """Score ``cfg.split`` of ``examples`` with the model in ``model_dir``; write scores/predictions to ``run_dir``.

    A generating arm with ``cfg.n_samples`` > 0 also samples that many rationales per subject
    (score/samples.py): ``samples.parquet``, ``p_yes_k`` in scores.parquet, the AUROC against K in score.json.
    """
    started = time.time()
    run_dir = Path(run_dir)
    rows = select_split(read_table(examples, "examples"), cfg.split)
    device = device_of(cfg.device)
    dtype = scoring_dtype(cfg.dtype, device)
    model, tok = load_scorer(model_dir, dtype, device)
    given, cfg = cfg, replace(cfg, batch_size=batch_size_for(cfg.batch_size, device))
    meta, mode, (contexts, tails, dropped) = scoring_inputs(cfg, model_dir, model, tok, rows)
    t0 = time.perf_counter()
    res = score_contexts(model, tok, contexts, tails, mode=mode, marker=meta["answer_marker"], cfg=cfg, device=device)
    seconds = time.perf_counter() - t0
    table = scores_table(rows, res, contexts, dropped)
    extra, samples = {}, None
    if mode == "generate" and cfg.n_samples:
        t0 = time.perf_counter()
        samples = sample_rationales(model, tok, rows, contexts, tails, marker=meta["answer_marker"], cfg=cfg,
                                    device=device)
        extra = {"sample_seconds": time.perf_counter() - t0, **sample_metrics(table, samples)}
        table = with_sample_risk(table, samples)
    write_scores(run_dir, table, res["states"], samples)
    seeds = {"generation": derive_seed(cfg.seed, "generation")} | ({"samples": SEED_RULE} if extra else {})
    summary = {"config": cfglib.to_dict(given), "mode": mode, "arm": meta["arm"], "dtype": dtype,
               "batch_size": cfg.batch_size, "model": rundir.portable(model_dir, run_dir),
               "label_tokens": slot_label_tokens(tok, chat_of(meta, tok), meta["system_prompt"],
                                                 meta["answer_marker"]),
               "seconds": seconds, "prompt_tokens_per_s": sum(map(len, contexts)) / max(seconds, 1e-9),
               "seeds": seeds, **metrics(table), **extra, "elapsed": time.time() - started}
    rundir.write_json(run_dir / "score.json", summary)
    return summary


def scoring_inputs(cfg: ScoreConfig, model_dir, model, tok, rows: pl.DataFrame) -> tuple[dict, str, tuple]:
    """How ``model_dir`` is scored (its meta and mode) and the contexts of ``rows``: ids, tails, lines dropped."""
    meta = model_meta(model_dir, model)
    mode = meta["scoring"] if cfg.mode == "auto" else cfg.mode
    chat = chat_of(meta, tok)
    budget = (cfg.max_len or int(meta["max_len"])) - (cfg.max_new_tokens + 8 if mode == "generate" else 4)
    prompts = [prompt_parts(r, f"subject_id {r['subject_id']}") for r in rows.iter_rows(named=True)]
    return meta, mode, build_contexts(tok, prompts, chat=chat, budget=budget, prefix=meta["prefix"],
                                      system=meta["system_prompt"])


def chat_of(meta: dict, tok) -> bool:
    """Whether prompts are wrapped in the chat template: as the checkpoint was trained, else when it has one."""
    return uses_chat(tok, "auto") if meta["chat"] is None else bool(meta["chat"])


def select_split(examples: pl.DataFrame, split: str) -> pl.DataFrame:
    """The rows of one split, sorted by subject; errors name the split values present."""
    need = {"subject_id", "prediction_time", "split", "label", "prompt"}
    if need - set(examples.columns):
        raise InputError(f"examples: missing columns {sorted(need - set(examples.columns))}; "
                         "pass examples.parquet written by `render`")
    rows = examples.filter(pl.col("split") == split).sort("subject_id")
    if rows.is_empty():
        raise InputError(f"examples: no rows with split == {split!r}; present: "
                         f"{sorted(examples['split'].unique().to_list())}; set score.split")
    return rows


def scores_table(rows: pl.DataFrame, res: dict, contexts: list[list[int]], dropped: list[int]) -> pl.DataFrame:
    """scores.parquet (contract section 7) from the rows and their scoring results."""
    return pl.DataFrame({
        "subject_id": rows["subject_id"], "prediction_time": rows["prediction_time"], "label": rows["label"],
        "p_yes": np.asarray(res["p_yes"], float), "label_mass": np.asarray(res["label_mass"], float),
        "p_direct": np.asarray(res["p_direct"], float), "conclusion": res["conclusion"],
        "marker_found": res["marker_found"], "generated_text": res["generated_text"],
        "rationale_conclusion": [text_conclusion(t) for t in res["generated_text"]],
        "n_prompt_tokens": [len(c) for c in contexts], "n_generated_tokens": res["n_generated_tokens"],
        "n_history_dropped": dropped,
    }, schema_overrides=SCORE_SCHEMA)


def text_conclusion(text: str | None) -> str | None:
    """The conclusion a generated rationale states ("Conclusion: likely" -> "Yes"), or None without one.

    >>> text_conclusion("Age 74, APOE e4.\\nConclusion: likely"), text_conclusion("no verdict"), text_conclusion(None)
    ('Yes', None, None)
    """
    from rationale_sft.rationales.specs import parse_reply

    if not text:
        return None
    try:
        return parse_reply(text, "freeform", "blind").conclusion
    except InputError:
        return None


def write_scores(run_dir: Path, table: pl.DataFrame, states, samples: pl.DataFrame | None = None) -> None:
    """scores.parquet, predictions.parquet (meds-evaluation schema) and, if present, answer states and samples."""
    rundir.write_parquet(table, run_dir / "scores.parquet")
    if samples is not None:
        rundir.write_parquet(samples, run_dir / SAMPLES_FILE)
    else:  # a re-score without samples must not leave an earlier run's samples beside the new scores
        (run_dir / SAMPLES_FILE).unlink(missing_ok=True)
    preds = table.select("subject_id", "prediction_time", pl.col("label").alias("boolean_value"),
                         (pl.col("p_yes") >= 0.5).alias("predicted_boolean_value"),
                         pl.col("p_yes").alias("predicted_boolean_probability"))
    rundir.write_parquet(preds, run_dir / "predictions.parquet")
    if states is not None:
        rundir.write_bytes(run_dir / "answer_states.npy", _npy(np.asarray(states, np.float32)))
        rundir.write_bytes(run_dir / "answer_states_subjects.npy", _npy(table["subject_id"].to_numpy()))


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def metrics(table: pl.DataFrame) -> dict:
    """Headline numbers of a scores table (recomputable from it): n, AUROC of p_yes and p_direct, rates."""
    from rationale_sft.stats.metrics import auroc

    y = table["label"].to_numpy().astype(int)
    both = 0 < y.sum() < len(y)
    found = table["marker_found"].drop_nulls()
    concl = table["conclusion"]
    return {"n": table.height, "n_pos": int(y.sum()),
            "auroc": auroc(y, table["p_yes"].to_numpy()) if both else None,
            "auroc_direct": auroc(y, table["p_direct"].to_numpy()) if both else None,
            "marker_found_rate": float(found.mean()) if len(found) else None,
            "conclusion_yes_rate": float((concl == "Yes").sum() / max(concl.drop_nulls().len(), 1))}
