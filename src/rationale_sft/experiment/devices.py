"""Device throughput and a model's size, for pricing a grid in device-hours (docs/cost.md).

A device is a peak bf16 rate, a memory bandwidth, the fraction of each a run achieves, and a fixed cost per
layer per forward or backward pass (kernel launches and Python around them: what dominates a tiny model and
a decode step). GPU rows are vendor spec-sheet figures with assumed utilisation (estimates); the ``cpu`` row
is measured on this machine by ``benchmarks/bench_throughput.py`` and read from ``cpu_throughput.json``.

>>> get_device("h100").peak_flops
989000000000000.0
>>> get_device("h100x")
Traceback (most recent call last):
...
rationale_sft.errors.InputError: unknown device 'h100x' (did you mean 'h100'?); valid devices: cpu, a100, h100, h200, l4
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rationale_sft.errors import InputError

CPU_FILE = Path(__file__).with_name("cpu_throughput.json")
"Measured figures of this machine's CPU (written by benchmarks/bench_throughput.py)."


@dataclass(frozen=True)
class Device:
    """Throughput figures of one device (rates in FLOP/s and bytes/s)."""

    name: str
    "Short name, as --device takes it."
    description: str
    "What the figures are of."
    peak_flops: float
    "Peak dense bf16 FLOP/s (a spec sheet's figure, or a measured matmul on the CPU)."
    bandwidth: float
    "Memory bandwidth in bytes/s."
    fits: tuple[tuple[int, float, float], ...]
    "(parameters, training MFU, prefill MFU): fractions of peak_flops achieved by a model of that size."
    bandwidth_util: float
    "Fraction of the bandwidth a decode step achieves reading weights and KV cache."
    layer_overhead_s: float
    "Seconds per layer per forward or backward pass besides its FLOPs and bytes (launches, Python)."
    weight_bytes: int
    "Bytes per weight as the loops hold them (bf16 on a GPU; float32 weights under autocast on the CPU)."
    measured: bool
    "True when the figures were measured on the device, False for spec-sheet estimates."
    source: str
    "Where the figures come from."

    def utilisation(self, params: int) -> tuple[float, float]:
        """(training, prefill) fractions of peak_flops for a model of ``params`` parameters: the fit nearest in
        log-parameters (a tiny model's small matmuls achieve less of the peak than a large one's)."""
        import math

        best = min(self.fits, key=lambda f: abs(math.log(f[0]) - math.log(max(params, 1))))
        return best[1], best[2]


GPU_UTIL = {"fits": ((10**9, 0.40, 0.50),), "bandwidth_util": 0.70, "layer_overhead_s": 1.5e-4,
            "weight_bytes": 2}
"""Assumed on every GPU: 40% MFU in training and 50% in prefill (what well-fed bf16 transformer training reaches
at 1-7B parameters), 70% of peak HBM bandwidth in decode, and 0.15 ms per layer per pass for eager PyTorch's
kernel launches (about 15 kernels of ~10 us per decoder layer), all unmeasured."""

GPUS = {
    # NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): BF16 312 TFLOPS dense (624 with sparsity), HBM2e 2,039 GB/s
    "a100": ("NVIDIA A100 80GB SXM", 312e12, 2.039e12),
    # NVIDIA H100 Tensor Core GPU datasheet (SXM): BF16 1,979 TFLOPS with sparsity = 989 dense, HBM3 3.35 TB/s
    "h100": ("NVIDIA H100 SXM 80GB", 989e12, 3.35e12),
    # NVIDIA H200 Tensor Core GPU datasheet (SXM): BF16 1,979 TFLOPS with sparsity = 989 dense, HBM3e 4.8 TB/s
    "h200": ("NVIDIA H200 SXM 141GB", 989e12, 4.8e12),
    # NVIDIA L4 Tensor Core GPU datasheet: BF16 242 TFLOPS with sparsity = 121 dense, GDDR6 300 GB/s
    "l4": ("NVIDIA L4 24GB", 121e12, 0.3e12),
}
"GPU name -> (description, peak dense bf16 FLOP/s, memory bandwidth in bytes/s), from NVIDIA's datasheets."

DEVICES = ("cpu", *GPUS)
"Every device --device accepts."


def get_device(name: str) -> Device:
    """The device ``name`` (one of ``DEVICES``); an unknown name is an InputError naming the valid ones."""
    key = name.lower()
    if key == "cpu":
        return cpu_device()
    if key not in GPUS:
        close = difflib.get_close_matches(key, DEVICES, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown device {name!r}{hint}; valid devices: {', '.join(DEVICES)}")
    description, flops, bandwidth = GPUS[key]
    return Device(key, description, flops, bandwidth, measured=False,
                  source="vendor datasheet peaks, assumed utilisation", **GPU_UTIL)


@cache
def cpu_device(path: Path = CPU_FILE) -> Device:
    """This machine's CPU as ``benchmarks/bench_throughput.py`` measured it (an InputError if never measured)."""
    if not path.is_file():
        raise InputError(f"{path} is missing: the cpu row is measured, not assumed; run "
                         "`python benchmarks/bench_throughput.py --write` on this machine, or pick a GPU with --device")
    m = json.loads(path.read_text())
    return Device("cpu", f"{m['machine']} ({m['threads']} threads)", m["peak_flops"], m["bandwidth"],
                  fits=tuple((f["params"], f["train_util"], f["prefill_util"]) for f in m["fits"]),
                  bandwidth_util=m["bandwidth_util"],
                  layer_overhead_s=m["layer_overhead_s"], weight_bytes=4, measured=True,
                  source=f"{m['date']}, benchmarks/bench_throughput.py")


@dataclass(frozen=True)
class ModelSize:
    """What the cost model needs of an architecture."""

    params: int
    "Distinct parameters (tied embeddings once)."
    matmul_params: int
    "Parameters a token multiplies by: params less the embedding lookups, plus the output head when it is tied."
    layers: int
    "Decoder layers."
    hidden: int
    "Hidden size (attention width)."
    kv_width: int
    "Key (= value) width per layer: kv heads x head dim."
    context: int
    "Longest context the model takes (``models.context_length``; 0 when its config states none)."


def model_size(model_cfg) -> ModelSize:
    """The size of a ``transformers`` config's model, built on the meta device (no weights read or allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rationale_sft.models import context_length

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_cfg)
    params = sum(p.numel() for p in model.parameters())
    # lookups (token and position embeddings) cost no FLOPs; a tied token embedding is also the output head
    lookups = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    tied = bool(getattr(model_cfg, "tie_word_embeddings", False))
    head = model.get_input_embeddings().weight.numel() if tied else 0
    get = model_cfg.get_text_config() if hasattr(model_cfg, "get_text_config") else model_cfg
    hidden, heads = get.hidden_size, get.num_attention_heads
    head_dim = getattr(get, "head_dim", None) or hidden // heads
    kv_heads = getattr(get, "num_key_value_heads", None) or heads
    return ModelSize(params, params - lookups + head, get.num_hidden_layers, hidden,
                     kv_heads * head_dim, int(context_length(get) or 0))


def forward_flops(size: ModelSize, attended: float) -> float:
    """FLOPs of one token's forward pass attending to ``attended`` earlier positions: 2 per matmul weight, plus
    4 per layer, hidden unit and attended position (scores and weighted sum; Kaplan et al. 2020).

    >>> forward_flops(ModelSize(1000, 1000, 2, 8, 8, 64), 10)
    2640.0
    """
    return 2.0 * size.matmul_params + 4.0 * size.layers * size.hidden * attended


def train_seconds(dev: Device, size: ModelSize, tokens: float, seq: float, passes: int, lora: bool) -> float:
    """Seconds to train on ``tokens`` tokens in ``passes`` micro-batch passes of mean length ``seq``.

    Full fine-tuning costs 3 forward passes per token (forward, gradients of activations, gradients of
    weights: 6N); LoRA skips the frozen weights' gradients, 2 forward passes (4N) plus the adapters' few.
    """
    flops = (2.0 if lora else 3.0) * forward_flops(size, seq / 2) * tokens
    return flops / (dev.peak_flops * dev.utilisation(size.params)[0]) + 2 * passes * size.layers * dev.layer_overhead_s


def prefill_seconds(dev: Device, size: ModelSize, tokens: float, seq: float, passes: int) -> float:
    """Seconds of forward passes over ``tokens`` prompt tokens in ``passes`` batches of mean length ``seq``."""
    return forward_flops(size, seq / 2) * tokens / (dev.peak_flops * dev.utilisation(size.params)[1]) + \
        passes * size.layers * dev.layer_overhead_s


def decode_seconds(dev: Device, size: ModelSize, steps: float, batch: float, context: float) -> float:
    """Seconds of ``steps`` KV-cached decode steps of ``batch`` rows at mean ``context``: each step reads every
    weight once for the whole batch and each row's KV cache, or computes, whichever is slower, plus its launches.

    >>> dev = get_device("h100"); size = ModelSize(10**9, 10**9, 16, 2048, 512, 4096)
    >>> round(decode_seconds(dev, size, 1, 1, 0) * 1e3, 2)  # 2 GB of weights at 0.7 x 3.35 TB/s, + 16 x 0.15 ms
    3.25
    """
    flops = forward_flops(size, context) * batch
    kv_bytes = 2 * size.layers * size.kv_width * context * dev.weight_bytes * batch
    moved = size.params * dev.weight_bytes + kv_bytes
    compute = flops / (dev.peak_flops * dev.utilisation(size.params)[1])
    per_step = max(compute, moved / (dev.bandwidth * dev.bandwidth_util))
    return steps * (per_step + size.layers * dev.layer_overhead_s)
