"""Rationale generation up to the answer marker: batched, KV-cached ``generate`` with a per-row marker stop.

Each row stops as soon as its decoded continuation contains the newline + answer marker; the text after
the marker is cut off, so the answer slot is the position right after the marker. A row that reaches
``max_new_tokens`` (or end-of-sequence) without the marker gets the marker appended and
``marker_found = False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rationale_sft.train.data import left_pad, pad_id


class Generated(NamedTuple):
    """One row's continuation: token ids up to and including the marker, its text, whether it was written."""

    ids: list[int]
    text: str
    marker_found: bool


def cut_at_marker(tokenizer, ids: Sequence[int], marker: str) -> int | None:
    """Number of leading tokens whose decoded text first contains ``marker`` (None when it never does)."""
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    if marker not in text:
        return None
    lo, hi = 1, len(ids)
    while lo < hi:  # the shortest prefix containing the marker (containment is monotone in the prefix)
        mid = (lo + hi) // 2
        if marker in tokenizer.decode(list(ids[:mid]), skip_special_tokens=False):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _stopper(tokenizer, marker: str, start: int, look: int):
    from transformers import StoppingCriteria

    class MarkerStop(StoppingCriteria):
        """Stop each row once its newest tokens spell the marker."""

        def __call__(self, input_ids, scores, **kwargs):
            import torch

            tails = input_ids[:, max(start, input_ids.shape[1] - look):].tolist()
            return torch.tensor([marker in tokenizer.decode(t) for t in tails], device=input_ids.device)

    return MarkerStop()


def generate_to_marker(model, tokenizer, contexts: Sequence[Sequence[int]], *, marker: str, marker_ids: list[int],
                       max_new_tokens: int, batch_size: int, greedy: bool, temperature: float, seed: int,
                       device: str) -> list[Generated]:
    """Generate each context's continuation until ``marker`` (e.g. '\\nAnswer:'), batched by length."""
    import torch
    from transformers import StoppingCriteriaList

    pad, eos = pad_id(tokenizer), tokenizer.eos_token_id
    out: list[Generated | None] = [None] * len(contexts)
    order = np.argsort([len(c) for c in contexts], kind="stable")
    look = len(marker_ids) + 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = left_pad([contexts[i] for i in idx], pad)
            width = batch["input_ids"].shape[1]
            sampling = {} if greedy else {"temperature": temperature, "top_k": 0, "top_p": 1.0}
            with torch.no_grad():
                seqs = model.generate(input_ids=batch["input_ids"].to(device),
                                      attention_mask=batch["attention_mask"].to(device),
                                      max_new_tokens=max_new_tokens, do_sample=not greedy, pad_token_id=pad,
                                      eos_token_id=eos, use_cache=True,
                                      stopping_criteria=StoppingCriteriaList([_stopper(tokenizer, marker, width, look)]),
                                      **sampling).cpu()
            for row, i in enumerate(idx):
                out[i] = finish(tokenizer, seqs[row, width:].tolist(), marker, marker_ids, {pad, eos})
    return out


def finish(tokenizer, new: list[int], marker: str, marker_ids: list[int], stop_ids: set) -> Generated:
    """Cut a continuation after its first marker, or strip padding/EOS and append the marker."""
    cut = cut_at_marker(tokenizer, new, marker)
    if cut is not None:
        ids = new[:cut]
        return Generated(ids, tokenizer.decode(ids, skip_special_tokens=True), True)
    while new and new[-1] in stop_ids:
        new = new[:-1]
    ids = new + list(marker_ids)
    return Generated(ids, tokenizer.decode(new, skip_special_tokens=True), False)
