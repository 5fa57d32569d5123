"""Benchmark: training tokens/s of every family/size, fp32 vs bf16 autocast, against a matmul peak.

Prints one row per family/size/precision: parameters, tokens/s, model FLOP/s (6 * N * tokens/s, N all
parameters: the tied embedding is the output projection) and that as a share of the measured matmul peak
of the same precision. All figures come from one run, so ratios are comparable even on a busy machine.

    .venv/bin/python benchmarks/bench_models.py [--steps 2] [--repeats 3] [--batch 8] [--seq 256]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
from peak import matmul_peak

from rationale_sft.models.families import FAMILIES, SIZES, build_model, n_params
from rationale_sft.models.tokenizer import train_tokenizer
from rationale_sft.precision import bf16_native


def train_rates(model, vocab: int, batch: int, seq: int, steps: int, repeats: int) -> dict[str, dict[bool, float]]:
    """Training tokens/s (forward, backward, AdamW step) without/with bf16 autocast: best of ``repeats``.

    Returns wall-clock tokens/s and tokens per CPU-second (all threads; time spent descheduled by other
    processes does not count, so it is the steadier figure on a shared machine). The two precisions
    alternate, so a burst of load from other processes hits both alike.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))

    def step(bf16: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    best = {"wall": {False: 0.0, True: 0.0}, "cpu": {False: 0.0, True: 0.0}}
    for bf16 in (False, True):
        step(bf16)  # warm up both code paths
    for _ in range(repeats):
        for bf16 in (False, True):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step(bf16)
            tokens = steps * batch * seq
            best["wall"][bf16] = max(best["wall"][bf16], tokens / (time.perf_counter() - wall))
            best["cpu"][bf16] = max(best["cpu"][bf16], tokens / max(time.process_time() - cpu, 1e-9))
    return best


def tokenizer(vocab: int):
    r = random.Random(0)
    words = ["".join(r.choice("abcdefghijklmnop") for _ in range(r.randint(2, 8))) for _ in range(3000)]
    texts = [" ".join(r.choice(words) for _ in range(100)) for _ in range(300)]
    return train_tokenizer(texts, vocab, tempfile.mkdtemp())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2, help="timed optimizer steps per trial")
    ap.add_argument("--repeats", type=int, default=3, help="trials per precision (the best counts)")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    ap.add_argument("--vocab", type=int, default=2048, help="tokenizer vocabulary size")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes")
    args = ap.parse_args()
    tok = tokenizer(args.vocab)
    peak = {False: matmul_peak(torch.float32), True: matmul_peak(torch.bfloat16)}
    rows = []
    print(f"threads {torch.get_num_threads()}  vocab {len(tok)}  batch {args.batch} x seq {args.seq}  "
          f"cpu {torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16_native('cpu')} (without it, "
          "bf16: true in a config runs float32)")
    print(f"matmul peak 1024^3: fp32 {peak[False] / 1e9:.1f} GFLOP/s, bf16 {peak[True] / 1e9:.1f} GFLOP/s "
          f"(bf16/fp32 {peak[True] / peak[False]:.2f})")
    print(f"{'family':8} {'size':4} {'params':>10} {'fp32 tok/s':>11} {'bf16 tok/s':>11} {'bf16/fp32':>9} "
          f"{'fp32 MFU':>8} {'bf16 MFU':>8} {'fp32 tok/cpu-s':>14} {'bf16 tok/cpu-s':>14} {'ratio':>6}")
    for family in args.families.split(","):
        for size in args.sizes.split(","):
            model = build_model(family, size, tok, seed=0)
            n = n_params(model)
            rates = train_rates(model, len(tok), args.batch, args.seq, args.steps, args.repeats)
            rate, cpu = rates["wall"], rates["cpu"]
            rows.append((family, size, n, rate))
            print(f"{family:8} {size:4} {n:>10,} {rate[False]:>11,.0f} {rate[True]:>11,.0f} "
                  f"{rate[True] / rate[False]:>9.2f} {6 * n * rate[False] / peak[False]:>8.1%} "
                  f"{6 * n * rate[True] / peak[True]:>8.1%} {cpu[False]:>14,.0f} {cpu[True]:>14,.0f} "
                  f"{cpu[True] / cpu[False]:>6.2f}", flush=True)
    # the peak again at the end: best of both, so a busy start does not inflate the utilisation figures
    peak = {k: max(v, matmul_peak(torch.bfloat16 if k else torch.float32)) for k, v in peak.items()}
    print(f"matmul peak, best of start and end: fp32 {peak[False] / 1e9:.1f}, bf16 {peak[True] / 1e9:.1f} GFLOP/s")
    for family, size, n, rate in rows:
        print(f"  {family:8} {size:4} model FLOP/s fp32 {6 * n * rate[False] / 1e9:6.2f} G "
              f"({6 * n * rate[False] / peak[False]:.1%} of peak), bf16 {6 * n * rate[True] / 1e9:6.2f} G "
              f"({6 * n * rate[True] / peak[True]:.1%})")


if __name__ == "__main__":
    main()
