"""Overhead of the gradient-conflict measurement: seconds per training step with train.conflict_every=10 vs off.

Trains the freeform arm on a tiny toy model, alternating off and on runs in one process, and reads each
step's time from train_log.parquet (n_tokens / tokens_per_s: the step itself, without loading or saving).
Prints mean seconds per step of each setting (best of the repeats) and their ratio; on a shared machine
that ratio is noisy, so it also prints the ratio rebuilt from step medians (unmeasured and measured steps
of the on runs weighted 9:1 for every=10, over the off runs' median) and the cost of one measured step
relative to an unmeasured one.
Usage: python benchmarks/bench_grad_conflict.py [--steps 40] [--every 10] [--size xs] [--reps 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.train.loop import train
from rationale_sft.train.toy import toy_data, toy_model


def step_seconds(root: Path, name: str, cfg: TrainConfig, ex, rat, base) -> pl.DataFrame:
    """``step, grad_cos, seconds`` of one training run."""
    train(cfg, root / name, ex, rat, base)
    log = pl.read_parquet(root / name / "train_log.parquet")
    return log.select("step", "grad_cos", seconds=pl.col("n_tokens") / pl.col("tokens_per_s"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--size", default="xs", help="tiny model size (xs or s)")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    ex, rat = toy_data(n=120, seed=0)
    common = {"arm": "freeform", "steps": args.steps, "micro_batch": 4, "lr": 1e-3, "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = toy_model(root / "base", ex["prompt"].to_list() + rat["text"].to_list(), size=args.size)
        runs = {"off": [], "on": []}
        for rep in range(args.reps):
            for name, every in (("off", 0), ("on", args.every)):
                cfg = build(TrainConfig, {**common, "conflict_every": every})
                runs[name].append(step_seconds(root, f"{name}{rep}", cfg, ex, rat, base))
    off = min(float(r["seconds"].mean()) for r in runs["off"])
    on = min(float(r["seconds"].mean()) for r in runs["on"])
    every_step = pl.concat(runs["on"])
    measured = float(every_step.filter(pl.col("grad_cos").is_not_null())["seconds"].median())
    plain = float(every_step.filter(pl.col("grad_cos").is_null())["seconds"].median())
    off_median = float(pl.concat(runs["off"])["seconds"].median())
    robust = (plain * (args.every - 1) + measured) / args.every / off_median
    print(f"model {args.size}, {args.steps} steps, micro_batch 4, freeform arm, {args.reps} runs per setting")
    print(f"seconds/step off (mean, best run):               {off:.4f}")
    print(f"seconds/step conflict_every={args.every} (mean, best run): {on:.4f}")
    print(f"overhead ratio (on / off, means):                {on / off:.3f}")
    print(f"overhead ratio (from step medians, less noisy):  {robust:.3f}")
    print(f"measured step / unmeasured step (medians):       {measured / plain:.2f}")

if __name__ == "__main__":
    main()
