"""Configuration of the SFT stage (one arm, one training loop) and of a train/score/few-shot job.

>>> from rationale_sft.config import build
>>> build(TrainConfig, {"arm": "freeform"}, ["micro_batch=2"]).micro_batch
2
>>> build(TrainConfig, {"arm": "freeforms"})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'arm' must be one of 'label_only', 'freeform', 'stepwise', 'label_then_rationale', 'multitask', 'padded_label_only', 'weighted', got 'freeforms' (did you mean 'freeform'?)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.model import LoraConfig
from rationale_sft.config.score import ScoreConfig
from rationale_sft.render.markers import ANSWER_MARKER

Arm = Literal["label_only", "freeform", "stepwise", "label_then_rationale", "multitask",
              "padded_label_only", "weighted"]


@dataclass(frozen=True)
class TrainConfig:
    """One supervised fine-tuning run: the arm (target renderer + loss mask) and the optimisation."""

    arm: Arm = "label_only"
    "SFT arm: which target follows the prompt and which target tokens carry loss (docs/arms.md)."
    rationale_style: Literal["freeform", "stepwise"] = "freeform"
    "Rationale style used by the arms that do not name one (label_then_rationale, multitask, padded, weighted)."
    rationale_mode: Literal["conditioned", "blind"] = "conditioned"
    "Which teacher rationales to train on: written knowing the label (conditioned) or not (blind)."
    lr: float = 3e-4
    "Peak learning rate of AdamW."
    epochs: int = 1
    "Passes over the training examples (used when steps is 0)."
    steps: int = 0
    "Optimizer steps; 0 means epochs x ceil(examples / (micro_batch x grad_accum))."
    micro_batch: int = 4
    "Examples per forward/backward pass."
    grad_accum: int = 1
    "Micro-batches per optimizer step; the loss is normalised by the step's total target weight."
    max_len: int = 512
    "Maximum tokens of prompt + target; the oldest history lines are dropped to fit, never the target."
    warmup: float = 0.05
    "Fraction of the optimizer steps spent in linear learning-rate warmup."
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    "Learning-rate decay after warmup."
    min_lr_ratio: float = 0.1
    "Final learning rate as a fraction of lr (cosine and linear decay)."
    weight_decay: float = 0.0
    "AdamW decoupled weight decay."
    grad_clip: float = 1.0
    "Clip the global gradient norm to this value; 0 disables clipping."
    label_weight: float = 10.0
    "Loss weight of the label token(s) in the 'weighted' arm (every other target token weighs 1)."
    pad_unit: str = " ."
    "Neutral text repeated to pad the 'padded_label_only' target to the rationale's token length."
    label_task_prefix: str = "[label] "
    "Task prefix of the label task in the 'multitask' arm (also used when scoring it)."
    rationale_task_prefix: str = "[rationale] "
    "Task prefix of the rationale task in the 'multitask' arm."
    answer_marker: str = ANSWER_MARKER
    "Text that introduces the answer slot after a rationale."
    chat_template: Literal["auto", "on", "off"] = "auto"
    "Wrap the prompt in the tokenizer's chat template: auto = when the tokenizer has one."
    lora: LoraConfig = field(default_factory=LoraConfig)
    "LoRA adapters instead of full fine-tuning (lora.enabled=true); same loop, same everything else."
    bf16: bool = False
    "Run forward passes under bfloat16 autocast (weights and optimizer state stay float32)."
    seed: int = 0
    "Master seed; data subset, adapter init, data order and generation seeds are derived from it."
    max_train_examples: int = 0
    "Use a random subset of this many training examples (0 = all)."
    checkpoint_every: int = 0
    "Also checkpoint every this many optimizer steps (0 = only at the end)."
    device: str = "auto"
    "Torch device: auto = cuda when available, else cpu."

    def __post_init__(self) -> None:
        for name in ("micro_batch", "grad_accum", "max_len", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"'lr' must be > 0, got {self.lr:g} (e.g. lr=3e-4)")
        if self.steps < 0 or self.checkpoint_every < 0 or self.max_train_examples < 0:
            raise ValueError("'steps', 'checkpoint_every' and 'max_train_examples' must be >= 0")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"'warmup' is a fraction of the steps in [0, 1), got {self.warmup}")
        if not self.answer_marker.strip():
            raise ValueError("'answer_marker' must be non-empty text such as 'Answer:'")


@dataclass(frozen=True)
class JobConfig:
    """Inputs and settings of one train / score / few-shot job (the file `validate` checks)."""

    examples: str = ""
    "examples.parquet written by `render`."
    rationales: str = ""
    "rationales.parquet written by `rationales generate` (needed by the rationale arms)."
    model: str = ""
    "Base model: a model directory (save_pretrained with tokenizer) or a hub alias."
    train: TrainConfig = field(default_factory=TrainConfig)
    "Training settings."
    score: ScoreConfig = field(default_factory=ScoreConfig)
    "Scoring settings."
    fewshot: FewshotConfig = field(default_factory=FewshotConfig)
    "Few-shot settings."
