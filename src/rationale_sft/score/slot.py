"""Answer-slot probabilities: P(Yes) and P(No) of the token(s) right after a context, in one batched pass.

Contexts are sorted by length, left-padded with explicit position ids (0 at each row's first real
token) and an attention mask, and only the last position's logits are computed, so a row's scores do not
depend on which rows share its batch. When a label word is a single token (the usual case, checked per
tokenizer) one forward pass reads both words; otherwise each word's token log-probabilities are summed
over a pass on context + word (documented in docs/arms.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rationale_sft import progress
from rationale_sft.answer import LABEL_WORDS, joiner
from rationale_sft.train.data import left_pad, pad_id


def candidate_ids(tokenizer, prev_text: str) -> list[list[int]]:
    """Token ids of each label word as it follows ``prev_text`` (leading space or not)."""
    lead = joiner(prev_text, "label")
    return [list(tokenizer(lead + w, add_special_tokens=False)["input_ids"]) for w in LABEL_WORDS]


def _batches(order: np.ndarray, size: int):
    for start in range(0, len(order), size):
        yield order[start:start + size]


def forward_last(model, batch: dict, device: str, states: bool):
    """Log-probabilities (float32, cpu) and optionally the last hidden state at each row's last position."""
    import torch

    with torch.no_grad():
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    position_ids=batch["position_ids"].to(device), logits_to_keep=1, use_cache=False,
                    output_hidden_states=states)
    logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
    hidden = out.hidden_states[-1][:, -1, :].float().cpu().numpy() if states else None
    return logp, hidden


def slot_scores(model, tokenizer, contexts: Sequence[Sequence[int]], prev_texts: Sequence[str], *,
                batch_size: int, device: str, states: bool = False, stage: str = "answer slot") -> dict:
    """Per context: ``p_yes`` (normalised risk), ``label_mass``, greedy ``top`` word (or None), hidden ``states``.

    Progress is reported as ``stage`` (progress.stage), in texts."""
    n = len(contexts)
    cands = [candidate_ids(tokenizer, p) for p in prev_texts]
    logp_words = np.zeros((n, len(LABEL_WORDS)))
    top: list[str | None] = [None] * n
    hidden = [None] * n
    pad = pad_id(tokenizer)
    order = np.argsort([len(c) for c in contexts], kind="stable")
    with progress.stage(stage, n, unit="texts") as advance:
        for idx in _batches(order, batch_size):
            logp, h = forward_last(model, left_pad([contexts[i] for i in idx], pad), device, states)
            best = logp.argmax(-1).tolist()
            for row, i in enumerate(idx):
                firsts = [c[0] for c in cands[i]]
                logp_words[i] = [float(logp[row, t]) for t in firsts]
                top[i] = LABEL_WORDS[firsts.index(best[row])] if best[row] in firsts else None
                if states:
                    hidden[i] = h[row]
            advance(len(idx))
    multi = [i for i in range(n) if any(len(c) > 1 for c in cands[i])]
    if multi:
        _add_continuations(model, tokenizer, contexts, cands, multi, logp_words, batch_size, device)
    return {**label_scores(logp_words, top), "states": np.stack(hidden) if states and n else None}


def label_scores(logp_words: np.ndarray, top: list) -> dict:
    """``p_yes`` (normalised risk), ``label_mass`` and ``top`` from log P of each label word per row.

    >>> s = label_scores(np.log([[0.3, 0.1]]), ["Yes"])
    >>> round(float(s["p_yes"][0]), 6), round(float(s["label_mass"][0]), 6), s["top"]
    (0.75, 0.4, ['Yes'])
    """
    p = np.exp(logp_words)
    mass = p.sum(1)
    return {"p_yes": p[:, 0] / np.where(mass > 0, mass, 1.0), "label_mass": mass, "top": top}


def single_token_words(cands: Sequence[list[list[int]]]) -> bool:
    """Whether every label word of every row is one token (then one slot's logits score it)."""
    return all(len(word) == 1 for row in cands for word in row)


def read_scores(logp: np.ndarray, top_ids: np.ndarray, read_ids: Sequence[int],
                cands: Sequence[list[list[int]]]) -> dict:
    """Slot scores from log P(``read_ids``) and the most likely token per row; single-token label words only.

    >>> s = read_scores(np.log([[0.2, 0.6, 0.1]]), np.array([7]), [5, 7, 9], [[[7], [9]]])
    >>> round(float(s["p_yes"][0]), 6), s["top"]
    (0.857143, ['Yes'])
    """
    assert single_token_words(cands), "read_scores needs single-token label words; use slot_scores"
    col = {t: k for k, t in enumerate(read_ids)}
    logp_words = np.array([[logp[i, col[w[0]]] for w in row] for i, row in enumerate(cands)])
    logp_words = logp_words.reshape(len(cands), len(LABEL_WORDS))
    firsts = [[w[0] for w in row] for row in cands]
    top = [LABEL_WORDS[f.index(int(t))] if int(t) in f else None for f, t in zip(firsts, top_ids)]
    return label_scores(logp_words, top)


def _add_continuations(model, tokenizer, contexts, cands, rows, logp_words, batch_size, device) -> None:
    """Add log P(tokens 2..m of each word | context + earlier tokens) for multi-token words (in place)."""
    import torch

    pad = pad_id(tokenizer)
    jobs = [(i, w) for i in rows for w in range(len(LABEL_WORDS)) if len(cands[i][w]) > 1]
    seqs = [list(contexts[i]) + cands[i][w] for i, w in jobs]
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for idx in _batches(order, batch_size):
        batch = left_pad([seqs[j] for j in idx], pad)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                           position_ids=batch["position_ids"].to(device), use_cache=False).logits.float().cpu()
        logp = torch.log_softmax(logits, -1)
        for row, j in enumerate(idx):
            i, w = jobs[j]
            word = cands[i][w]
            width = batch["input_ids"].shape[1]
            for k in range(1, len(word)):  # token k of the word sits at column width - len(word) + k
                logp_words[i, w] += float(logp[row, width - len(word) + k - 1, word[k]])
