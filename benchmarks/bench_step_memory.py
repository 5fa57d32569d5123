"""Peak memory of one LoRA training step on a real checkpoint: with and without a padding mask and activation
checkpointing.

Each setting runs in a fresh process (so one peak cannot hide another): load the model, wrap it with LoRA
(r = 16) by `train.loop.load_base`, then one forward and backward pass over a batch of ``--batch`` x ``--length``
random token ids under bf16 autocast, with logits at the last 4 positions only (as `train.loop.token_losses`
keeps logits only where there are targets). ``padded`` masks the last fifth of every row but the first, as
right padding to the longest row of a micro-batch does. Prints the RSS the step added (the kernel's
high-water mark minus the RSS before it) and the step's time, and each setting's ratio to the first.
Usage: python benchmarks/bench_step_memory.py [--model smollm2-135m-instruct] [--batch 4] [--length 1300]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SETTINGS = [("unpadded", False, False), ("padded", True, False), ("padded, checkpointing", True, True)]


def step(model_name: str, batch: int, length: int, padded: bool, checkpointing: bool, threads: int) -> dict:
    """One LoRA forward+backward in this process: ``{"added_gb", "seconds"}``."""
    import torch

    from rationale_sft import memory
    from rationale_sft.config import build
    from rationale_sft.config.train import TrainConfig
    from rationale_sft.train.loop import load_base

    torch.set_num_threads(threads)
    cfg = build(TrainConfig, {"gradient_checkpointing": checkpointing,
                              "lora": {"enabled": True, "r": 16, "alpha": 32.0}})
    model, _ = load_base(cfg, model_name)  # as `train` loads it: checkpointing first, then LoRA
    model.train()
    ids = torch.randint(100, model.config.vocab_size - 100, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if padded:
        mask[1:, int(length * 0.8):] = 0
    memory.release()
    memory.reset_peak_rss()
    before = memory.peak_rss_mb()  # the reset sets the high-water mark to the current RSS
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=mask, logits_to_keep=torch.arange(length - 4, length), use_cache=False)
    out.logits.float().logsumexp(-1).mean().backward()
    seconds = time.perf_counter() - start
    peak = memory.peak_rss_mb()
    return {"added_gb": (peak - before) / 1024, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model dir or alias")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=1300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting, print its JSON
    args = ap.parse_args()
    if args.one is not None:
        name, padded, ckpt = SETTINGS[int(args.one)]
        print(json.dumps(step(args.model, args.batch, args.length, padded, ckpt, args.threads)))
        return
    print(f"{args.model}, LoRA r=16, one step of {args.batch} x {args.length} tokens, bf16 autocast")
    first = None
    for k, (name, _, _) in enumerate(SETTINGS):
        cmd = [sys.executable, __file__, "--one", str(k), "--model", args.model, "--batch", str(args.batch),
               "--length", str(args.length), "--threads", str(args.threads)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        first = first or res
        print(f"{name:>24}: +{res['added_gb']:.2f} GB ({res['added_gb'] / first['added_gb']:.2f}x), "
              f"{res['seconds']:.1f} s ({res['seconds'] / first['seconds']:.2f}x)")


if __name__ == "__main__":
    main()
