"""Configuration of the SFT stage (one arm, one training loop) and of a train/score/few-shot job.

>>> from rationale_sft.config import build
>>> build(TrainConfig, {"arm": "freeform"}, ["micro_batch=2"]).micro_batch
2
>>> build(TrainConfig, {"arm": "freeforms"})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'arm' must be one of 'label_only', 'freeform', 'stepwise', 'label_then_rationale', 'multitask', 'padded_label_only', 'weighted', 'shuffled_rationale', 'flipped_rationale', 'blind_rationale', 'segment_norm', 'answer_stage', got 'freeforms' (did you mean 'freeform'?)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.model import LoraConfig
from rationale_sft.config.score import ScoreConfig
from rationale_sft.answer import ANSWER_MARKER

Arm = Literal["label_only", "freeform", "stepwise", "label_then_rationale", "multitask",
              "padded_label_only", "weighted", "shuffled_rationale", "flipped_rationale", "blind_rationale",
              "segment_norm", "answer_stage"]


@dataclass(frozen=True)
class TrainConfig:
    """One supervised fine-tuning run: the arm (target renderer + loss mask) and the optimisation."""

    arm: Arm = "label_only"
    "SFT arm: which target follows the prompt and which target tokens carry loss (docs/arms.md)."
    rationale_style: Literal["freeform", "stepwise"] = "freeform"
    "Rationale style used by the arms that do not name one (every arm except label_only, freeform, stepwise)."
    rationale_mode: Literal["conditioned", "blind"] = "conditioned"
    "Teacher rationales to train on: told the label (conditioned) or not (blind); flipped_/blind_rationale fix theirs."
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
    bucket_by_length: bool = True
    "Regroup each optimizer step's examples by length into its micro-batches (less padding, same step loss)."
    gradient_checkpointing: bool = False
    "Recompute activations in the backward pass (less memory, ~30% more compute; same gradients)."
    max_len: int = 0
    """Maximum tokens of prompt + target; the oldest history lines are dropped to fit, never the target.
    0 = the model's context length (``validate`` warns when more than 5% of the sequences would be cut)."""
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
    segment_label_weight: float = 1.0
    "'segment_norm' arm: step loss = this x mean label-token CE + mean CE of the other target tokens."
    answer_stage_steps: int = 0
    "'answer_stage' arm: the last this many of the run's optimizer steps train the label token(s) only."
    conflict_every: int = 0
    "Measure label vs rationale gradient conflict at steps where step % this == 0 (0 = off; grad_conflict.parquet)."
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
    system_prompt: str | None = ""
    """Chat models: the system turn of every prompt (training and scoring). '' = none (a template's default,
    such as SmolLM2's "You are a helpful AI assistant named SmolLM", is replaced by an empty turn); None =
    the template's own choice."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    "LoRA adapters instead of full fine-tuning (lora.enabled=true); same loop, same everything else."
    bf16: bool = False
    """Run forward passes under bfloat16 autocast (weights and optimizer state stay float32) where the device
    computes bf16 natively; elsewhere float32, with a warning. train.json records what ran (``bf16``)."""
    seed: int = 0
    "Master seed; data subset, adapter init, data order and generation seeds are derived from it."
    max_train_examples: int = 0
    "Use a random subset of this many training examples (0 = all)."
    checkpoint_every: int = 0
    "Also checkpoint every this many optimizer steps (0 = only at the end)."
    keep_checkpoints: bool = False
    "Keep the weights (no optimizer state) of every checkpoint_every step in checkpoints/step-<N>/ (layer probes)."
    device: str = "auto"
    "Torch device: auto = cuda when available, else cpu."

    def __post_init__(self) -> None:
        for name in ("micro_batch", "grad_accum", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.max_len < 0:
            raise ValueError(f"'max_len' must be >= 0 (0 = the model's context length), got {self.max_len}")
        if not self.lr > 0:
            raise ValueError(f"'lr' must be > 0, got {self.lr:g} (e.g. lr=3e-4)")
        if min(self.steps, self.checkpoint_every, self.max_train_examples, self.conflict_every,
               self.answer_stage_steps) < 0:
            raise ValueError("'steps', 'checkpoint_every', 'max_train_examples', 'conflict_every' and "
                             "'answer_stage_steps' must be >= 0")
        if not self.segment_label_weight > 0:
            raise ValueError(f"'segment_label_weight' must be > 0, got {self.segment_label_weight:g}")
        if self.keep_checkpoints and not self.checkpoint_every:
            raise ValueError("'keep_checkpoints' keeps the checkpoint_every steps, but checkpoint_every is 0; set "
                             "e.g. checkpoint_every=10 or keep_checkpoints=false")
        if self.arm == "answer_stage":
            check_answer_stage(self.answer_stage_steps, self.steps)
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"'warmup' is a fraction of the steps in [0, 1), got {self.warmup}")
        if not self.answer_marker.strip():
            raise ValueError("'answer_marker' must be non-empty text such as 'Answer:'")


def check_answer_stage(answer_steps: int, steps: int) -> None:
    """The answer stage takes part of the run's step budget: 0 < answer_stage_steps < steps (when steps is set).

    >>> check_answer_stage(5, 50)
    >>> check_answer_stage(0, 50)
    Traceback (most recent call last):
    ...
    ValueError: arm 'answer_stage' needs 0 < answer_stage_steps < steps (its steps are part of the run's budget), got answer_stage_steps=0 with steps=50; set e.g. answer_stage_steps=5
    """
    if answer_steps < 1 or (steps and answer_steps >= steps):
        raise ValueError(f"arm 'answer_stage' needs 0 < answer_stage_steps < steps (its steps are part of the run's "
                         f"budget), got answer_stage_steps={answer_steps} with steps={steps}; set e.g. "
                         f"answer_stage_steps={max(1, steps // 10)}")


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
