"""``validate``: check a train/score job before any compute, reporting every problem at once; loads no weights.

It resolves the config, opens the model directory's config and tokenizer (never its weights), renders
every training example's target for the arm and checks lengths, masks and label tokens; LoRA target
modules are checked against a weightless (meta-device) instance of the architecture.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.answer import LABEL_WORDS, uses_chat, wrap_prompt
from rationale_sft.config.train import JobConfig
from rationale_sft.errors import InputError
from rationale_sft.render.assemble import prompt_parts
from rationale_sft.train import arms
from rationale_sft.train.data import encode
from rationale_sft.train.loop import check_mask, read_table, training_rows, with_max_len

MAX_LISTED = 10
"Problems of one kind listed by example before the rest are summarised as a count."
TRUNCATED_WARN = 0.05
"Warn when more than this share of the training sequences lose history lines to fit train.max_len."


def validate(job: JobConfig) -> dict:
    """A report: ``problems`` (each would stop a run), ``warnings``, and counts of what was rendered."""
    problems: list[str] = []
    warnings: list[str] = []
    path = _model_dir(job.model, problems)
    model_cfg = model_config(path, problems) if path else None
    tok = tokenizer(path, problems) if path else None
    if tok is not None:
        check_label_tokens(tok, job, problems, warnings)
    if model_cfg is not None:
        job = dataclasses.replace(job, train=with_max_len(job.train, model_cfg))
        check_context(model_cfg, job, problems)
        if job.train.lora.enabled:
            check_lora_targets(model_cfg, job, problems)
    report = {"problems": problems, "warnings": warnings}
    examples = _read(job.examples, "examples", problems)
    rationales = _read(job.rationales, "rationales", problems) if job.rationales else None
    if rationales is not None:
        _rationale_text(rationales, job, problems)
    if examples is not None and tok is not None:
        report.update(_render_all(job, examples, rationales, tok, problems, warnings))
    elif examples is not None:
        try:
            training_rows(job.train, examples, rationales)
        except InputError as exc:
            problems.append(str(exc))
    return report


def _model_dir(name: str, problems: list[str]) -> Path | None:
    from rationale_sft.models import hub

    if not name:
        problems.append("model: not set; pass model=DIR (a save_pretrained dir) or an alias such as "
                        f"{hub.SMOLLM2}")
        return None
    try:
        return hub.resolve(name)
    except InputError as exc:
        problems.append(f"model: {exc}")
        return None


def model_config(path: Path, problems: list[str]):
    """The model's transformers config, checked to name an architecture this transformers knows."""
    import transformers
    from transformers import AutoConfig, CONFIG_MAPPING

    if (path / "adapter_config.json").is_file():
        from rationale_sft.models import adapter_base

        try:
            path = adapter_base(path)
        except InputError as exc:
            problems.append(f"model: {exc}")
            return None
    raw = json.loads((path / "config.json").read_text())
    kind = raw.get("model_type")
    unknown = [a for a in raw.get("architectures") or [] if not hasattr(transformers, a)]
    if kind not in CONFIG_MAPPING or unknown:
        problems.append(f"model: {path / 'config.json'} names an unknown architecture "
                        f"(model_type={kind!r}, architectures={raw.get('architectures')}); use a causal LM "
                        f"that transformers {transformers.__version__} supports, e.g. llama, qwen2, gpt2")
        return None
    return AutoConfig.from_pretrained(str(path))


def tokenizer(path: Path, problems: list[str]):
    """The model directory's tokenizer (None, with the problem noted, when it cannot be loaded)."""
    from rationale_sft.models import load_tokenizer

    try:
        return load_tokenizer(path)
    except (InputError, OSError, ValueError) as exc:
        problems.append(f"tokenizer: {exc}")
        return None


def check_label_tokens(tok, job: JobConfig, problems: list[str], warnings: list[str]) -> None:
    """Each label word must start with its own token in every place the answer slot occurs."""
    from rationale_sft.score.slot import candidate_ids

    places = {"after the answer marker": job.train.answer_marker}
    if uses_chat(tok, job.train.chat_template):
        places["at the start of the assistant turn"] = wrap_prompt(tok, "x", True, job.train.system_prompt)
    for where, prev in places.items():
        ids = candidate_ids(tok, prev)
        words = dict(zip(LABEL_WORDS, ids))
        if any(not i for i in ids) or ids[0][0] == ids[1][0]:
            problems.append(f"tokenizer: label words {words} collide {where} (same or no first token); the answer "
                            "slot cannot tell Yes from No: use a tokenizer trained by models.tokenizer")
        elif any(len(i) > 1 for i in ids):
            warnings.append(f"tokenizer: label words {words} are not single tokens {where}; scores sum the "
                            "log-likelihood of every token of a word (slower, see docs/arms.md)")
        if not all(_stable(tok, prev, i) for i in ids):
            warnings.append(f"tokenizer: label words {words} merge with the text before them {where} when the "
                            "whole text is tokenised at once; training and scoring tokenise them separately, "
                            "so both agree, but free text written by the model may spell them differently")


def _stable(tok, prev: str, word_ids: list[int]) -> bool:
    """True when tokenising ``prev + word`` in one go ends with exactly the word's own tokens."""
    word = tok.decode(word_ids)
    joint = tok(prev + word, add_special_tokens=False)["input_ids"]
    return joint[-len(word_ids):] == word_ids


def check_context(model_cfg, job: JobConfig, problems: list[str]) -> None:
    """``train.max_len`` within the model's context, and room for the prompt beside a generated rationale."""
    from rationale_sft.models import context_length

    ctx = context_length(model_cfg)
    if ctx and job.train.max_len > ctx:
        problems.append(f"train.max_len={job.train.max_len} exceeds the model's context of {ctx} tokens; "
                        f"set train.max_len <= {ctx}")
    limit = job.score.max_len or job.train.max_len
    if arms.SCORING[job.train.arm] == "generate" and job.score.max_new_tokens + 16 >= limit:
        problems.append(f"score.max_new_tokens={job.score.max_new_tokens} leaves no room for the prompt within "
                        f"{limit} tokens; lower score.max_new_tokens or raise score.max_len")


def check_lora_targets(model_cfg, job: JobConfig, problems: list[str]) -> None:
    """LoRA targets checked against the layer names of a weightless instance of the architecture."""
    import torch
    from transformers import AutoModelForCausalLM

    from rationale_sft.models.lora import default_targets, linear_names, missing_targets

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_cfg)
    targets = tuple(job.train.lora.target_modules) or default_targets(model_cfg.model_type)
    names = linear_names(skeleton)
    missing = missing_targets(targets, names)
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in names})
        problems.append(f"train.lora.target_modules {missing} match no linear layer of this {model_cfg.model_type}; "
                        f"its linear layers are named {', '.join(short)}")


def _read(path: str, name: str, problems: list[str]) -> pl.DataFrame | None:
    if not path:
        problems.append(f"{name}: not set; pass {name}=PATH/{name}.parquet")
        return None
    try:
        return read_table(path, name)
    except (InputError, OSError) as exc:
        problems.append(str(exc))
        return None


def _rationale_text(rationales: pl.DataFrame, job: JobConfig, problems: list[str]) -> None:
    if "text" not in rationales.columns:
        return
    bad = rationales.filter(pl.col("text").str.contains("\n" + job.train.answer_marker, literal=True))
    if bad.height:
        problems.append(f"rationales: {bad.height} texts contain the answer marker "
                        f"{job.train.answer_marker!r} (e.g. subject_id {bad['subject_id'][:5].to_list()}); "
                        "the contract keeps it out of the text: the arm adds it")


def _render_all(job: JobConfig, examples, rationales, tok, problems: list[str], warnings: list[str]) -> dict:
    """Render and tokenise every training example; collect per-example problems instead of stopping."""
    cfg = job.train
    try:
        rows = training_rows(cfg, examples, rationales)
        chat = uses_chat(tok, cfg.chat_template)
    except InputError as exc:
        problems.append(str(exc))
        return {}
    failures: list[str] = []
    lengths, targets, dropped = [], [], 0
    for r in rows.iter_rows(named=True):
        try:
            prompt = prompt_parts(r, f"subject_id {r['subject_id']}")
            for task in arms.render_tasks(cfg, r["prompt"], r["label"], r["rationale"]):
                where = f"subject_id {r['subject_id']} ({task.task} task)"
                e = encode(tok, prompt, task.segments, max_len=cfg.max_len, chat=chat, prefix=task.prefix,
                           weight=lambda k: arms.loss_weight(cfg, k), pad_unit=cfg.pad_unit, where=where,
                           system=cfg.system_prompt)
                check_mask(e, where)
                lengths.append(len(e.input_ids))
                targets.append(len(e.input_ids) - e.n_prompt)
                dropped += e.n_dropped > 0
        except InputError as exc:
            failures.append(str(exc))
    problems += failures[:MAX_LISTED]
    if len(failures) > MAX_LISTED:
        problems.append(f"... and {len(failures) - MAX_LISTED} more examples with problems")
    if lengths and dropped / len(lengths) > TRUNCATED_WARN:
        warnings.append(f"train.max_len={cfg.max_len} drops the oldest history lines of {dropped} of {len(lengths)} "
                        f"training sequences ({dropped / len(lengths):.0%}): raise train.max_len if the model's context "
                        "allows")
    if targets and arms.SCORING[cfg.arm] == "generate":
        p95 = int(np.percentile(targets, 95))
        if job.score.max_new_tokens < p95:
            warnings.append(f"score.max_new_tokens={job.score.max_new_tokens} is shorter than 95% of the training "
                            f"targets ({p95} tokens): most generations will stop before the answer marker "
                            "(marker_found=False); raise score.max_new_tokens")
    stats = (lambda v: {"min": int(np.min(v)), "median": float(np.median(v)), "max": int(np.max(v))}) if lengths else (
        lambda v: None)
    return {"arm": cfg.arm, "chat_template": chat, "n_examples": rows.height, "n_sequences": len(lengths),
            "n_truncated": int(dropped), "sequence_tokens": stats(lengths), "target_tokens": stats(targets),
            "example_text": wrap_prompt(tok, "<prompt>", chat, cfg.system_prompt)}
