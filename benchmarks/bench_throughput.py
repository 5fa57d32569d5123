"""This machine's CPU as the cost model sees it: peak bf16 matmul FLOP/s, memory bandwidth, and the training,
prefill and KV-cached decode throughput of two models (the demo's gpt2-xs and a randomly initialised model of
SmolLM2-135M's shape: speed does not depend on the weights), turned into the fractions of peak that
``experiment/devices.py`` uses. ``--write`` stores them in ``src/rationale_sft/experiment/cpu_throughput.json``
with the date and machine, so ``run --plan --cost --device cpu`` is reproducible.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_throughput.py [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import torch

from rationale_sft.experiment.devices import CPU_FILE, ModelSize, forward_flops, model_size
from rationale_sft.models.families import model_config


def best(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one warm-up call), in seconds of the machine to itself:
    this process's CPU seconds over its threads. The cores are shared with other jobs, and wall time would
    charge their share to ours; ``SHARES`` records the share of the threads each call got."""
    fn()
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        SHARES.append(cpu / (wall * torch.get_num_threads()))
        times.append(cpu / torch.get_num_threads())
    return min(times)


SHARES: list[float] = []
"Per timed call: the fraction of its threads' wall time this process ran (1 on a quiet machine)."


def peak_flops(n: int = 2048) -> float:
    """bf16 matmul FLOP/s of an n x n x n product (the training loop's autocast dtype)."""
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    return 2 * n ** 3 / best(lambda: a @ b)


def bandwidth(mib: int = 512) -> float:
    """Bytes/s of a large tensor copy (read + write)."""
    src = torch.empty(mib * 2 ** 20 // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best(lambda: dst.copy_(src))


def smollm2_config():
    """A llama config of SmolLM2-135M's published shape (HuggingFaceTB/SmolLM2-135M-Instruct config.json)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                       tie_word_embeddings=True)


def train_step_s(model, batch: int, seq: int) -> float:
    """Seconds of one optimizer step (bf16 autocast forward + backward + AdamW), as the SFT loop runs it."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return best(step, 2)


@torch.no_grad()
def prefill_s(model, batch: int, seq: int) -> float:
    """Seconds of one forward pass over a batch of prompts."""
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))
    return best(lambda: model(input_ids=ids, use_cache=False), 2)


@torch.no_grad()
def decode_step_s(model, batch: int, prompt: int, steps: int = 32) -> float:
    """Seconds (CPU seconds over threads, as ``best``) per KV-cached decode step of ``batch`` rows after a
    ``prompt``-token prefill."""
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt))

    def run():
        out = model(input_ids=ids, use_cache=True)
        cache, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(steps):
            out = model(input_ids=tok, past_key_values=cache, use_cache=True)
            cache, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return (best(run, 2) - prefill_s(model, batch, prompt)) / steps


def measure(name: str, cfg, shapes: dict, peak: float, overhead: float) -> dict:
    """Training and prefill tokens/s of one model and the fractions of ``peak`` they achieve (after the
    per-layer overhead is taken out)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    size = model_size(cfg)
    (tb, ts), (pb, ps) = shapes["train"], shapes["prefill"]
    t_train, t_pre = train_step_s(model, tb, ts), prefill_s(model, pb, ps)
    eff_train = max(t_train - 2 * size.layers * overhead, 0.2 * t_train)
    eff_pre = max(t_pre - size.layers * overhead, 0.2 * t_pre)
    out = {"model": name, "params": size.params, "train_shape": [tb, ts], "prefill_shape": [pb, ps],
           "train_tokens_per_s": tb * ts / t_train, "prefill_tokens_per_s": pb * ps / t_pre,
           "train_util": 3 * forward_flops(size, ts / 2) * tb * ts / eff_train / peak,
           "prefill_util": forward_flops(size, ps / 2) * pb * ps / eff_pre / peak}
    for b in shapes["decode"]:
        out[f"decode_step_s_batch{b}"] = decode_step_s(model, b, shapes["prefill"][1])
    return out


def main() -> None:
    """Measure and print (and with --write, store) this CPU's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"store the figures in {CPU_FILE}")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    peak, bw = peak_flops(), bandwidth()
    tiny_cfg = model_config("gpt2", "xs", 2048, {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    tiny = model_size(tiny_cfg)
    from transformers import AutoModelForCausalLM

    # a tiny model's batch-1 decode step is all overhead: its FLOPs and bytes take microseconds
    step1 = decode_step_s(AutoModelForCausalLM.from_config(tiny_cfg).eval(), 1, 64)
    overhead = step1 / tiny.layers
    fits = [measure("gpt2-xs (demo)", tiny_cfg, {"train": (16, 640), "prefill": (64, 600), "decode": (64,)},
                    peak, overhead),
            measure("SmolLM2-135M shape", smollm2_config(), {"train": (2, 384), "prefill": (4, 384), "decode": (4,)},
                    peak, overhead)]
    machine = f"{_cpu_model()}, {os.cpu_count()} cores, {platform.machine()}"
    result = {"date": datetime.date.today().isoformat(), "machine": machine, "threads": torch.get_num_threads(),
              "torch": torch.__version__,
              "peak_flops": peak, "bandwidth": bw, "bandwidth_util": 1.0, "layer_overhead_s": overhead,
              "decode_step_s_batch1_tiny": step1, "fits": fits,
              # other processes share the cores: the figures are as slow as the machine was while measured
              "load_average_1min": [load, os.getloadavg()[0]],
              "cpu_share": [round(min(SHARES), 3), round(max(SHARES), 3)],
              "timing": "CPU seconds of this process over its threads (other jobs shared the cores)"}
    print(json.dumps(result, indent=2))
    if args.write:
        CPU_FILE.write_text(json.dumps(result, indent=2) + "\n")


def _cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
