"""Gradient conflict between the label tokens and the rationale tokens of one micro-batch, per layer.

At the steps ``train.conflict_every`` selects, the loop takes the first micro-batch of the step that has
both label and other target tokens and, from the forward pass it trains on, computes two gradients over
every trainable parameter: of the label-token loss (mean CE over the label tokens) and of the
rationale-token loss (mean CE over the other target tokens: rationale and marker, the padding of
``padded_label_only``). It reports their cosine and the norm ratio ``|g_label| / |g_rationale|``, over all
parameters (group ``all``) and per group of parameters (``param_group``).

``torch.autograd.grad`` returns the two gradients without accumulating them into ``.grad``, the graph is
kept for the training backward, and nothing is drawn from a random generator, so the weights, optimizer
state and data order of a run are the same with the measurement on or off (tested).
"""

from __future__ import annotations

import math
import re

BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
"A transformer block's parameters: ``model.layers.3.mlp...`` (llama, qwen2, mistral, gemma), ``transformer.h.3...``."
TABLE_COLUMNS = ["step", "group", "cos", "norm_ratio", "label_norm", "rationale_norm"]
"Columns of grad_conflict.parquet (one row per measured step and parameter group)."


def param_group(name: str) -> str:
    """The group of a parameter: its transformer block, the embeddings, the final norm, the LM head, or other.

    >>> [param_group(n) for n in ("model.layers.3.mlp.up_proj.weight", "transformer.h.11.attn.c_attn.bias",
    ...  "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", "model.embed_tokens.weight",
    ...  "transformer.wpe.weight", "model.norm.weight", "transformer.ln_f.bias", "lm_head.weight", "score.bias")]
    ['layer_03', 'layer_11', 'layer_00', 'embeddings', 'embeddings', 'final_norm', 'final_norm', 'lm_head', 'other']
    """
    block = BLOCK.search(name)
    if block:
        return f"layer_{int(block.group(1)):02d}"
    last = name.split(".")
    if any("embed" in part or part in ("wte", "wpe") for part in last):
        return "embeddings"
    if "lm_head" in last:
        return "lm_head"
    if any("norm" in part or part == "ln_f" for part in last[:-1]):
        return "final_norm"
    return "other"


def conflict_rows(sums: dict[str, tuple[float, float, float]]) -> list[dict]:
    """Rows ``group, cos, norm_ratio, label_norm, rationale_norm`` from per-group sums
    ``(g_label . g_rationale, |g_label|^2, |g_rationale|^2)``; group ``all`` first. A zero gradient gives
    None where the ratio or cosine is undefined.

    >>> rows = conflict_rows({"b": (-6.0, 4.0, 9.0), "a": (0.0, 9.0, 4.0)})
    >>> [(r["group"], round(r["cos"], 4), round(r["norm_ratio"], 4)) for r in rows]
    [('all', -0.4615, 1.0), ('a', 0.0, 1.5), ('b', -1.0, 0.6667)]
    >>> conflict_rows({"a": (0.0, 1.0, 0.0)})[1]["norm_ratio"] is None
    True
    """
    total = tuple(sum(v[i] for v in sums.values()) for i in range(3))
    rows = []
    for group, (dot, ll, rr) in [("all", total), *sorted(sums.items())]:
        nl, nr = math.sqrt(ll), math.sqrt(rr)
        rows.append({"group": group, "cos": dot / (nl * nr) if nl > 0 and nr > 0 else None,
                     "norm_ratio": nl / nr if nr > 0 else None, "label_norm": nl, "rationale_norm": nr})
    return rows


def gradient_conflict(label_loss, rationale_loss, named_params: list[tuple[str, object]]) -> list[dict]:
    """Cosine and norm ratio of the gradients of two losses over ``named_params`` (all, then per group).

    The graph is retained: the caller still backpropagates its training loss through it afterwards.
    """
    import torch

    params = [p for _, p in named_params]
    grads = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True, materialize_grads=True)
             for loss in (label_loss, rationale_loss)]
    sums: dict[str, list[float]] = {}
    with torch.no_grad():
        for (name, _), gl, gr in zip(named_params, *grads):
            acc = sums.setdefault(param_group(name), [0.0, 0.0, 0.0])
            gl, gr = gl.double(), gr.double()
            acc[0] += float((gl * gr).sum())
            acc[1] += float((gl * gl).sum())
            acc[2] += float((gr * gr).sum())
    return conflict_rows({k: tuple(v) for k, v in sums.items()})


def measure(ce, is_label, valid, named_params) -> list[dict] | None:
    """Gradient conflict of one micro-batch's label-token mean CE vs its other target tokens' mean CE
    (None when the micro-batch lacks either kind of token)."""
    other = valid & ~is_label
    if not bool(is_label.any()) or not bool(other.any()):
        return None
    return gradient_conflict(ce[is_label].mean(), ce[other].mean(), named_params)


def due(every: int, step: int) -> bool:
    """Whether optimizer step ``step`` (1-based, as logged) is measured.

    >>> [s for s in range(1, 25) if due(10, s)], due(0, 10)
    ([10, 20], False)
    """
    return every > 0 and step % every == 0
