"""The SFT arms: a target renderer and a loss-weight function per arm, nothing else differs.

A renderer turns one example (prompt, label, rationale) into one or more *tasks*; a task is the text
fed before the answer (``prefix + prompt``) and a list of target *segments* ``(kind, text)``. Kinds:
``label`` (the Yes/No word), ``rationale``, ``marker`` (the answer marker), ``pad`` (neutral padding,
expanded in token space to the rationale's length). The loss-weight function gives the weight of each
kind's tokens; tokens outside the target always get label -100 and weight 0 (``train.data``).

Three arms need more than one example at a time, and get it from small pure functions here, still without
a trainer of their own: ``shuffled_rationale`` takes its rationale from another training subject with the
same label (``same_label_donors``), and ``segment_norm`` and ``answer_stage`` set their loss weights per
optimizer step (``step_batches``: segment means; the answer stage's label-only mask).

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

from collections.abc import Callable, Sequence
from typing import NamedTuple

from rationale_sft.answer import label_word
from rationale_sft.config.train import TrainConfig
from rationale_sft.errors import InputError
from rationale_sft.seeding import rng



class Task(NamedTuple):
    """One training sequence of an example: ``prefix + prompt`` as input, ``segments`` as target."""

    task: str
    prefix: str
    segments: tuple[tuple[str, str], ...]


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
    "shuffled_rationale": _rationale_then_label,  # another same-label subject's rationale (training_rows)
    "flipped_rationale": _rationale_then_label,  # a rationale written for the opposite label, true label
    "blind_rationale": _rationale_then_label,  # the label-blind teacher's rationale
    "segment_norm": _rationale_then_label,
    "answer_stage": _rationale_then_label,
}
"Arm -> target renderer."

LOSS_WEIGHTS: dict[str, Callable[[TrainConfig, str], float]] = {
    arm: (lambda cfg, kind: 1.0) for arm in RENDERERS
} | {"weighted": lambda cfg, kind: cfg.label_weight if kind == "label" else 1.0}
"Arm -> weight of a target token of a given kind (every target token has loss; only 'weighted' differs)."

SCORING: dict[str, str] = {
    "label_only": "direct", "label_then_rationale": "direct", "multitask": "direct",
    "freeform": "generate", "stepwise": "generate", "weighted": "generate", "padded_label_only": "generate",
    "shuffled_rationale": "generate", "flipped_rationale": "generate", "blind_rationale": "generate",
    "segment_norm": "generate", "answer_stage": "generate",
}
"Arm -> how the answer slot is reached at test time: right after the prompt, or after a generated text."

RATIONALE_MODES: dict[str, str] = {"flipped_rationale": "flipped", "blind_rationale": "blind"}
"Arms that train on one teacher mode whatever train.rationale_mode says."


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


def rationale_mode(cfg: TrainConfig) -> str:
    """The teacher mode of the rationales an arm trains on (rationales.parquet's ``mode`` column).

    >>> rationale_mode(TrainConfig(arm="flipped_rationale")), rationale_mode(TrainConfig(arm="blind_rationale"))
    ('flipped', 'blind')
    >>> rationale_mode(TrainConfig(arm="shuffled_rationale", rationale_mode="blind"))
    'blind'
    """
    return RATIONALE_MODES[cfg.arm] if cfg.arm in RATIONALE_MODES else cfg.rationale_mode


def same_label_donors(subject_ids: Sequence[int], labels: Sequence[bool], seed: int) -> list[int]:
    """For each subject, the other subject with the same label whose rationale it trains on (shuffled_rationale).

    Within each label, the subjects are put in a random order drawn from ``seed`` (purpose
    ``rationale_shuffle``) and each takes the rationale of the next one, the last that of the first: one
    cycle, so no subject keeps its own and every rationale is used exactly once.

    >>> same_label_donors([10, 11, 12, 13, 14], [True, False, True, False, True], seed=0)
    [14, 13, 10, 11, 12]
    >>> same_label_donors([10, 11, 12], [True, False, False], seed=0)
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: arm 'shuffled_rationale' swaps rationales between training subjects with the same label, but label Yes has only one (subject_id 10); train on more subjects (a larger scale, train.max_train_examples=0) or drop the arm
    """
    donors: dict[int, int] = {}
    g = rng(seed, "rationale_shuffle")
    for value in (True, False):
        group = sorted(s for s, lab in zip(subject_ids, labels) if bool(lab) == value)
        if len(group) == 1:
            raise InputError("arm 'shuffled_rationale' swaps rationales between training subjects with the same "
                             f"label, but label {label_word(value)} has only one (subject_id {group[0]}); train on "
                             "more subjects (a larger scale, train.max_train_examples=0) or drop the arm")
        order = [group[i] for i in g.permutation(len(group))]
        donors.update({s: order[(i + 1) % len(order)] for i, s in enumerate(order)})
    return [donors[s] for s in subject_ids]


def stage_of(cfg: TrainConfig, step: int, total: int) -> str:
    """The stage of optimizer step ``step`` (0-based) of ``total``: 'answer' for the answer_stage arm's last
    ``answer_stage_steps`` steps, else 'main'.

    >>> c = TrainConfig(arm="answer_stage", steps=5, answer_stage_steps=2)
    >>> [stage_of(c, s, 5) for s in range(5)]
    ['main', 'main', 'main', 'answer', 'answer']
    >>> stage_of(TrainConfig(), 4, 5)
    'main'
    """
    return "answer" if cfg.arm == "answer_stage" and step >= total - cfg.answer_stage_steps else "main"


def step_batches(cfg: TrainConfig, stage: str, micro: list[dict]) -> list[dict]:
    """One optimizer step's micro-batches with the loss weights normalised over the whole step, so that the
    step loss is ``sum(weight x token CE)`` over its micro-batches (and micro_batch x grad_accum splits agree).

    - every arm: ``weight / sum(weight)``, the weighted mean over the step's target tokens;
    - ``segment_norm``: ``segment_label_weight / n_label`` on label tokens, ``1 / n_other`` on the other target
      tokens (rationale and marker): the label mean (times its weight) plus the rationale mean;
    - the answer stage: labels -100 outside the label tokens, ``1 / n_label`` on them.

    >>> import torch
    >>> b = {"labels": torch.tensor([[-100, 5, 6, 7]]), "weights": torch.tensor([[0.0, 1.0, 1.0, 1.0]]),
    ...      "is_label": torch.tensor([[False, False, False, True]])}
    >>> step_batches(TrainConfig(arm="freeform"), "main", [b])[0]["weights"].tolist()
    [[0.0, 0.3333333432674408, 0.3333333432674408, 0.3333333432674408]]
    >>> step_batches(TrainConfig(arm="segment_norm", segment_label_weight=2.0), "main", [b])[0]["weights"].tolist()
    [[0.0, 0.5, 0.5, 2.0]]
    >>> out = step_batches(TrainConfig(arm="answer_stage", steps=4, answer_stage_steps=1), "answer", [b])[0]
    >>> out["labels"].tolist(), out["weights"].tolist()
    ([[-100, -100, -100, 7]], [[0.0, 0.0, 0.0, 1.0]])
    """
    if stage == "answer":
        micro = [{**b, "labels": b["labels"].masked_fill(~b["is_label"], -100),
                  "weights": b["weights"] * b["is_label"]} for b in micro]
    if cfg.arm != "segment_norm" or stage == "answer":
        total = float(sum(b["weights"].sum() for b in micro))
        return [{**b, "weights": b["weights"] / total} for b in micro]
    target = [(b["weights"] > 0) for b in micro]
    n_label = float(sum((t & b["is_label"]).sum() for t, b in zip(target, micro)))
    n_other = float(sum((t & ~b["is_label"]).sum() for t, b in zip(target, micro)))
    return [{**b, "weights": (t & b["is_label"]) * (cfg.segment_label_weight / max(n_label, 1.0))
             + (t & ~b["is_label"]) * (1.0 / max(n_other, 1.0))} for t, b in zip(target, micro)]


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
