"""The few-shot stage: an untrained model sees k solved training examples, then the subject; scored as SFT is.

A demonstration is a training prompt followed by its label (``" Yes"``), or by its teacher rationale, the
answer marker and the label. With a chat template each demonstration is a user turn and an assistant
turn; without one they are joined by blank lines. Prompts that do not fit the token budget lose their
least relevant demonstrations first, then the query's oldest history lines; both are recorded per subject
in ``fewshot_demos.parquet``. With ``subset`` set, only a fixed, label-stratified draw of the test subjects
is scored (the same for every few-shot run); ``fewshot.json`` lists it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir
from rationale_sft.answer import joiner, label_word, prompt_ids, system_turn, uses_chat
from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.score import ScoreConfig
from rationale_sft.errors import InputError
from rationale_sft.fewshot.select import check_disjoint, draw_subset, select_demos
from rationale_sft.render.assemble import PromptParts, fit_prompt, prompt_parts, prompt_text
from rationale_sft.score.stage import (batch_size_for, load_scorer, metrics, model_meta, score_contexts, scores_table,
                                    scoring_dtype, select_split, write_scores)
from rationale_sft.train.loop import device_of, pick_rationales, read_table


def answer_text(label: bool, rationale: str | None, marker: str, after: str) -> str:
    """A demonstration's answer as it follows ``after`` (the prompt or the assistant header).

    >>> answer_text(True, None, "Answer:", "...\\nAnswer:")
    ' Yes'
    >>> answer_text(False, "Young, no risk factors.", "Answer:", "assistant\\n")
    'Young, no risk factors.\\nAnswer: No'
    """
    word = label_word(label)
    if rationale is None:
        return joiner(after, "label") + word
    return joiner(after, "rationale") + rationale + joiner(rationale, "marker") + marker + " " + word


def render_fewshot(tokenizer, demos: list[tuple[str, str | None, bool]], query: str, *, chat: bool, marker: str,
                   system: str | None = "") -> str:
    """The full few-shot text up to the query's answer slot; demos are (prompt, rationale or None, label).

    ``system`` is the chat system prompt (``answer.system_turn``): '' adds none (a template's default, such as
    SmolLM2's "You are a helpful AI assistant named SmolLM, ...", is not added silently); None leaves the
    template's choice.
    """
    if not chat:
        blocks = [p + answer_text(lab, rat, marker, p) for p, rat, lab in demos]
        return "\n\n".join(blocks + [query])
    messages = system_turn(tokenizer, system)
    for p, rat, lab in demos:
        messages += [{"role": "user", "content": p},
                     {"role": "assistant", "content": answer_text(lab, rat, marker, "\n")}]
    messages.append({"role": "user", "content": query})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def fit_fewshot(tokenizer, demos, query: PromptParts | str, *, chat: bool, marker: str, budget: int,
                system: str | None = "") -> tuple[str, int, int]:
    """(text, demonstrations kept, query history items dropped) within ``budget`` tokens: demonstrations go
    first, least relevant first, then the query's oldest history (``render.assemble.fit_prompt``)."""
    def render(d, q):
        return render_fewshot(tokenizer, d, q, chat=chat, marker=marker, system=system)

    count = lambda text: len(prompt_ids(tokenizer, text, chat))  # noqa: E731
    demos = list(demos)
    whole = prompt_text(query)
    while demos and count(render(demos, whole)) > budget:
        demos = demos[1:]  # least relevant first
    fitted, dropped = fit_prompt(query, budget, lambda q: count(render(demos, q)))
    return render(demos, fitted), len(demos), dropped


def fewshot(cfg: FewshotConfig, run_dir, examples, rationales, model_dir, score_cfg: ScoreConfig | None = None) -> dict:
    """Score ``score_cfg.split`` subjects (or their fixed subset) with k demonstrations from ``cfg.pool_split``."""
    started = time.time()
    score_cfg = score_cfg or ScoreConfig()
    run_dir = Path(run_dir)
    table = read_table(examples, "examples")
    test = select_split(table, score_cfg.split)
    queries = draw_subset(test, cfg.subset, cfg.subset_seed)
    pool = table.filter(pl.col("split") == cfg.pool_split).sort("subject_id")
    if pool.is_empty() and cfg.k:
        raise InputError(f"examples: no rows with split == {cfg.pool_split!r} to draw demonstrations from")
    check_disjoint(pool, test)
    if cfg.with_rationales:
        rats = pick_rationales(None if rationales is None else read_table(rationales, "rationales"),
                               cfg.rationale_style, cfg.rationale_mode)
        pool = pool.join(rats, on="subject_id", how="inner")
    picks = select_demos(pool, queries, k=cfg.k, selection=cfg.selection, seed=cfg.seed, embedder=cfg.embedder)
    device = device_of(score_cfg.device)
    dtype = scoring_dtype(cfg.dtype, device)
    model, tok = load_scorer(model_dir, dtype, device)
    batch_size = batch_size_for(score_cfg.batch_size, device)
    chat = uses_chat(tok, "auto")
    mode = "generate" if cfg.with_rationales else "direct"
    budget = (cfg.max_len or int(model_meta(model_dir, model)["max_len"])) - (
        score_cfg.max_new_tokens + 8 if mode == "generate" else 4)
    contexts, tails, kept, dropped = [], [], [], []
    for row, idx in zip(queries.iter_rows(named=True), picks):
        query = prompt_parts(row, f"subject_id {row['subject_id']}")
        demos = [(pool["prompt"][i], pool["rationale"][i] if cfg.with_rationales else None, pool["label"][i])
                 for i in idx]
        text, n_kept, n_drop = fit_fewshot(tok, demos, query, chat=chat, marker=cfg.answer_marker, budget=budget,
                                           system=cfg.system_prompt)
        contexts.append(prompt_ids(tok, text, chat))
        tails.append(text[-16:])
        kept.append(idx[len(idx) - n_kept:])
        dropped.append(n_drop)
    t0 = time.perf_counter()
    res = score_contexts(model, tok, contexts, tails, mode=mode, marker=cfg.answer_marker,
                         cfg=replace(score_cfg, batch_size=batch_size), device=device, stage="fewshot")
    seconds = time.perf_counter() - t0
    scores = scores_table(queries, res, contexts, dropped)
    write_scores(run_dir, scores, res["states"])
    demo_ids = pool["subject_id"].to_list()
    rundir.write_parquet(pl.DataFrame({
        "subject_id": queries["subject_id"], "demo_subject_ids": [[demo_ids[i] for i in ix] for ix in kept],
        "n_demos_selected": [len(ix) for ix in picks], "n_demos_used": [len(ix) for ix in kept],
        "n_history_dropped": dropped}, schema_overrides={"demo_subject_ids": pl.List(pl.Int64)}),
        run_dir / "fewshot_demos.parquet")
    subset = {"n": queries.height, "n_pos": int(queries["label"].sum()), "of": test.height,
              "of_pos": int(test["label"].sum()), "seed": cfg.subset_seed,
              "subject_ids": queries["subject_id"].to_list()}
    summary = {"config": cfglib.to_dict(cfg), "score": cfglib.to_dict(score_cfg), "mode": mode, "chat": chat,
               "dtype": dtype, "batch_size": batch_size,
               "model": rundir.portable(model_dir, run_dir), "mean_demos_used": sum(map(len, kept)) / max(len(kept), 1),
               "subset": subset, **metrics(scores), "mean_label_mass": float(scores["label_mass"].mean()),
               "mean_prompt_tokens": float(scores["n_prompt_tokens"].mean()), "seconds": seconds,
               "seconds_per_subject": seconds / max(queries.height, 1), "elapsed": time.time() - started}
    rundir.write_json(run_dir / "fewshot.json", summary)
    return summary
