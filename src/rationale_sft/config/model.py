"""Config sections for language models: which model, how its base is pretrained, and LoRA.

>>> from rationale_sft import config
>>> config.build(BaseModelConfig, {"model": {"family": "qwen2"}}, ["pretrain.steps=5"]).pretrain.steps
5
>>> config.build(LoraConfig, {"r": 0})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: lora r must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train: a tiny family built from scratch, or a real checkpoint."""

    family: str = "llama"
    "Architecture of a from-scratch model: llama, qwen2, gpt2, mistral or gemma (ignored with checkpoint)."
    size: str = "xs"
    "Size of a from-scratch model: xs (hidden 128, 2 layers) or s (hidden 256, 4 layers)."
    checkpoint: str | None = None
    "Real checkpoint instead of a from-scratch model: a local HF dir, a cached hub id, or smollm2-135m-instruct."
    vocab_size: int = 2048
    "Vocabulary size of the byte-level BPE tokenizer trained for from-scratch models."
    bf16_autocast: bool = True
    """Run forward/backward under bfloat16 autocast (weights and optimizer state stay float32) where the device
    computes bf16 natively; elsewhere float32, with a warning (``precision.resolve_bf16``)."""
    reasoning_base: bool = False
    "Continue pretraining the base on step-by-step reasoning text (no task labels) before fine-tuning."

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError(f"model vocab_size must be >= 300 (256 bytes + special and label tokens), "
                             f"got {self.vocab_size}")


@dataclass(frozen=True)
class PretrainConfig:
    """Causal-LM pretraining of a from-scratch base model (and its reasoning-oriented continuation)."""

    steps: int = 200
    "Optimizer steps of base pretraining."
    batch_size: int = 8
    "Packed sequences per optimizer step."
    seq_len: int = 256
    "Tokens per packed sequence."
    lr: float = 3e-3
    "Peak learning rate (AdamW)."
    warmup_steps: int = 20
    "Linear warmup steps before the cosine decay."
    min_lr_ratio: float = 0.1
    "Final learning rate as a fraction of the peak (end of the cosine)."
    weight_decay: float = 0.1
    "AdamW weight decay (not applied to biases and norms)."
    grad_clip: float = 1.0
    "Clip the global gradient norm to this value (0 disables)."
    seed: int = 0
    "Seed of model initialisation and data order."
    log_every: int = 10
    "Write a loss row to pretrain_log.parquet every this many steps."
    loss_on: Literal["all", "continuation"] = "all"
    """Which tokens of the base corpus are targets: all, or only those after each text's answer marker (the
    label-blind rationales; the prompts before them are read but not learned; texts without a marker count
    whole)."""
    packing: Literal["stream", "documents"] = "stream"
    """How texts become training rows: ``stream`` concatenates them and cuts seq_len blocks (no padding);
    ``documents`` gives each text its own row from position 0 (cut after seq_len tokens, right-padded per
    batch), so a prompt's header sits at the same positions in every row, as in fine-tuning and scoring."""
    short_steps: int = 0
    """Optimizer steps on the corpus's short texts alone before the ``steps`` on all texts (0 = none). Short
    texts state one thing the long ones bury (e.g. sex and age of a person with nothing else recorded), so a
    small model learns to read it where the signal is dense, then keeps it among the long texts."""
    short_batch_size: int = 32
    "Texts per optimizer step of the short stage, and of the copy stage (one text per row)."
    short_seq_len: int = 256
    "Tokens per row of the short stage, and of the copy stage (longer texts are cut)."
    copy_steps: int = 0
    """Optimizer steps on the corpus's copy drills alone, before every other stage (0 = none); the drills and the
    redrawn texts (rationales of records whose values are permuted across people) then join the later stages'
    mix. A drill restates a list of measurements whose values only the list gives, so the model learns to look a
    value up by its name (an induction circuit); a tiny model trained on the long texts alone writes typical
    values instead."""
    full_steps: int = 0
    """Optimizer steps on the corpus's full texts alone (``base``: a whole prompt and its rationale), after the
    ``steps`` on all texts (0 = none); same rows and length as those, peak learning rate ``full_lr``. In the mix
    of all texts the full ones are a minority of the rows (15% with the demo's corpus), so the main stage shows a
    tiny model few of the long records it will be asked about; this stage reads them where the signal is dense."""
    full_lr: float = 1e-3
    "Peak learning rate of the full-text stage (full_steps), which continues an already trained model."
    reasoning_steps: int = 100
    "Optimizer steps of continued pretraining on reasoning text (reasoning_base only)."
    reasoning_lr: float = 1e-3
    "Peak learning rate of the continued pretraining on reasoning text."

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "log_every", "short_batch_size", "short_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretrain {name} must be >= 1, got {getattr(self, name)}")
        for name in ("short_steps", "copy_steps", "full_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"pretrain {name} must be >= 0, got {getattr(self, name)}")
        if min(self.lr, self.reasoning_lr, self.full_lr) <= 0:
            raise ValueError(f"pretrain lr, reasoning_lr and full_lr must be > 0, got {self.lr}, {self.reasoning_lr}, "
                             f"{self.full_lr}")


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (peft) instead of full fine-tuning."""

    enabled: bool = False
    "Train LoRA adapters instead of all weights."
    r: int = 8
    "Rank of the adapter matrices."
    alpha: float = 16.0
    "Scaling numerator: the update is scaled by alpha / r."
    dropout: float = 0.05
    "Dropout on the adapter input."
    target_modules: tuple[str, ...] = ()
    "Linear layers to adapt, by name (e.g. q_proj, v_proj; gpt2: c_attn); empty: the attention projections."

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora r must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class BaseModelConfig:
    """Everything that determines a base model: what is built and how it is pretrained."""

    model: ModelConfig = field(default_factory=ModelConfig)
    "The model."
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    "Its pretraining."
