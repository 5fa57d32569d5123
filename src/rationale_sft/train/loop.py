"""The training loop: one explicit loop for every arm (AdamW, warmup + decay, clipping, accumulation, resume).

The loss of an optimizer step is the sum of the weighted token losses of all its micro-batches divided by
the step's total target weight (the number of target tokens when every weight is 1), so micro-batch x
accumulation splits give the same update and long rationale targets are not averaged per micro-batch.

Run directory (contract section 7): ``checkpoint/`` (model or adapter dir + tokenizer + ``training.json``),
with ``train.keep_checkpoints`` also ``checkpoints/step-<N>/`` (weights of every ``checkpoint_every`` step),
``train_log.parquet`` (one row per step, rewritten about once a minute while training), ``train_examples.parquet``
(hashes and token counts per training sequence), ``train.json`` (summary, seeds, input hashes) and, with
``train.conflict_every``, ``grad_conflict.parquet`` (label vs rationale gradient cosine and norm ratio per
measured step and layer).
A re-run resumes from ``checkpoint/`` (weights, optimizer, scheduler, RNG, step and log) and returns at
once when the checkpoint is final.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import memory, progress, rundir
from rationale_sft.answer import uses_chat
from rationale_sft.config.train import TrainConfig
from rationale_sft.errors import InputError
from rationale_sft.models.tokenizer import slot_label_tokens
from rationale_sft.precision import resolve_bf16
from rationale_sft.render.assemble import prompt_parts
from rationale_sft.seeding import derive_seed, rng
from rationale_sft.tables import read_parquet
from rationale_sft.train import arms, conflict
from rationale_sft.train.data import Encoded, by_length, collate, encode, pad_id, padding

CHECKPOINT = "checkpoint"
KEPT = "checkpoints"
"Folder of the kept intermediate checkpoints (train.keep_checkpoints): one ``step-<N>/`` per kept step."
STATE = "trainer_state.pt"
META = "training.json"
LOG_COLUMNS = ["step", "stage", "loss", "label_loss", "rationale_loss", "label_token_share", "n_target_tokens",
               "n_tokens", "n_pad_tokens", "lr", "tokens_per_s", "grad_cos", "grad_norm_ratio"]
CONFLICT = "grad_conflict.parquet"


def seeds_of(seed: int) -> dict[str, int]:
    """The per-purpose seeds derived from the master seed (all recorded).

    >>> sorted(seeds_of(0))
    ['adapter_init', 'data_order', 'data_subset', 'generation']
    """
    return {p: derive_seed(seed, p) for p in ("data_subset", "adapter_init", "data_order", "generation")}


def read_table(data, name: str) -> pl.DataFrame:
    """A polars DataFrame from a DataFrame or a parquet path; errors name the input."""
    if isinstance(data, pl.DataFrame):
        return data
    if data is None or not Path(data).is_file():
        raise InputError(f"{name}: file not found: {data}; pass the parquet file written by its stage")
    return read_parquet(data)


def training_rows(cfg: TrainConfig, examples: pl.DataFrame, rationales: pl.DataFrame | None) -> pl.DataFrame:
    """Training-split examples joined to their rationale (column ``rationale``), subset per ``max_train_examples``."""
    need = {"subject_id", "split", "label", "prompt", "prompt_hash"}
    if need - set(examples.columns):
        raise InputError(f"examples: missing columns {sorted(need - set(examples.columns))}; "
                         "pass examples.parquet written by `render`")
    rows = examples.filter(pl.col("split") == "train").sort("subject_id")
    if rows.is_empty():
        raise InputError("examples: no rows with split == 'train'; check examples.parquet's split column")
    style, mode = arms.rationale_style(cfg), arms.rationale_mode(cfg)
    if style is None:
        rows = rows.with_columns(rationale=pl.lit(None, pl.String), rationale_subject_id=pl.lit(None, pl.Int64))
    else:
        rows = rows.join(pick_rationales(rationales, style, mode), on="subject_id", how="left")
        missing = rows.filter(pl.col("rationale").is_null())["subject_id"].to_list()
        if missing:
            hint = (" (`rationales generate mode=flipped`; a grid plans it for this arm)" if mode == "flipped"
                    else "")
            raise InputError(f"rationales: {len(missing)} training subjects have no {style}/{mode} rationale "
                             f"(e.g. subject_id {missing[:5]}); generate them{hint} or change train.rationale_style")
        rows = rows.with_columns(rationale_subject_id=pl.col("subject_id"))
    if cfg.max_train_examples and cfg.max_train_examples < rows.height:
        keep = np.sort(rng(cfg.seed, "data_subset").choice(rows.height, cfg.max_train_examples, replace=False))
        rows = rows[keep.tolist()]
    return shuffle_rationales(rows, cfg.seed) if cfg.arm == "shuffled_rationale" else rows


def shuffle_rationales(rows: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Each row's rationale replaced by that of its same-label donor (``arms.same_label_donors``), whose
    subject id goes to ``rationale_subject_id``."""
    donors = arms.same_label_donors(rows["subject_id"].to_list(), rows["label"].to_list(), seed)
    texts = dict(zip(rows["subject_id"].to_list(), rows["rationale"].to_list()))
    return rows.with_columns(rationale=pl.Series([texts[d] for d in donors], dtype=pl.String),
                             rationale_subject_id=pl.Series(donors, dtype=pl.Int64))


def pick_rationales(rationales: pl.DataFrame | None, style: str, mode: str) -> pl.DataFrame:
    """``subject_id, rationale`` for one style and mode (one row per subject)."""
    if rationales is None:
        raise InputError(f"this arm trains on {style} rationales but no rationales.parquet was given; "
                         "pass rationales (from `rationales generate`)")
    if {"subject_id", "style", "mode", "text"} - set(rationales.columns):
        raise InputError("rationales: needs columns subject_id, style, mode, text (contract section 5)")
    return (rationales.filter((pl.col("style") == style) & (pl.col("mode") == mode))
            .unique("subject_id", keep="first", maintain_order=True)
            .select("subject_id", pl.col("text").alias("rationale")))


def encode_rows(cfg: TrainConfig, tokenizer, rows: pl.DataFrame, chat: bool) -> tuple[list[Encoded], pl.DataFrame]:
    """Tokenised training sequences and their per-sequence table (hashes, counts, mask check)."""
    seqs, table = [], []
    for r in rows.iter_rows(named=True):
        prompt = prompt_parts(r, f"subject_id {r['subject_id']}")
        for task in arms.render_tasks(cfg, r["prompt"], r["label"], r["rationale"]):
            where = f"subject_id {r['subject_id']} ({task.task} task)"
            e = encode(tokenizer, prompt, task.segments, max_len=cfg.max_len, chat=chat, prefix=task.prefix,
                       weight=lambda kind: arms.loss_weight(cfg, kind), pad_unit=cfg.pad_unit, where=where,
                       system=cfg.system_prompt)
            check_mask(e, where)
            seqs.append(e)
            target = "".join(text for _, text in task.segments)
            table.append({"subject_id": r["subject_id"], "task": task.task, "prompt_hash": r["prompt_hash"],
                          "rationale_subject_id": r["rationale_subject_id"],
                          "target_hash": rundir.hash_text(task.prefix + "\x00" + target),
                          "n_prompt_tokens": e.n_prompt, "n_target_tokens": len(e.input_ids) - e.n_prompt,
                          "n_label_tokens": sum(e.is_label), "n_history_dropped": e.n_dropped})
    return seqs, pl.DataFrame(table, schema_overrides={"subject_id": pl.Int64, "rationale_subject_id": pl.Int64})


def check_mask(e: Encoded, where: str) -> None:
    """Labels are -100 exactly on the prompt, equal to the input ids on the target, with >= 1 label token."""
    n = len(e.input_ids)
    assert len(e.labels) == len(e.weights) == len(e.is_label) == n
    assert all(x == -100 for x in e.labels[:e.n_prompt]), where
    assert e.labels[e.n_prompt:] == e.input_ids[e.n_prompt:], where
    if n - e.n_prompt == 0 or not any(w > 0 for w in e.weights):
        raise InputError(f"{where}: zero trainable tokens after truncation; raise train.max_len")


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): linear warmup, then decay.

    >>> c = TrainConfig(warmup=0.1, decay="linear", min_lr_ratio=0.0)
    >>> [round(lr_factor(c, s, 10), 2) for s in (0, 1, 5, 9)]
    [1.0, 1.0, 0.56, 0.11]
    >>> round(lr_factor(TrainConfig(warmup=0.5), 0, 10), 2)
    0.2
    """
    warm = int(cfg.warmup * total)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    if cfg.decay == "constant":
        return 1.0
    if cfg.decay == "linear":
        return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule(cfg: TrainConfig, lengths: list[int]) -> list[list[list[int]]]:
    """Sequence indices per optimizer step, per micro-batch: successive seeded permutations of the sequences;
    with ``bucket_by_length`` each step's sequences are regrouped by length (``data.by_length``)."""
    n = len(lengths)
    per_step = cfg.micro_batch * cfg.grad_accum
    total = cfg.steps or cfg.epochs * math.ceil(n / per_step)
    order_rng = rng(cfg.seed, "data_order")
    stream: list[int] = []
    while len(stream) < total * per_step:
        stream += order_rng.permutation(n).tolist()
    steps = [stream[s * per_step:(s + 1) * per_step] for s in range(total)]
    plan = [[idx[m * cfg.micro_batch:(m + 1) * cfg.micro_batch] for m in range(cfg.grad_accum)] for idx in steps]
    return [by_length(p, lengths) for p in plan] if cfg.bucket_by_length else plan


def device_of(name: str) -> str:
    """Resolve 'auto' to cuda when available, else cpu."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def token_losses(model, batch: dict, autocast: bool, device: str):
    """Per-token cross-entropy on target positions only: (ce, weights, is_label) as flat tensors."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    # Only positions that predict a target token need logits; skipping the prompt saves most of the head.
    cols = (labels != -100).any(0).nonzero().squeeze(-1)
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    logits_to_keep=cols.to(device), use_cache=False)
    logits = out.logits.float()
    target = labels[:, cols].to(device)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                         reduction="none")
    w = batch["weights"][:, 1:][:, cols].reshape(-1).to(device)
    is_label = batch["is_label"][:, 1:][:, cols].reshape(-1).to(device)
    return ce, w, is_label, target.reshape(-1) != -100


def load_base(cfg: TrainConfig, base_model_dir):
    """``(model, tokenizer)`` of the base, wrapped with LoRA (seeded adapter init) when enabled."""
    import torch

    from rationale_sft import models

    model, tok = models.load(absolute(base_model_dir))
    if cfg.gradient_checkpointing:
        # non-reentrant: gradients reach the adapters of a frozen base without inputs that require grad;
        # before apply_lora, so that peft also makes the embeddings' outputs require grad
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from rationale_sft.models.lora import apply_lora

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "adapter_init"))
            model = apply_lora(model, cfg.lora)
    return model, tok


def with_max_len(cfg: TrainConfig, model_config) -> TrainConfig:
    """``cfg`` with ``max_len`` 0 resolved to the model's context length."""
    if cfg.max_len:
        return cfg
    from rationale_sft.models import context_length

    ctx = context_length(model_config)
    if not ctx:
        raise InputError("train.max_len=0 asks for the model's context length, but its config states none; "
                         "set train.max_len")
    return dataclasses.replace(cfg, max_len=int(ctx))


def absolute(model_dir):
    """An existing local path made absolute (adapters record their base by this path); aliases unchanged."""
    path = Path(str(model_dir))
    return path.resolve() if path.exists() else model_dir


def make_optimizer(cfg: TrainConfig, model):
    """AdamW with weight decay on matrices only (not on biases and norms) and the warmup/decay schedule."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.95))


def train(cfg: TrainConfig, run_dir, examples, rationales=None, base_model_dir=None) -> dict:
    """Fine-tune ``base_model_dir`` in arm ``cfg.arm``; write checkpoint/, train_log.parquet; return a summary."""
    try:
        return fit(cfg, run_dir, examples, rationales, base_model_dir)
    finally:  # the run's model, optimizer and batches are garbage once fit returns
        memory.release()


def fit(cfg: TrainConfig, run_dir, examples, rationales=None, base_model_dir=None) -> dict:
    """The body of ``train``."""
    import torch

    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    if ckpt is not None and rundir.read_json(ckpt / META).get("finished") and (run_dir / "train.json").is_file():
        return rundir.read_json(run_dir / "train.json")
    started = time.time()
    ex_table = read_table(examples, "examples")
    rat_table = None if rationales is None else read_table(rationales, "rationales")
    rows = training_rows(cfg, ex_table, rat_table)
    run_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs have been read
    model, tok = load_base(cfg, base_model_dir)
    device = device_of(cfg.device)
    bf16 = resolve_bf16(cfg.bf16, device)
    model.to(device)
    resolved = with_max_len(cfg, model.config)  # train.json keeps cfg as given (max_len 0 = the context)
    chat = uses_chat(tok, cfg.chat_template)
    seqs, table = encode_rows(resolved, tok, rows, chat)
    rundir.write_parquet(table, run_dir / "train_examples.parquet")
    lengths = [len(e.input_ids) for e in seqs]
    plan = schedule(cfg, lengths)
    total = len(plan)
    if cfg.arm == "answer_stage" and cfg.answer_stage_steps >= total:
        raise InputError(f"train.answer_stage_steps={cfg.answer_stage_steps} must be fewer than the run's {total} "
                         "optimizer steps (both stages share the step budget); lower it or raise train.steps")
    opt = make_optimizer(cfg, model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total))
    log: list[dict] = []
    conflicts: list[dict] = []  # grad_conflict.parquet rows
    step0 = 0
    if ckpt is not None and (ckpt / STATE).is_file():
        step0, log, conflicts = restore(ckpt / STATE, model, opt, sched)
    meta = {"arm": cfg.arm, "scoring": arms.SCORING[cfg.arm], "answer_marker": cfg.answer_marker,
            "prefix": arms.scoring_prefix(cfg), "chat": chat, "system_prompt": cfg.system_prompt,
            "label_tokens": slot_label_tokens(tok, chat, cfg.system_prompt, cfg.answer_marker),
            "max_len": resolved.max_len,
            "base_model": rundir.portable(absolute(base_model_dir), run_dir), "lora": cfg.lora.enabled,
            "total_steps": total}
    pad = pad_id(tok)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    model.train()
    log_written = time.monotonic()
    with progress.stage(f"train {cfg.arm}", total, completed=step0) as advance:
        for step in range(step0, total):
            t0 = time.perf_counter()
            stage = arms.stage_of(cfg, step, total)
            # weights normalised over the whole step (all micro-batches): the step loss is sum(w * ce)
            micro = arms.step_batches(cfg, stage, [collate([seqs[i] for i in mb], pad) for mb in plan[step] if mb])
            due = conflict.due(cfg.conflict_every, step + 1)
            stats = np.zeros(7)  # loss, label ce sum, label n, other ce sum, other n, label weight, all weight
            measured = None
            for batch in micro:
                ce, w, is_label, valid = token_losses(model, batch, bf16, device)
                loss = (ce * w).sum()
                if due and measured is None:  # same forward pass, grads returned, not accumulated
                    measured = conflict.measure(ce, is_label, valid, trainable)
                loss.backward()
                with torch.no_grad():
                    other = valid & ~is_label
                    stats += [loss.item(), ce[is_label].sum().item(), is_label.sum().item(),
                              ce[other].sum().item(), other.sum().item(), w[is_label].sum().item(), w.sum().item()]
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            dt_step = time.perf_counter() - t0
            n_tokens, processed = padding(plan[step], lengths)
            conflicts += [{"step": step + 1, **row} for row in measured or ()]
            overall = (measured or [{}])[0]
            log.append({"step": step + 1, "stage": stage, "loss": stats[0], "label_loss": stats[1] / max(stats[2], 1),
                        "rationale_loss": stats[3] / stats[4] if stats[4] else None,
                        "label_token_share": stats[5] / stats[6], "n_target_tokens": int(stats[2] + stats[4]),
                        "n_tokens": n_tokens, "n_pad_tokens": processed - n_tokens, "lr": lr,
                        "tokens_per_s": n_tokens / dt_step,
                        "grad_cos": overall.get("cos"), "grad_norm_ratio": overall.get("norm_ratio")})
            advance(loss=stats[0])
            if time.monotonic() - log_written >= LOG_WRITE_S:  # a long run's log can be read while it trains
                write_log(run_dir, log)
                log_written = time.monotonic()
            done = step + 1 == total
            if done or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0):
                if cfg.keep_checkpoints and not done:  # before the resumable one: a resume past it rewrites it
                    keep_checkpoint(run_dir, model, tok, step + 1, meta)
                save_checkpoint(run_dir, model, tok, opt, sched, step + 1, log, {**meta, "finished": done},
                                conflicts if cfg.conflict_every else None)
    if total == 0 or step0 == total:
        save_checkpoint(run_dir, model, tok, opt, sched, total, log, {**meta, "finished": True},
                        conflicts if cfg.conflict_every else None)
    summary = summarise(cfg, run_dir, table, log, started, step0, base_model_dir, examples, rationales) \
        | {"bf16": bf16}  # what ran: cfg.bf16 where the device computes bf16 natively (precision.resolve_bf16)
    rundir.write_json(run_dir / "train.json", summary)
    return summary


def summarise(cfg, run_dir: Path, table: pl.DataFrame, log: list[dict], started: float, step0: int,
              base_model_dir, examples, rationales) -> dict:
    """The summary train() returns and writes to train.json."""
    inputs = {k: rundir.portable(v, run_dir) for k, v in {"examples": examples, "rationales": rationales}.items()
              if isinstance(v, (str, Path))}
    return {"config": cfglib.to_dict(cfg), "config_hash": cfglib.config_hash(cfg), "seeds": seeds_of(cfg.seed),
            "steps": len(log), "tokens_seen": sum(r.get("n_tokens") or 0 for r in log),  # prompt + target, all steps
            "answer_stage_steps": sum(r.get("stage") == "answer" for r in log),  # part of "steps", not added
            "resumed_from_step": step0 or None, "n_examples": int(table["subject_id"].n_unique()),
            "n_sequences": table.height, "n_target_tokens": int(table["n_target_tokens"].sum()),
            "n_label_tokens": int(table["n_label_tokens"].sum()),
            "n_truncated": int((table["n_history_dropped"] > 0).sum()),
            "final_loss": log[-1]["loss"] if log else None,
            "tokens_per_s": float(np.median([r["tokens_per_s"] for r in log])) if log else None,
            "padding_fraction": padding_fraction(log),
            "seconds": time.time() - started, "checkpoint": CHECKPOINT,
            "base_model": rundir.portable(base_model_dir, run_dir), "inputs": inputs}


def padding_fraction(log: list[dict]) -> float | None:
    """Share of the token positions processed that were padding, over all logged steps (None: not logged).

    >>> padding_fraction([{"n_tokens": 30, "n_pad_tokens": 10}, {"n_tokens": 60, "n_pad_tokens": 0}])
    0.1
    """
    pad = [r.get("n_pad_tokens") for r in log]
    if not log or None in pad:  # a resumed run from before the column
        return None
    return sum(pad) / (sum(pad) + sum(r["n_tokens"] for r in log))


def find_checkpoint(run_dir: Path) -> Path | None:
    """The last complete checkpoint (``checkpoint/``, or ``.checkpoint.old`` if killed mid-swap)."""
    for name in (CHECKPOINT, ".checkpoint.old"):
        path = run_dir / name
        if (path / META).is_file():
            return path
    return None


LOG_WRITE_S = 60.0
"Seconds between rewrites of train_log.parquet while training (it is also written at every checkpoint)."


def write_log(run_dir: Path, log: list[dict]) -> None:
    """train_log.parquet: one row per optimizer step so far."""
    rundir.write_parquet(pl.DataFrame(log, schema=log_schema()), run_dir / "train_log.parquet")


def save_checkpoint(run_dir: Path, model, tok, opt, sched, step: int, log: list[dict], meta: dict,
                    conflicts: list[dict] | None = None) -> Path:
    """Write the checkpoint to a temporary dir, then swap it in by renames (a crash leaves a whole one);
    ``conflicts`` (None: measurement off) are written to grad_conflict.parquet and kept for a resume."""
    import torch

    tmp = run_dir / ".checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        portable_adapter_base(tmp, run_dir / CHECKPOINT)
        tok.save_pretrained(str(tmp))
        if not meta["finished"]:  # a final checkpoint needs no optimizer state: it is never resumed
            trainable = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
            torch.save({"step": step, "params": trainable, "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(), "log": log,
                        "conflicts": conflicts or []},
                       tmp / STATE)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(exc, run_dir / CHECKPOINT) from exc
    rundir.write_json(tmp / META, {**meta, "step": step})
    write_log(run_dir, log)
    if conflicts is not None:
        rundir.write_parquet(pl.DataFrame(conflicts, schema=conflict_schema()), run_dir / CONFLICT)
    final, old = run_dir / CHECKPOINT, run_dir / ".checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def keep_checkpoint(run_dir: Path, model, tok, step: int, meta: dict) -> Path:
    """Write the weights and tokenizer of ``step`` to ``checkpoints/step-<N>/`` (no optimizer state: never
    resumed, only read, e.g. by ``diagnostics.layers.probe_checkpoints``); replaces an earlier copy whole."""
    final = run_dir / KEPT / kept_name(step)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        portable_adapter_base(tmp, final)
        tok.save_pretrained(str(tmp))
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(exc, final) from exc
    rundir.write_json(tmp / META, {**meta, "finished": False, "step": step})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def kept_name(step: int) -> str:
    """Folder name of a kept checkpoint, sortable by step.

    >>> kept_name(40)
    'step-000040'
    """
    return f"step-{step:06d}"


def portable_adapter_base(saved: Path, final: Path) -> None:
    """An adapter dir names its base model; inside a grid, by a path relative to the adapter's final dir,
    so a copied or moved grid loads its own base (``models.adapter_base`` reads relative names)."""
    path = saved / "adapter_config.json"
    if path.is_file():
        config = rundir.read_json(path)
        config["base_model_name_or_path"] = rundir.portable(config["base_model_name_or_path"], final)
        rundir.write_json(path, config)


def write_error(exc: Exception, path: Path) -> Exception:
    """safetensors and torch report a failed write (full disk) as their own errors: make it an OSError.

    >>> write_error(RuntimeError("I/O error: No space left on device (os error 28)"), Path("run/checkpoint"))
    OSError(28, 'No space left on device')
    """
    if isinstance(exc, OSError):
        return exc
    code = re.search(r"os error (\d+)", str(exc))
    if code:
        return OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path))
    if "write failed" in str(exc) or "failed writing" in str(exc):  # torch's PytorchStreamWriter
        full = shutil.disk_usage(path.parent).free < (1 << 20)
        return OSError(errno.ENOSPC if full else errno.EIO, os.strerror(errno.ENOSPC if full else errno.EIO),
                       str(path))
    return exc


def restore(state_path: Path, model, opt, sched) -> tuple[int, list[dict], list[dict]]:
    """Load trainable weights, optimizer, scheduler and RNG state; return (step, log rows, conflict rows so far)."""
    import torch

    state = torch.load(state_path, map_location="cpu", weights_only=False)  # resumable on another device
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["params"].items():
            params[name].copy_(value)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), list(state["log"]), list(state.get("conflicts", []))  # older states lack them


def log_schema() -> dict:
    """Column types of train_log.parquet."""
    return {"step": pl.Int64, "stage": pl.String, "loss": pl.Float64, "label_loss": pl.Float64,
            "rationale_loss": pl.Float64, "label_token_share": pl.Float64, "n_target_tokens": pl.Int64,
            "n_tokens": pl.Int64, "n_pad_tokens": pl.Int64, "lr": pl.Float64, "tokens_per_s": pl.Float64,
            "grad_cos": pl.Float64, "grad_norm_ratio": pl.Float64}


def conflict_schema() -> dict:
    """Column types of grad_conflict.parquet."""
    return dict(zip(conflict.TABLE_COLUMNS, [pl.Int64, pl.String] + [pl.Float64] * 4))
