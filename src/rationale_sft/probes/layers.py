"""Where the label is decided: a linear probe on every layer's hidden state at the answer slots, across training.

For one checkpoint, ``probe_layers`` reads the hidden state of every layer (0 = the token embeddings, L = the
last layer as the model returns it, for llama-style models after the final norm) at the last position of
each scored context, in one batched pass per slot, and reports the out-of-fold AUROC of a linear probe per
layer (``probes/answer_state.py``) beside the AUROC of the model's own P(Yes) at that slot. The slots:

- ``direct``: right after the prompt, for every arm (the slot label-only arms answer at);
- ``after``: right after the answer marker that follows the rationale, for generating arms. The rationale
  is the one ``score`` writes (the decoder under ``score.*``, greedy by default) or, when a scores table is
  passed, its ``generated_text`` re-tokenised (+ the marker's ids), which can differ from the generated ids
  where a text has several tokenisations.

``probe_checkpoints`` applies it to every checkpoint a training run kept (``checkpoint_dirs``) and writes
``probe_layers.parquet``: one row per step, slot, measure (``probe`` per layer, ``p_yes`` with a null layer)
and AUROC, with n and n_pos. Probe folds come from ``score.seed``, the same for every layer, slot and step.

>>> g = np.random.default_rng(0)
>>> y = np.repeat([0, 1], 40)
>>> states = g.normal(size=(80, 3, 4)); states[:, 1, 0] += 3.0 * y  # only layer 1 carries the label
>>> [round(r["auroc"], 1) > 0.8 for r in layer_aurocs(states, y, seed=0)]
[False, True, False]
>>> layer_aurocs(states[:, 0], y, seed=0)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: layer states must be [subjects, layers, hidden], got shape (80, 4)
>>> layer_aurocs(states, y, seed=0, folds=1)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: probe folds must be >= 2 (cross-validation), got 1
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft import rundir
from rationale_sft.config.score import ScoreConfig
from rationale_sft.probes.answer_state import probe_auroc
from rationale_sft.errors import InputError

FILE = "probe_layers.parquet"
SCHEMA = {"step": pl.Int64, "checkpoint": pl.String, "slot": pl.String, "measure": pl.String, "layer": pl.Int64,
          "auroc": pl.Float64, "n": pl.Int64, "n_pos": pl.Int64}


def layer_aurocs(states: np.ndarray, labels: np.ndarray, *, seed: int, folds: int = 5) -> list[dict]:
    """Out-of-fold probe AUROC of each layer of ``states`` [subjects, layers, hidden]: ``{layer, auroc, n, n_pos}``."""
    if np.ndim(states) != 3:
        raise InputError(f"layer states must be [subjects, layers, hidden], got shape {np.shape(states)}")
    check_folds(folds)
    out = []
    for layer in range(states.shape[1]):
        res = probe_auroc(states[:, layer], labels, seed=seed, folds=folds)
        out.append({"layer": layer, "auroc": res["auroc"], "n": res["n"], "n_pos": res["n_pos"]})
    return out


def check_folds(folds: int) -> None:
    """Refuse fewer than two cross-validation folds (before any model is loaded)."""
    if folds < 2:
        raise InputError(f"probe folds must be >= 2 (cross-validation), got {folds}")


def layer_pass(model, contexts: list[list[int]], read_ids: list[int], *, pad: int, batch_size: int,
               device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per context, at its last position: every layer's hidden state [n, L + 1, d], log P(``read_ids``), argmax.

    Contexts are sorted by length and left-padded with explicit position ids, so a row does not depend on
    which rows share its batch.
    """
    import torch

    from rationale_sft.train.data import left_pad

    n = len(contexts)
    states, logp, top = [None] * n, np.zeros((n, len(read_ids))), np.zeros(n, dtype=np.int64)
    order = np.argsort([len(c) for c in contexts], kind="stable")
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        batch = left_pad([contexts[i] for i in idx], pad)
        with torch.no_grad():
            out = model(**{k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")},
                        logits_to_keep=1, use_cache=False, output_hidden_states=True)
        hidden = torch.stack([h[:, -1, :] for h in out.hidden_states], dim=1).float().cpu().numpy()
        lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        for k, i in enumerate(idx):
            states[i], logp[i], top[i] = hidden[k], lp[k, read_ids].double().numpy(), int(lp[k].argmax())
    return np.stack(states), logp, top


def slot_probe(model, tok, contexts: list[list[int]], tails: list[str], labels: np.ndarray, *, cfg: ScoreConfig,
               device: str, folds: int) -> list[dict]:
    """Probe AUROC per layer and the AUROC of P(Yes) at the slot after each context (``tails``: text before it)."""
    from rationale_sft.score.stage import batch_size_for
    from rationale_sft.score.slot import candidate_ids, read_scores, single_token_words, slot_scores
    from rationale_sft.stats.metrics import auroc
    from rationale_sft.train.data import pad_id

    cands = [candidate_ids(tok, t) for t in tails]
    single = single_token_words(cands)
    read_ids = sorted({w[0] for row in cands for w in row}) if single else []
    batch = batch_size_for(cfg.batch_size, device)
    states, logp, top = layer_pass(model, contexts, read_ids, pad=pad_id(tok), batch_size=batch, device=device)
    risk = (read_scores(logp, top, read_ids, cands) if single else
            slot_scores(model, tok, contexts, tails, batch_size=batch, device=device))["p_yes"]
    rows = [{"measure": "probe", **r} for r in layer_aurocs(states, labels, seed=cfg.seed, folds=folds)]
    return rows + [{"measure": "p_yes", "layer": None, "auroc": auroc(labels, np.asarray(risk)), "n": len(labels),
                    "n_pos": int(labels.sum())}]


def after_contexts(model, tok, contexts: list[list[int]], rows: pl.DataFrame, *, marker: str, cfg: ScoreConfig,
                   device: str, scores: pl.DataFrame | None) -> list[list[int]]:
    """Each context + its rationale + the answer marker: from ``scores``' texts, else generated as ``score`` does."""
    from rationale_sft.score.decode import decode_to_marker
    from rationale_sft.score.stage import batch_size_for, marker_text
    from rationale_sft.seeding import derive_seed

    mtext = marker_text(marker)
    marker_ids = list(tok(mtext, add_special_tokens=False)["input_ids"])
    if scores is None:
        dec = decode_to_marker(model, tok, contexts, marker=mtext, marker_ids=marker_ids,
                               max_new_tokens=cfg.max_new_tokens, batch_size=batch_size_for(cfg.batch_size, device),
                               greedy=cfg.greedy,
                               temperature=cfg.temperature, top_p=cfg.top_p,
                               seed=derive_seed(cfg.seed, "generation"), device=device)
        return [list(c) + g.ids for c, g in zip(contexts, dec.gens)]
    texts = rationale_texts(scores, rows["subject_id"].to_list())
    cut = lambda t: t[:t.index(mtext)] if mtext in t else t  # noqa: E731  (a found marker ends the text)
    return [list(c) + list(tok(cut(t), add_special_tokens=False)["input_ids"]) + marker_ids
            for c, t in zip(contexts, texts)]


def rationale_texts(scores: pl.DataFrame, subject_ids: list[int]) -> list[str]:
    """The generated text of each subject in ``scores``; a subject without one is an error naming it.

    >>> s = pl.DataFrame({"subject_id": [1, 2], "generated_text": ["Old.", None]})
    >>> rationale_texts(s, [1])
    ['Old.']
    >>> rationale_texts(s, [2, 3])
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: scores: no generated_text for subject_id [2, 3]; pass the scores.parquet of this checkpoint's generating run, or none to generate
    """
    text = dict(zip(scores["subject_id"].to_list(), scores["generated_text"].to_list()))
    missing = [s for s in subject_ids if text.get(s) is None]
    if missing:
        raise InputError(f"scores: no generated_text for subject_id {missing[:5]}; pass the scores.parquet of this "
                         "checkpoint's generating run, or none to generate")
    return [text[s] for s in subject_ids]


def probe_layers(model_dir, examples, *, cfg: ScoreConfig | None = None, scores: pl.DataFrame | None = None,
                 folds: int = 5, after: bool = True) -> pl.DataFrame:
    """Probe AUROC per layer and P(Yes) AUROC at the direct slot and, for generating arms, the after slot."""
    from rationale_sft import models
    from rationale_sft.score.stage import scoring_inputs, select_split
    from rationale_sft.train.loop import device_of, read_table

    check_folds(folds)
    cfg = cfg or ScoreConfig()
    rows = select_split(read_table(examples, "examples"), cfg.split)
    labels = rows["label"].to_numpy().astype(int)
    model, tok = models.load(model_dir)
    device = device_of(cfg.device)
    model.to(device).eval()
    meta, mode, (contexts, tails, _) = scoring_inputs(cfg, model_dir, model, tok, rows)
    kw = dict(cfg=cfg, device=device, folds=folds)
    out = [{"slot": "direct", **r} for r in slot_probe(model, tok, contexts, tails, labels, **kw)]
    if after and mode == "generate":
        seqs = after_contexts(model, tok, contexts, rows, marker=meta["answer_marker"], cfg=cfg, device=device,
                              scores=scores)
        out += [{"slot": "after", **r} for r in slot_probe(model, tok, seqs, [meta["answer_marker"]] * len(seqs),
                                                           labels, **kw)]
    return pl.DataFrame(out, schema={k: v for k, v in SCHEMA.items() if k not in ("step", "checkpoint")})


def checkpoint_dirs(run_dir) -> list[tuple[int, Path]]:
    """``(step, dir)`` of every checkpoint a training run holds, by step: ``checkpoint/`` and ``checkpoints/*/``.

    A checkpoint is a directory with a ``training.json`` that records its ``step``; ``checkpoint/`` is the
    last one ``train`` wrote. Intermediate checkpoints are read from ``checkpoints/<name>/`` (one per kept
    step). Two directories with the same step keep the first in that order.
    """
    from rationale_sft.train.loop import CHECKPOINT, META

    run_dir = Path(run_dir)
    found: dict[int, Path] = {}
    for path in [run_dir / CHECKPOINT, *sorted((run_dir / "checkpoints").glob("*"))]:
        if (path / META).is_file():
            found.setdefault(int(rundir.read_json(path / META)["step"]), path)
    if not found:
        raise InputError(f"{run_dir}: no checkpoint (a directory with {META}) in {CHECKPOINT}/ or checkpoints/*/; "
                         "train first (train.checkpoint_every keeps intermediate steps)")
    return sorted(found.items())


def probe_checkpoints(run_dir, examples, *, cfg: ScoreConfig | None = None, folds: int = 5,
                      after: bool | str = True, scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """``probe_layers`` on every checkpoint of a training run; writes ``RUN/probe_layers.parquet`` (``SCHEMA``).

    ``after``: the after slot at every checkpoint (True), at the last one only (``"final"``: the others
    would each generate rationales) or nowhere (False). ``scores``: the last checkpoint's scores.parquet,
    whose rationales its after slot reads instead of generating them again.
    """
    check_folds(folds)
    if after not in (True, False, "final"):
        raise InputError(f"probe_checkpoints: after must be true, false or 'final', got {after!r}")
    run_dir = Path(run_dir)
    parts = []
    found = checkpoint_dirs(run_dir)
    for step, path in found:
        last = step == found[-1][0]
        table = probe_layers(path, examples, cfg=cfg, folds=folds, after=after is True or (after == "final" and last),
                             scores=scores if last else None)
        parts.append(table.with_columns(step=pl.lit(step, pl.Int64),
                                        checkpoint=pl.lit(path.relative_to(run_dir).as_posix(), pl.String)))
    table = pl.concat(parts).select(list(SCHEMA)).sort("step", "slot", "measure", "layer", nulls_last=True)
    rundir.write_parquet(table, run_dir / FILE)
    return table


def best_layers(table: pl.DataFrame) -> dict:
    """Per slot, at the last probed step: the best layer's probe AUROC and that layer (results columns).

    >>> t = pl.DataFrame({"step": [5, 10, 10, 10], "slot": ["direct"] * 4, "measure": ["probe"] * 3 + ["p_yes"],
    ...                   "layer": [0, 0, 1, None], "auroc": [0.9, 0.6, 0.7, 0.65]})
    >>> best_layers(t)
    {'probe_best_direct': 0.7, 'probe_best_layer_direct': 1}
    """
    last = table.filter((pl.col("step") == table["step"].max()) & (pl.col("measure") == "probe"))
    out = {}
    for slot in sorted(set(last["slot"].to_list())):
        row = last.filter(pl.col("slot") == slot).sort("auroc", "layer", descending=[True, False],
                                                        nulls_last=True).row(0, named=True)
        out |= {f"probe_best_{slot}": row["auroc"], f"probe_best_layer_{slot}": row["layer"]}
    return out


__all__ = ["FILE", "SCHEMA", "check_folds", "layer_aurocs", "layer_pass", "slot_probe", "probe_layers",
           "checkpoint_dirs", "probe_checkpoints", "best_layers"]
