"""Causal-LM pretraining of base models, and base models cached by content hash across a grid.

``pretrain`` trains on packed sequences: every text is tokenized, followed by ``<|eos|>``, the token
stream is cut into ``seq_len`` blocks, and each step draws ``batch_size`` blocks in a seeded order. AdamW,
linear warmup then cosine decay, gradient clipping, optional bfloat16 autocast. The output is an HF model
dir with its tokenizer, written to a temporary sibling and renamed into place (``DONE`` written last), so
an interrupted run leaves nothing that looks finished.

``ensure_base`` builds (tokenizer ->) base model (-> reasoning base) once per content hash under a cache
root (a grid's ``shared/``) and returns the directory; a second call with the same inputs trains nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rationale_sft import config as cfglib
from rationale_sft import fingerprint, rundir
from rationale_sft.errors import InputError
from rationale_sft.seeding import derive_seed, rng

TOKENIZER_VERSION = 2  # bump when train_tokenizer changes what it produces for the same corpus
CORPORA = ("base", "reasoning", "short")


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warmup to 1, cosine decay to ``min_ratio``.

    >>> [round(lr_factor(s, 2, 10, 0.1), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.55, 0.1]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def pack(texts: list[str], tokenizer, seq_len: int):
    """Token blocks ``[n_blocks, seq_len]`` (int64) from the texts, each followed by eos; the tail is dropped."""
    return _stream_blocks(encode_targets(texts, tokenizer, None), seq_len, len(texts))[0]


def encode_targets(texts: list[str], tokenizer, marker: str | None) -> list[tuple[list[int], list[bool]]]:
    """Per text: its token ids followed by eos, and per token whether it is a target: after the text's first
    ``marker`` (a text without the marker counts whole, eos included), or every token when ``marker`` is None.
    One tokenization serves both the packed and the one-text-per-row layouts."""
    if tokenizer.eos_token_id is None:
        raise InputError("the tokenizer has no eos token; pretraining separates documents with it")
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=marker is not None)
    out = []
    for i, (text, ids) in enumerate(zip(texts, encoded["input_ids"])):
        at = text.find(marker) if marker else -1
        start = at + len(marker) if at >= 0 else 0
        targets = [s >= start for s, _ in encoded["offset_mapping"][i]] if at >= 0 else [True] * len(ids)
        out.append(([*ids, tokenizer.eos_token_id], [*targets, True]))
    return out


def _stream_blocks(encoded, seq_len: int, n_texts: int):
    """The concatenated ids and target flags of ``encode_targets``, cut into ``[n_blocks, seq_len]`` blocks."""
    import torch

    ids = [tok for row, _ in encoded for tok in row]
    n_blocks = len(ids) // seq_len
    if n_blocks == 0:
        raise InputError(f"the pretraining corpus has {len(ids)} tokens ({n_texts} texts), fewer than "
                         f"one sequence of pretrain.seq_len={seq_len}; add text or lower pretrain.seq_len")
    flags = [t for _, row in encoded for t in row]
    cut = n_blocks * seq_len
    return (torch.tensor(ids[:cut], dtype=torch.long).view(n_blocks, seq_len),
            torch.tensor(flags[:cut], dtype=torch.bool).view(n_blocks, seq_len))


def continuation_mask(texts: list[str], tokenizer, seq_len: int, marker: str):
    """Per token of ``pack``'s blocks: whether it follows the first ``marker`` of its text (a text without the
    marker counts whole, eos included), so a loss can skip the prompts and learn what is written after them.

    >>> from rationale_sft.models.tokenizer import train_tokenizer
    >>> import tempfile
    >>> tok = train_tokenizer(["Age 70. Answer: he is 70", "no marker here"] * 20, 300, tempfile.mkdtemp())
    >>> texts = ["Age 70. Answer: he is 70", "no marker here"]
    >>> mask = continuation_mask(texts, tok, 4, "Answer:").flatten().tolist()
    >>> ids = pack(texts, tok, 4).flatten().tolist()
    >>> tok.decode([i for i, m in zip(ids, mask) if m]).split()
    ['he', 'is', '70<|eos|>no', 'marker', 'here']
    """
    return _stream_blocks(encode_targets(texts, tokenizer, marker), seq_len, len(texts))[1]


def document_rows(texts: list[str], tokenizer, seq_len: int, marker: str | None):
    """One row per text (followed by eos, cut after ``seq_len`` tokens), each starting at position 0, and per
    token whether it is a target (after ``marker`` when given; every token when None).

    >>> from rationale_sft.models.tokenizer import train_tokenizer
    >>> import tempfile
    >>> tok = train_tokenizer(["Age 70. Answer: he is 70", "no marker here"] * 20, 300, tempfile.mkdtemp())
    >>> rows = document_rows(["Age 70. Answer: he is 70", "no marker here"], tok, 6, "Answer:")
    >>> [tok.decode([i for i, t in zip(ids, target) if t]) for ids, target in rows]
    [' he', 'no marker here<|eos|>']
    """
    return [(ids[:seq_len], targets[:seq_len]) for ids, targets in encode_targets(texts, tokenizer, marker)]


def _document_batches(rows, pad_id: int):
    """``idx -> (input_ids, labels, attention_mask)``: the rows right-padded to the longest of the batch."""
    import torch

    def get(idx):
        picked = [rows[i] for i in idx]
        width = max(len(ids) for ids, _ in picked)
        ids = torch.full((len(picked), width), pad_id, dtype=torch.long)
        labels = torch.full((len(picked), width), -100, dtype=torch.long)
        mask = torch.zeros((len(picked), width), dtype=torch.long)
        for r, (row, target) in enumerate(picked):
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
            labels[r, :len(row)] = torch.tensor([t if keep else -100 for t, keep in zip(row, target)])
        return ids, labels, mask
    return get


def _stream_batches(texts: list[str], tokenizer, seq_len: int, marker: str | None):
    """``(n_blocks, idx -> (input_ids, labels, None))`` over the packed token stream (texts tokenized once)."""
    blocks, keep = _stream_blocks(encode_targets(texts, tokenizer, marker), seq_len, len(texts))
    targets = blocks.masked_fill(~keep, -100)
    return len(blocks), lambda idx: (blocks[idx], targets[idx], None)


def batch_order(n_blocks: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Block indices of every step: shuffled epochs, concatenated, cut into batches (seeded).

    >>> order = batch_order(5, 2, 4, seed=0)
    >>> len(order), sorted(order[0] + order[1] + order[2][:1])
    (4, [0, 1, 2, 3, 4])
    """
    gen = rng(seed, "pretrain_order")
    need = batch_size * steps
    flat = [int(i) for _ in range(-(-need // n_blocks)) for i in gen.permutation(n_blocks)]
    return [flat[s * batch_size:(s + 1) * batch_size] for s in range(steps)]


def device():
    """The device training runs on: the GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pretrain(cfg, texts: list[str], tokenizer, out_dir: str | Path, init_dir: str | Path | None = None) -> dict:
    """Pretrain (``init_dir``: continue) a causal LM on ``texts``; save model + tokenizer to ``out_dir``.

    ``cfg`` has sections ``model`` (``ModelConfig``) and ``pretrain`` (``PretrainConfig``), e.g. a
    ``BaseModelConfig``. Returns the run's statistics (also in ``out_dir/manifest.json`` under
    ``"pretrain"``); when ``out_dir`` is already done, returns them without training.
    """
    out_dir = Path(out_dir)
    if usable(out_dir):
        return rundir.read_json(out_dir / rundir.MANIFEST)["pretrain"]
    seeds = {"seed": cfg.pretrain.seed, "model_init": derive_seed(cfg.pretrain.seed, "model_init")}
    inputs = {"init_dir": init_dir} if init_dir else None
    _publish(out_dir, lambda d: {"pretrain": _train(cfg, texts, tokenizer, d, init_dir, f"pretrain {out_dir.name}")},
             cfg=cfg, seeds=seeds, inputs=inputs)
    return rundir.read_json(out_dir / rundir.MANIFEST)["pretrain"]


def _publish(out_dir: Path, work: Callable[[Path], dict], **stage_kw) -> None:
    """Run a stage in a temporary sibling dir, then rename it onto ``out_dir`` (replacing an unfinished one)."""
    # unique per process and host: workers of a cluster may build the same base into a shared dir
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        rundir.run_stage(tmp, work, **stage_kw)
        if out_dir.exists() and not usable(out_dir):
            shutil.rmtree(out_dir)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not usable(out_dir):  # unless another process published the same result first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def usable(out_dir: Path) -> bool:
    """A cached build to reuse: finished, and its files still the ones it wrote (else it is rebuilt)."""
    return rundir.is_done(out_dir) and not rundir.verify(out_dir, hashes=True)


def _init_model(cfg, tokenizer, init_dir):
    from rationale_sft.models import load
    from rationale_sft.models.families import build_model

    if init_dir is None:
        return build_model(cfg.model.family, cfg.model.size, tokenizer, cfg.pretrain.seed), tokenizer
    model, init_tok = load(init_dir)
    if tokenizer is not None and tokenizer.get_vocab() != init_tok.get_vocab():
        raise InputError(f"the tokenizer passed to pretrain differs from the one saved in {init_dir}; "
                         f"continue pretraining with the model's own tokenizer (pass tokenizer=None)")
    return model, init_tok


def _param_groups(model, weight_decay: float) -> list[dict]:
    # Decay matrices only: biases and norm gains are scales, and decaying them hurts small models.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _train(cfg, texts: list[str], tokenizer, out_dir: Path, init_dir, description: str = "pretrain") -> dict:
    """The training loop: explicit, one optimizer step per batch of packed blocks."""
    import polars as pl
    import torch

    from rationale_sft import progress

    from rationale_sft.models.families import n_params
    from rationale_sft.precision import resolve_bf16

    pc = cfg.pretrain
    dev = device()
    model, tokenizer = _init_model(cfg, tokenizer, init_dir)
    model.to(dev).train()
    from rationale_sft.answer import ANSWER_MARKER

    # prompts read, not learned: only what follows the marker is a target
    marker = ANSWER_MARKER if pc.loss_on == "continuation" else None
    if pc.packing == "documents":
        rows = document_rows(texts, tokenizer, pc.seq_len, marker)
        n_rows, get_batch = len(rows), _document_batches(rows, tokenizer.pad_token_id)
        corpus_tokens = sum(len(ids) for ids, _ in rows)
    else:
        n_rows, get_batch = _stream_batches(texts, tokenizer, pc.seq_len, marker)
        corpus_tokens = n_rows * pc.seq_len
    order = batch_order(n_rows, pc.batch_size, pc.steps, pc.seed)
    opt = torch.optim.AdamW(_param_groups(model, pc.weight_decay), lr=pc.lr, betas=(0.9, 0.95),
                            fused=dev.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, pc.warmup_steps, pc.steps, pc.min_lr_ratio))
    bf16 = resolve_bf16(cfg.model.bf16_autocast, dev)
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16)
    rows, window, first_loss, started = [], [], None, time.time()
    tick, tick_tokens, tokens = time.time(), 0, 0
    with progress.stage(description, pc.steps) as advance:
        for step, idx in enumerate(order):
            batch, labels, mask = get_batch(idx)
            batch = batch.to(dev, non_blocking=True)
            with autocast:
                loss = model(input_ids=batch, labels=labels.to(dev, non_blocking=True),
                             attention_mask=None if mask is None else mask.to(dev)).loss
            loss.backward()
            if pc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), pc.grad_clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            window.append(loss.item())
            first_loss = window[0] if first_loss is None else first_loss
            step_tokens = batch.numel() if mask is None else int(mask.sum())
            tick_tokens, tokens = tick_tokens + step_tokens, tokens + step_tokens
            if (step + 1) % pc.log_every == 0 or step + 1 == pc.steps:
                now = time.time()
                rows.append({"step": step + 1, "loss": sum(window) / len(window), "lr": lr,
                             "tokens_per_s": tick_tokens / max(now - tick, 1e-9), "elapsed_s": now - started})
                window, tick, tick_tokens = [], now, 0
            advance(loss=loss.item())
    seconds = time.time() - started
    model.to("cpu").save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    rundir.write_parquet(pl.DataFrame(rows, schema={"step": pl.Int64, "loss": pl.Float64, "lr": pl.Float64,
                                                    "tokens_per_s": pl.Float64, "elapsed_s": pl.Float64}),
                         out_dir / "pretrain_log.parquet")
    return {"steps": pc.steps, "first_loss": first_loss, "final_loss": rows[-1]["loss"], "tokens": tokens,
            "tokens_per_s": tokens / max(seconds, 1e-9), "seconds": round(seconds, 2), "n_params": n_params(model),
            "corpus_texts": len(texts), "corpus_tokens": int(corpus_tokens), "corpus_hash": corpus_hash(texts),
            "device": dev.type, "bf16_autocast": bf16, "init_dir": str(init_dir) if init_dir else None}


def corpus_hash(texts: list[str]) -> str:
    """Content hash of a list of texts (order matters: it is the data order's input).

    >>> corpus_hash(["a", "b"]) == corpus_hash(["a", "b"]) != corpus_hash(["ab"])
    True
    """
    return rundir.hash_text("\x1e".join(f"{len(t)}:{t}" for t in texts))


def ensure_base(cfg, texts_fn: Callable[[str], list[str]], cache_root: str | Path) -> Path:
    """The base model dir for ``cfg`` (sections ``model``, ``pretrain``), trained once and cached by hash.

    ``texts_fn(corpus)`` returns the texts of ``corpus`` ("base": pretraining text; "reasoning": the
    step-by-step reasoning text of the reasoning base; "short" with ``pretrain.short_steps``; "drill" and
    "redrawn" with ``pretrain.copy_steps``). It is called to hash the corpus on every call
    (memoise it if it is slow) and nothing trains when the result exists. Real checkpoints
    (``model.checkpoint``) are resolved, not trained, unless ``model.reasoning_base`` asks to continue them.
    """
    from rationale_sft.models import hub

    cache_root = Path(cache_root)
    if cfg.model.checkpoint:
        base = hub.resolve(cfg.model.checkpoint)
        # by content: new weights at the same path must not reuse a reasoning base continued from the old
        key = rundir.hash_text(f"{cfg.model.checkpoint}\n{fingerprint.digest(base)}")
    else:
        base, key = _ensure_scratch_base(cfg, texts_fn, cache_root)
    if not cfg.model.reasoning_base:
        return base
    return _ensure_reasoning_base(cfg, texts_fn, cache_root, base, key)


def _ensure_scratch_base(cfg, texts_fn, cache_root: Path) -> tuple[Path, str]:
    from rationale_sft.models.tokenizer import train_tokenizer

    texts = _texts(texts_fn, "base")
    tok_key = cfglib.config_hash({"vocab_size": cfg.model.vocab_size, "corpus": corpus_hash(texts),
                                  "version": TOKENIZER_VERSION})
    tok_dir = cache_root / f"tokenizer-{tok_key}"
    if not usable(tok_dir):
        _publish(tok_dir, lambda d: {"label_tokens": _label_report(
            train_tokenizer(texts, cfg.model.vocab_size, d))}, cfg={"vocab_size": cfg.model.vocab_size})
    model_part = dataclasses.replace(cfg.model, reasoning_base=False, checkpoint=None)
    drills = _texts(texts_fn, "drill") if cfg.pretrain.copy_steps else []
    redrawn = _texts(texts_fn, "redrawn") if cfg.pretrain.copy_steps else []
    short = _texts(texts_fn, "short") if cfg.pretrain.short_steps else []
    key = cfglib.config_hash({"model": model_part, "pretrain": _base_part(cfg.pretrain),
                              "tokenizer": rundir.hash_path(tok_dir / "tokenizer.json"),
                              "corpus": corpus_hash(texts)} | ({"short": corpus_hash(short)} if short else {})
                             | ({"copy": corpus_hash(drills + redrawn)} if drills else {}))
    out = cache_root / f"base-{key}"
    if not usable(out):
        from rationale_sft.models import load_tokenizer

        # the drills alone, then the short texts, then everything, then (full_steps) the full texts alone, each
        # stage from the last; the drills and the redrawn texts stay in the short and main stages' mix (without
        # them the next stage unlearns the lookup)
        copying = drills + redrawn
        stages = []
        if drills:
            stages.append((_first_stage(cfg, cfg.pretrain.copy_steps), drills, cache_root / f"base-copy-{key}"))
        if short:
            stages.append((_first_stage(cfg, cfg.pretrain.short_steps), short + copying,
                           cache_root / f"base-short-{key}"))
        full_steps = cfg.pretrain.full_steps
        stages.append((cfg, texts + short + copying, cache_root / f"base-main-{key}" if full_steps else out))
        if full_steps:
            stages.append((_stage(cfg, full_steps, lr=cfg.pretrain.full_lr), texts, out))
        init = None
        for stage_cfg, stage_texts, stage_dir in stages:
            if not usable(stage_dir):  # the last stage (out) is not, or we would not be here
                tokenizer = load_tokenizer(tok_dir) if init is None else None
                pretrain(stage_cfg, stage_texts, tokenizer, stage_dir, init_dir=init)
            init = stage_dir
    return out, key


def _stage(cfg, steps: int, **changes):
    """``cfg`` for a stage other than the main one: ``steps`` steps (warmup at most that many), and ``changes``
    to the other pretraining settings."""
    pc = cfg.pretrain
    return dataclasses.replace(cfg, pretrain=dataclasses.replace(
        pc, steps=steps, warmup_steps=min(pc.warmup_steps, steps), **changes))


def _first_stage(cfg, steps: int):
    """A stage before the main one (copy drills, short texts): ``steps`` steps on short texts, one per row, many
    per batch."""
    pc = cfg.pretrain
    return _stage(cfg, steps, batch_size=pc.short_batch_size, seq_len=pc.short_seq_len, packing="documents")


def _ensure_reasoning_base(cfg, texts_fn, cache_root: Path, base: Path, base_key: str) -> Path:
    texts = _texts(texts_fn, "reasoning")
    cont = _stage(cfg, cfg.pretrain.reasoning_steps, lr=cfg.pretrain.reasoning_lr)
    key = cfglib.config_hash({"base": base_key, "pretrain": _base_part(cont.pretrain), "corpus": corpus_hash(texts),
                              "bf16_autocast": cfg.model.bf16_autocast})
    out = cache_root / f"base-reasoning-{key}"
    if not usable(out):
        pretrain(cont, texts, None, out, init_dir=base)
    return out


def _base_part(pc) -> dict:
    # Settings that do not change the plain base's weights (the reasoning continuation's, the log
    # interval) stay out of its hash, so changing them reuses the base.
    # copy_steps=0 and full_steps=0 (with full_lr) are left out too, so older bases keep their key.
    d = {k: v for k, v in cfglib.to_dict(pc).items() if not k.startswith("reasoning_") and k != "log_every"}
    if not pc.copy_steps:
        del d["copy_steps"]
    if not pc.full_steps:
        del d["full_steps"], d["full_lr"]
    return d


def _texts(texts_fn, corpus: str) -> list[str]:
    texts = list(texts_fn(corpus))
    if not texts:
        raise InputError(f"the {corpus!r} pretraining corpus is empty; the grid must supply texts for it")
    return texts


def _label_report(tokenizer) -> dict:
    from rationale_sft.models.tokenizer import vocab_report

    return vocab_report(tokenizer)
