"""The SFT arms: a target renderer and a loss-weight function per arm, nothing else differs.

A renderer turns one example (prompt, label, rationale) into one or more *tasks*; a task is the text
fed before the answer (``prefix + prompt``) and a list of target *segments* ``(kind, text)``. Kinds:
``label`` (the Yes/No word), ``rationale``, ``marker`` (the answer marker), ``pad`` (neutral padding,
expanded in token space to the rationale's length). The loss-weight function gives the weight of each
kind's tokens; tokens outside the target always get label -100 and weight 0 (``train.data``).

>>> cfg = TrainConfig(arm="freeform")
>>> render_tasks(cfg, "History ... Will they develop dementia?", True, "Age 81, APOE4.")
[Task(task='main', prefix='', segments=(('rationale', 'Age 81, APOE4.'), ('marker', 'Answer:'), ('label', 'Yes')))]
>>> [t.segments for t in render_tasks(TrainConfig(arm="label_only"), "P?", False, None)]
[(('label', 'No'),)]
>>> [(t.task, t.prefix) for t in render_tasks(TrainConfig(arm="multitask"), "P?", True, "R.")]
[('label', '[label] '), ('rationale', '[rationale] ')]
>>> loss_weight(TrainConfig(arm="weighted", label_weight=5.0), "label"), loss_weight(cfg, "label")
(5.0, 1.0)
>>> render_tasks(cfg, "P?", True, None)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: arm 'freeform' needs a rationale for every training example; one is missing (join rationales.parquet on subject_id, style, mode)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rationale_sft.config.train import TrainConfig
from rationale_sft.errors import InputError

LABEL_WORDS = ("Yes", "No")
"The two answer words, in the order (positive, negative)."


class Task(NamedTuple):
    """One training sequence of an example: ``prefix + prompt`` as input, ``segments`` as target."""

    task: str
    prefix: str
    segments: tuple[tuple[str, str], ...]


def label_word(label: bool) -> str:
    """The answer word of a label.

    >>> label_word(True), label_word(False)
    ('Yes', 'No')
    """
    return LABEL_WORDS[0] if label else LABEL_WORDS[1]


def _need(cfg: TrainConfig, rationale: str | None) -> str:
    if rationale is None or not str(rationale).strip():
        raise InputError(f"arm {cfg.arm!r} needs a rationale for every training example; one is missing "
                         "(join rationales.parquet on subject_id, style, mode)")
    return str(rationale).strip()


def _label_only(cfg, prompt, label, rationale):
    return [Task("main", "", (("label", label_word(label)),))]


def _rationale_then_label(cfg, prompt, label, rationale):
    return [Task("main", "", (("rationale", _need(cfg, rationale)), ("marker", cfg.answer_marker),
                              ("label", label_word(label))))]


def _label_then_rationale(cfg, prompt, label, rationale):
    return [Task("main", "", (("label", label_word(label)), ("rationale", _need(cfg, rationale))))]


def _multitask(cfg, prompt, label, rationale):
    # Distilling step-by-step: the same prompt trains two tasks, told apart only by a prefix; scoring
    # uses the label task, so the rationale shapes the representation but never precedes the answer.
    return [Task("label", cfg.label_task_prefix, (("label", label_word(label)),)),
            Task("rationale", cfg.rationale_task_prefix, (("rationale", _need(cfg, rationale)),))]


def _padded(cfg, prompt, label, rationale):
    # The pad segment carries the rationale only to measure its length; data.py replaces it with
    # that many neutral tokens, so the label is diluted exactly as in the rationale arms.
    return [Task("main", "", (("pad", _need(cfg, rationale)), ("marker", cfg.answer_marker),
                              ("label", label_word(label))))]


Renderer = Callable[[TrainConfig, str, bool, "str | None"], list[Task]]

RENDERERS: dict[str, Renderer] = {
    "label_only": _label_only,
    "freeform": _rationale_then_label,
    "stepwise": _rationale_then_label,
    "label_then_rationale": _label_then_rationale,
    "multitask": _multitask,
    "padded_label_only": _padded,
    "weighted": _rationale_then_label,
}
"Arm -> target renderer."

LOSS_WEIGHTS: dict[str, Callable[[TrainConfig, str], float]] = {
    arm: (lambda cfg, kind: 1.0) for arm in RENDERERS
} | {"weighted": lambda cfg, kind: cfg.label_weight if kind == "label" else 1.0}
"Arm -> weight of a target token of a given kind (every target token has loss; only 'weighted' differs)."

SCORING: dict[str, str] = {
    "label_only": "direct", "label_then_rationale": "direct", "multitask": "direct",
    "freeform": "generate", "stepwise": "generate", "weighted": "generate", "padded_label_only": "generate",
}
"Arm -> how the answer slot is reached at test time: right after the prompt, or after a generated text."


def rationale_style(cfg: TrainConfig) -> str | None:
    """The rationale style an arm trains on (None for label_only).

    >>> rationale_style(TrainConfig(arm="stepwise")), rationale_style(TrainConfig(arm="weighted"))
    ('stepwise', 'freeform')
    >>> rationale_style(TrainConfig(arm="label_only")) is None
    True
    """
    if cfg.arm == "label_only":
        return None
    return cfg.arm if cfg.arm in ("freeform", "stepwise") else cfg.rationale_style


def render_tasks(cfg: TrainConfig, prompt: str, label: bool, rationale: str | None) -> list[Task]:
    """The training tasks of one example under ``cfg.arm``."""
    return RENDERERS[cfg.arm](cfg, prompt, bool(label), rationale)


def loss_weight(cfg: TrainConfig, kind: str) -> float:
    """Loss weight of one target token of ``kind`` under ``cfg.arm``."""
    return LOSS_WEIGHTS[cfg.arm](cfg, kind)


def scoring_prefix(cfg: TrainConfig) -> str:
    """Text put before the prompt at scoring time (the label-task prefix of the multitask arm).

    >>> scoring_prefix(TrainConfig(arm="multitask")), scoring_prefix(TrainConfig())
    ('[label] ', '')
    """
    return cfg.label_task_prefix if cfg.arm == "multitask" else ""
