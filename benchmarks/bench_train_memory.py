"""Resident memory of training: RSS over the steps of a run and across repeated runs in one process.

Runs ``--runs`` trainings one after another in this process (as the grid's local executor does), on a toy
gpt2/llama model or a real checkpoint (``--model smollm2-135m-instruct``), full fine-tuning or ``--lora``.
A thread samples the current RSS every 20 ms; per run it prints the RSS before, the peak, the most RSS of
the first and last quarter of the run (growth within a run) and the RSS after, then the RSS after each
micro-batch's forward pass. ``--no-release`` turns off what ``train`` does when a run ends
(``memory.release``: collect reference cycles, hand freed heap back to the OS), to compare before and
after the fix in the same code; ``--release-every-step`` also releases before every forward pass. Set
``MALLOC_ARENA_MAX`` in the environment to compare glibc arena settings.
Usage: python benchmarks/bench_train_memory.py [--model toy|smollm2-135m-instruct] [--family gpt2] [--runs 4]
       [--steps 20] [--lora] [--micro-batch 4] [--grad-accum 1] [--no-release] [--release-every-step]
       [--no-bucket] [--checkpointing]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from rationale_sft import memory
from rationale_sft.config import build
from rationale_sft.config.train import TrainConfig
from rationale_sft.train import loop
from rationale_sft.train.toy import toy_data, toy_model

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


class Sampler(threading.Thread):
    """Records ``(seconds, rss_mb)`` every ``every`` seconds until stopped."""

    def __init__(self, every: float = 0.02):
        super().__init__(daemon=True)
        self.every, self.samples, self.running = every, [], True

    def run(self) -> None:
        t0 = time.perf_counter()
        while self.running:
            self.samples.append((time.perf_counter() - t0, rss_mb()))
            time.sleep(self.every)


def watch_forwards(every_step: bool) -> list[float]:
    """RSS after each forward pass of the loop (recorded by wrapping ``loop.token_losses``)."""
    rss, forward, release = [], loop.token_losses, memory.release

    def wrapped(*args, **kwargs):
        if every_step:
            release()
        out = forward(*args, **kwargs)
        rss.append(rss_mb())
        return out

    loop.token_losses = wrapped
    return rss


def one_run(cfg: TrainConfig, out: Path, ex, rat, base, per_step: list[float]) -> dict:
    """RSS before, peak, at the first/last quarter and after one training run."""
    before = rss_mb()
    per_step.clear()
    sampler = Sampler()
    sampler.start()
    summary = loop.train(cfg, out, ex, rat, base)
    sampler.running = False
    sampler.join()
    rss = [r for _, r in sampler.samples]
    q = max(1, len(rss) // 4)
    return {"before": before, "peak": max(rss), "first_q": max(rss[:q]), "last_q": max(rss[-q:]),
            "after": rss_mb(), "tokens_per_s": summary["tokens_per_s"], "padding": summary["padding_fraction"],
            "steps": list(per_step)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy", help="toy, or a model dir / alias such as smollm2-135m-instruct")
    ap.add_argument("--family", default="gpt2", help="family of the toy model")
    ap.add_argument("--size", default="xs", help="size of the toy model")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--examples", type=int, default=120)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--no-bucket", action="store_true", help="train.bucket_by_length=false")
    ap.add_argument("--checkpointing", action="store_true", help="train.gradient_checkpointing=true")
    ap.add_argument("--no-release", action="store_true", help="skip memory.release (the state before the fix)")
    ap.add_argument("--release-every-step", action="store_true", help="also release before every forward pass")
    args = ap.parse_args()
    per_step = watch_forwards(args.release_every_step)
    if args.no_release:
        memory.release = lambda: None
    ex, rat = toy_data(n=args.examples, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = (toy_model(root / "base", ex["prompt"].to_list() + rat["text"].to_list(), family=args.family,
                          size=args.size, vocab_size=2048) if args.model == "toy" else args.model)
        cfg = build(TrainConfig, {"arm": "freeform", "steps": args.steps, "micro_batch": args.micro_batch,
                                  "grad_accum": args.grad_accum, "lr": 1e-4, "lora": {"enabled": args.lora},
                                  "bucket_by_length": not args.no_bucket,
                                  "gradient_checkpointing": args.checkpointing})
        print(f"model={args.model} lora={args.lora} steps={args.steps} micro_batch={args.micro_batch} "
              f"release={not args.no_release} every_step={args.release_every_step} "
              f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}")
        print(f"{'run':>3} {'before':>8} {'first_q':>8} {'last_q':>8} {'peak':>8} {'after':>8} {'tok/s':>8} "
              f"{'pad':>5}  (MiB)")
        for i in range(args.runs):
            r = one_run(cfg, root / f"run{i}", ex, rat, base, per_step)
            print(f"{i:>3} {r['before']:8.0f} {r['first_q']:8.0f} {r['last_q']:8.0f} {r['peak']:8.0f} "
                  f"{r['after']:8.0f} {r['tokens_per_s']:8.0f} {r['padding']:5.2f}   per forward: "
                  + " ".join(f"{x:.0f}" for x in r["steps"]), flush=True)


if __name__ == "__main__":
    main()
