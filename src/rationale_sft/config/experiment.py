"""The experiment config: the grid's factors declared once, and every shared stage's settings.

A grid YAML (``configs/quick.yaml`` and friends) is one ``ExperimentConfig``. Relative paths in it
(``data.task``, ``data.meds_dir``) are read relative to the YAML file.

>>> from rationale_sft.config import build
>>> cfg = build(ExperimentConfig, {"grid": {"arms": ["label_only", "stepwise"], "scales": [200]}})
>>> cfg.grid.arms, [m.name for m in cfg.grid.models]
(('label_only', 'stepwise'), ['llama-xs'])
>>> build(ExperimentConfig, {"grid": {"arms": ["rationale"]}})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'grid.arms[0]' must be one of 'label_only', 'freeform', 'stepwise', 'label_then_rationale', 'multitask', 'padded_label_only', 'weighted', 'shuffled_rationale', 'flipped_rationale', 'blind_rationale', 'segment_norm', 'answer_stage', got 'rationale' (did you mean 'blind_rationale' or 'flipped_rationale' or 'shuffled_rationale'?)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.config.model import LoraConfig, PretrainConfig
from rationale_sft.config.render import RenderConfig
from rationale_sft.config.report import ReportConfig
from rationale_sft.config.score import ScoreConfig
from rationale_sft.config.synth import SynthConfig
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.config.train import Arm, TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    """One level of the model factor: a tiny family trained from scratch, or a real checkpoint."""

    family: str = "llama"
    "Architecture of a from-scratch model (llama, qwen2, gpt2, mistral, gemma); a label for checkpoints."
    size: str = "xs"
    "Size of a from-scratch model (xs, s); a label for checkpoints."
    checkpoint: str | None = None
    "Real checkpoint (local HF dir, cached hub id, or smollm2-135m-instruct) instead of a from-scratch model."
    reasoning_base: bool = False
    "Continue pretraining on step-by-step reasoning text (no task labels) before fine-tuning."
    lora: bool = False
    "Fine-tune with LoRA adapters (settings in `lora`) instead of all weights."
    kind: str | None = None
    "Base kind shown in results (e.g. reasoning for a reasoning-tuned checkpoint); null derives it."

    def __post_init__(self) -> None:
        if self.checkpoint is None:  # with a checkpoint, family and size are only labels
            from rationale_sft.models.families import check_family_size

            check_family_size(self.family, self.size)

    @property
    def name(self) -> str:
        """Model name used in results: family-size, or the checkpoint's last path part."""
        stem = self.checkpoint.rstrip("/").split("/")[-1] if self.checkpoint else f"{self.family}-{self.size}"
        return stem + ("-reasoning" if self.reasoning_base else "")

    @property
    def base(self) -> str:
        """Base kind: pretrained (tiny, from our corpus), reasoning (continued) or checkpoint."""
        if self.kind:
            return self.kind
        return "reasoning" if self.reasoning_base else ("checkpoint" if self.checkpoint else "pretrained")


@dataclass(frozen=True)
class DataConfig:
    """Where subjects come from, the prediction task, the training scales and the fixed test set."""

    meds_dir: str | None = None
    "An existing MEDS dataset; null generates the synthetic cohort (`synth`)."
    synth: SynthConfig = field(default_factory=SynthConfig)
    "The synthetic cohort (used when meds_dir is null)."
    task: str = "tasks/adrd_5y.yaml"
    "Task YAML or ACES config (relative to the grid YAML): prediction time, horizon, outcome, follow-up rules."
    labels: str | None = None
    "Labels computed elsewhere (MEDS label schema parquet, relative to the grid YAML) instead of data.task's."
    controls_per_case: float | None = 2.0
    "Controls per case in the training subsets (2.0 = 1 case : 2 controls); null keeps natural prevalence."
    test_controls_per_case: float | None = 4.0
    "Fixed test set: every held-out case plus this many held-out controls per case; null = all held-out."
    test_max: int = 1000
    "Upper bound on test subjects (cases and controls reduced in proportion)."
    pretrain_subjects: int = 4000
    "Subjects of a second synthetic cohort (another seed, disjoint from every task split) for pretraining."

    def __post_init__(self) -> None:
        if self.controls_per_case is not None and self.controls_per_case <= 0:
            raise ValueError(f"data.controls_per_case must be > 0 or null, got {self.controls_per_case}")
        if self.test_controls_per_case is not None and self.test_controls_per_case <= 0:
            raise ValueError(f"data.test_controls_per_case must be > 0 or null, got {self.test_controls_per_case}")
        if self.labels is not None and self.meds_dir is None:
            raise ValueError("data.labels needs data.meds_dir, the MEDS dataset the labels were computed on "
                             "(the synthetic cohort is labelled by data.task)")
        if self.test_max < 10 or self.pretrain_subjects < 10:
            raise ValueError("data.test_max and data.pretrain_subjects must be >= 10")


@dataclass(frozen=True)
class FactorsConfig:
    """The factors of the grid; every combination of arm x model x scale x seed is one run."""

    arms: tuple[Arm, ...] = ("label_only", "freeform", "stepwise")
    "SFT arms (label_only is the reference every other arm is paired with); [] runs only the few-shot arm."
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    "Model levels."
    scales: tuple[int, ...] = (500,)
    "Training subjects per run (nested subsets of the train split)."
    seeds: tuple[int, ...] = (0, 1, 2)
    "Run seeds: each draws its own training subset, adapter init, data order and generation."
    hidden_shares: tuple[float, ...] = ()
    "Levels of the generator's hidden-signal share (data.synth.hidden_share); each gets its own cohort."
    label_weights: tuple[float, ...] = ()
    "Label-token loss weights for the weighted arm, each its own arm weighted_x<w> (empty: train.label_weight)."

    def __post_init__(self) -> None:
        if not self.models or not self.scales or not self.seeds:
            raise ValueError("grid.models, grid.scales and grid.seeds must each have >= 1 level")
        for name in ("arms", "models", "scales", "seeds", "hidden_shares", "label_weights"):
            check_unique(f"grid.{name}", getattr(self, name))
        if any(not 0.0 <= h <= 1.0 for h in self.hidden_shares):
            raise ValueError(f"grid.hidden_shares must lie in [0, 1], got {list(self.hidden_shares)}")
        if self.label_weights and ("weighted" not in self.arms or min(self.label_weights) <= 0):
            raise ValueError("grid.label_weights needs the weighted arm in grid.arms and weights > 0, got "
                             f"{list(self.label_weights)}")
        if any(s < 10 for s in self.scales):
            raise ValueError(f"grid.scales must be >= 10 subjects, got {list(self.scales)}")


@dataclass(frozen=True)
class FewshotArmConfig:
    """The few-shot arm: untrained base models scored with in-context demonstrations."""

    enabled: bool = True
    "Run the few-shot arm."
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    "Base models to prompt (their pretrained bases, not fine-tuned)."
    demos: tuple[Literal["label_only", "freeform", "stepwise"], ...] = ("label_only", "freeform")
    "Demonstration kinds: history + label, or history + rationale (this style) + label."
    settings: FewshotConfig = field(default_factory=FewshotConfig)
    "k, selection, embedder, budget (with_rationales and the style are set per demo kind)."
    seeds: tuple[int, ...] = ()
    "Demonstration seeds of the few-shot arm (empty: grid.seeds); one seed keeps a slow real checkpoint cheap."

    def __post_init__(self) -> None:
        check_unique("fewshot.models", self.models)
        check_unique("fewshot.demos", self.demos)


def check_unique(key: str, levels: tuple) -> None:
    """Refuse a factor level given twice: its runs would be planned twice under one run id.

    Model levels are compared by the name results know them by (family-size or the checkpoint's name).

    >>> check_unique("grid.seeds", (0, 1, 0))
    Traceback (most recent call last):
    ...
    ValueError: grid.seeds has duplicate levels [0]; list each level once
    """
    names = [v.name if isinstance(v, ModelSpec) else v for v in levels]
    repeated = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if repeated:
        why = ("; results name a model level by family-size or its checkpoint's last path part, so give each "
               "level a distinct one") if isinstance(levels[0], ModelSpec) else "; list each level once"
        raise ValueError(f"{key} has duplicate levels {repeated}{why}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One controlled experiment: shared stages built once, then one run per grid configuration."""

    name: str = "experiment"
    "Name shown in the report."
    seed: int = 0
    "Master seed of the shared stages (cohort subsets, teacher, baselines)."
    data: DataConfig = field(default_factory=DataConfig)
    "Cohort, task, scales and test set."
    render: RenderConfig = field(default_factory=RenderConfig)
    "Prompt template (identical across arms)."
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    "Teacher rationales for the rationale arms."
    vocab_size: int = 2048
    "Vocabulary of the BPE tokenizer trained for from-scratch models."
    bf16_autocast: bool = True
    "bfloat16 autocast for pretraining where the device computes bf16 natively (fine-tuning uses train.bf16)."
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    "Causal-LM pretraining of from-scratch bases (and the reasoning continuation)."
    lora: LoraConfig = field(default_factory=LoraConfig)
    "LoRA settings for model levels with lora: true."
    train: TrainConfig = field(default_factory=TrainConfig)
    "Fine-tuning settings shared by every run (the arm and seed are set per run)."
    score: ScoreConfig = field(default_factory=ScoreConfig)
    "Scoring settings (split is the fixed test set)."
    grid: FactorsConfig = field(default_factory=FactorsConfig)
    "The factors."
    fewshot: FewshotArmConfig = field(default_factory=FewshotArmConfig)
    "The few-shot arm."
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    "Classical baselines, fitted at every scale and seed on the same training subsets."
    probe: bool = True
    "Fit a linear probe on the answer-slot hidden states of every run (a diagnostic)."
    layer_probes: bool = False
    "Probe every layer of every run's checkpoints (probe_layers.parquet; keep some with train.keep_checkpoints)."
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    "Where runs execute: local (sequential or process pool) or Ray."
    report: ReportConfig = field(default_factory=ReportConfig)
    "Statistics and report settings."

    def __post_init__(self) -> None:
        if not self.grid.arms and not self.fewshot.enabled:
            raise ValueError("grid.arms is empty and fewshot.enabled is false: nothing to run; list an SFT arm "
                             "or enable the few-shot arm")
        check_shared_train(self.train, self.grid)


PER_RUN_TRAIN = {"arm": "list the arms in grid.arms",
                 "seed": "list the run seeds in grid.seeds (the master seed of the shared stages is `seed`)",
                 "lora": "set lora: true on a grid.models level, with the adapter settings in the top-level lora"}
"Train keys the plan sets for each run, and where a grid declares them instead."


def check_shared_train(train: TrainConfig, grid: FactorsConfig) -> None:
    """Refuse per-run keys in the grid's shared ``train`` (the plan would overwrite or ignore them, and results
    would describe something else); the message names the grid key to use.

    >>> check_shared_train(TrainConfig(lr=1e-3), FactorsConfig())
    >>> check_shared_train(TrainConfig(arm="freeform"), FactorsConfig())
    Traceback (most recent call last):
    ...
    ValueError: train.arm is set per run (got 'freeform'); list the arms in grid.arms
    """
    default = TrainConfig()
    problems = [f"train.{key} is set per run (got {_shown(getattr(train, key))}); {where}"
                for key, where in PER_RUN_TRAIN.items() if getattr(train, key) != getattr(default, key)]
    if grid.label_weights and train.label_weight != default.label_weight:
        problems.append(f"train.label_weight={train.label_weight:g} and grid.label_weights="
                        f"{list(grid.label_weights)} both set the weighted arm's label weight; keep one")
    if problems:
        raise ValueError("; ".join(problems))


def _shown(value) -> str:
    """A setting as the message shows it: a nested config as its non-default fields."""
    if hasattr(value, "__dataclass_fields__"):
        default = type(value)()
        return "{" + ", ".join(f"{k}: {getattr(value, k)!r}" for k in value.__dataclass_fields__
                               if getattr(value, k) != getattr(default, k)) + "}"
    return repr(value)
