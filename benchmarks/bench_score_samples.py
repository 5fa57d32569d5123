"""Self-consistency cost: seconds per subject of greedy rationale scoring vs K sampled rationales, one run.

Prints, on one random tiny llama and the same toy prompts: wall and CPU seconds per subject of greedy
rationale scoring (``score_contexts``, mode generate: the greedy rationale, P(Yes) after it and the direct
slot) and of drawing K sampled rationales with P(Yes) after each (``score.samples.sample_rationales``, what
``score.n_samples=K`` adds), and their ratios (total, and per rationale). A random model never writes the
marker, so every row runs to ``--new`` tokens: both paths do the same number of decode steps per rationale.

    .venv/bin/python benchmarks/bench_score_samples.py [--n 16] [--prompt-tokens 300] [--new 64] [--batch 16] [--k 4] [--size xs] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from rationale_sft.config.score import ScoreConfig
from rationale_sft.models import load
from rationale_sft.score.stage import score_contexts
from rationale_sft.score.samples import sample_rationales
from rationale_sft.train.toy import toy_data, toy_model

from bench_decode import prompts_of  # the same toy contexts as the decoder benchmark


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall and CPU seconds of ``repeats`` calls."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--size", default="xs")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    ex, rat = toy_data(n=200, seed=0)
    with tempfile.TemporaryDirectory() as d:
        toy_model(Path(d) / "m", ex["prompt"].to_list() + rat["text"].to_list(), size=args.size)
        model, tok = load(Path(d) / "m")
    model.eval()
    contexts = prompts_of(tok, args.n, args.prompt_tokens)
    tails = ["Answer:"] * args.n
    rows = pl.DataFrame({"subject_id": range(args.n), "prediction_time": [dt.datetime(2010, 1, 1)] * args.n})
    cfg = ScoreConfig(batch_size=args.batch, max_new_tokens=args.new, n_samples=args.k, temperature=1.0)
    kw = dict(marker="Answer:", cfg=cfg, device="cpu")
    score_contexts(model, tok, contexts[:2], tails[:2], mode="generate", **kw)  # warm-up
    g_wall, g_cpu = timed(lambda: score_contexts(model, tok, contexts, tails, mode="generate", **kw), args.repeats)
    s_wall, s_cpu = timed(lambda: sample_rationales(model, tok, rows, contexts, tails, **kw), args.repeats)
    n = args.n
    print(f"tiny llama {args.size}, {n} subjects, {args.prompt_tokens} prompt tokens, {args.new} new tokens per "
          f"rationale, batch {args.batch}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"greedy rationale + P(Yes):      {g_wall / n:.3f} s/subject wall, {g_cpu / n:.3f} CPU-s/subject")
    print(f"K={args.k} sampled rationales + P(Yes): {s_wall / n:.3f} s/subject wall, {s_cpu / n:.3f} CPU-s/subject")
    print(f"ratio K={args.k} / greedy: {s_wall / g_wall:.2f}x wall, {s_cpu / g_cpu:.2f}x CPU; per rationale "
          f"{s_wall / g_wall / args.k:.2f}x wall, {s_cpu / g_cpu / args.k:.2f}x CPU")


if __name__ == "__main__":
    main()
