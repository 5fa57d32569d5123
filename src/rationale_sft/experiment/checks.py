"""Checks of a grid before any job runs: its inputs (the MEDS dataset, real checkpoints, scales vs the train
split) and, for ``validate CONFIG``, every job of its plan.

``check_inputs`` reads only small files (directory listings, ``subject_splits.parquet``, model
``config.json``s); it loads no weights and builds nothing. A scale needs at least as many subjects as the
train split holds; whether the split also has enough cases for ``data.controls_per_case`` is only known
once the labels exist, so the ``labels`` job checks that before any training job can start.

``validate_grid`` adds the plan: each job's settings built as the job builds them when it runs, and each
run's train and score settings against its base model's architecture (a from-scratch family's config or a
checkpoint's ``config.json``: context, room for a generated rationale, LoRA targets) and, for a checkpoint,
its tokenizer's label tokens. What needs the grid's own outputs (prompt lengths, rationales, a tokenizer
trained on the corpus) is checked by the jobs themselves, and by ``validate JOB.yaml`` on a run's files.
"""

from __future__ import annotations

from pathlib import Path

from rationale_sft import config as cfglib
from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.config.model import BaseModelConfig
from rationale_sft.config.render import RenderConfig
from rationale_sft.config.synth import SynthConfig
from rationale_sft.config.task import TaskConfig
from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError


def check_inputs(cfg: ExperimentConfig, config_dir: str | Path = ".") -> None:
    """Raise one InputError listing every problem of ``cfg``'s inputs (paths relative to ``config_dir``)."""
    problems = input_problems(cfg, config_dir)
    if problems:
        raise InputError("; ".join(problems))


def input_problems(cfg: ExperimentConfig, config_dir: str | Path = ".") -> list[str]:
    """Every problem of ``cfg``'s inputs, one message each."""
    problems: list[str] = []
    n_train, where = _train_split(cfg, Path(config_dir), problems)
    for scale in sorted(cfg.grid.scales):
        if n_train is not None and scale > n_train:
            problems.append(f"grid.scales: scale {scale} is larger than the train split {where}; use scales "
                            f"<= {n_train}" + (" or raise data.synth.n_subjects" if not cfg.data.meds_dir else ""))
            break
    seen: set[str] = set()
    for key, specs in (("grid.models", cfg.grid.models), ("fewshot.models", cfg.fewshot.models)):
        for i, spec in enumerate(specs if key == "grid.models" or cfg.fewshot.enabled else ()):
            if spec.checkpoint and spec.checkpoint not in seen:
                seen.add(spec.checkpoint)
                _checkpoint(spec.checkpoint, f"{key}[{i}]", problems)
    return problems


def meds_path(cfg: ExperimentConfig, config_dir: Path) -> Path:
    """``data.meds_dir`` resolved against the grid YAML's directory (as the plan reads it)."""
    path = Path(cfg.data.meds_dir).expanduser()
    return (path if path.is_absolute() else config_dir / path).resolve()


def _train_split(cfg: ExperimentConfig, config_dir: Path, problems: list[str]) -> tuple[int | None, str]:
    """Subjects in the train split and a phrase saying where that number comes from (None if unknown)."""
    if not cfg.data.meds_dir:
        from rationale_sft.cohort.synth import split_cuts

        n = int(split_cuts(cfg.data.synth)[0])
        return n, (f"of the synthetic cohort ({n} = {cfg.data.synth.train_share:g} x "
                   f"{cfg.data.synth.n_subjects} subjects)")
    from rationale_sft.cohort import meds_io

    path = meds_path(cfg, config_dir)
    try:
        meds_io.data_files(path)
        splits = meds_io.read_splits(path)
    except (InputError, OSError) as exc:
        problems.append(f"data.meds_dir: {exc}")
        return None, ""
    n = int((splits["split"] == meds_io.SPLITS[0]).sum())
    return n, f"({n} subjects in {path / 'metadata' / 'subject_splits.parquet'})"


def _checkpoint(name: str, key: str, problems: list[str]) -> None:
    """A real checkpoint must be a model dir with weights, a cached hub id, or an installed alias."""
    from rationale_sft.models import hub

    try:
        if name.lower() in hub.ALIASES:
            hub.gguf_path(name.lower())  # converting it is compute: the base job does that
        else:
            hub.resolve(name)
    except InputError as exc:
        problems.append(f"{key}: {exc}")


def validate_grid(cfg: ExperimentConfig, config_dir: str | Path = ".") -> dict:
    """A report of the grid ``cfg``: ``problems`` (each would stop a job), ``warnings``, the number of jobs by
    kind and of runs. A message found in several jobs is listed once, with how many and which."""
    from rationale_sft.experiment.plan import plan

    found: dict[tuple[str, str], list[str]] = {}  # (problems or warnings, message) -> jobs
    report = {"name": cfg.name, "problems": [], "warnings": [], "jobs": 0, "runs": 0, "by_kind": {}}
    report["problems"] += input_problems(cfg, config_dir)
    try:
        p = plan(cfg, Path(config_dir))
    except InputError as exc:
        report["problems"].append(f"plan: {exc}")
        return report
    report.update(jobs=len(p.jobs), runs=len(p.runs))
    bases = {job.out_dir: job.kwargs["model"] for job in p.jobs if job.function == "base"}
    models: dict[str, tuple] = {}  # base job dir -> (architecture config, tokenizer)
    for job in p.jobs:
        report["by_kind"][job.function] = report["by_kind"].get(job.function, 0) + 1
        problems: list[str] = []
        warnings: list[str] = []
        _job_settings(job, bases, models, problems, warnings)
        for key, messages in (("problems", problems), ("warnings", warnings)):
            for m in messages:
                found.setdefault((key, m), []).append(job.name)
    for (key, message), where in found.items():
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        report[key].append(f"{shown}: {message}" if len(where) == 1 else f"{len(where)} jobs ({shown}): {message}")
    return report


SETTINGS = {"cohort": {"synth": SynthConfig}, "labels": {"task": TaskConfig}, "render": {"render": RenderConfig},
            "rationales": {"teacher": TeacherConfig}, "quality": {"render": RenderConfig},
            "baselines": {"cfg": BaselinesConfig},
            "corpus": {"synth": SynthConfig, "task": TaskConfig, "render": RenderConfig, "teacher": TeacherConfig}}
"Shared jobs: the config class each of their arguments is built into when they run."


def _job_settings(job, bases: dict, models: dict, problems: list[str], warnings: list[str]) -> None:
    """Build ``job``'s settings as the job does; check a run's against its base model (``bases``: base job dir ->
    model settings; ``models``: what ``_model`` found for each base, filled as bases are met)."""
    from rationale_sft.experiment.runs import fewshot_settings, sft_settings

    kind = job.function
    try:
        if kind in SETTINGS:
            for arg, cls in SETTINGS[kind].items():
                if job.kwargs[arg] is not None:  # a labels job from precomputed labels has no task
                    cfglib.build(cls, job.kwargs[arg])
        elif kind == "base":
            cfglib.build(BaseModelConfig, {"model": job.kwargs["model"], "pretrain": job.kwargs["pretrain"]})
        elif kind == "sft":
            train, score = sft_settings(job.kwargs["train"], job.kwargs["score"], job.kwargs["seed"],
                                        job.kwargs["probe"])
            base = job.kwargs["base_job"]
            if base not in models:
                models[base] = _model(bases[base], problems)
            _against_model(train, score, *models[base], problems, warnings)
        elif kind == "fewshot":
            fewshot_settings(job.kwargs["settings"], job.kwargs["score"])
    except (InputError, ValueError) as exc:
        problems.append(str(exc))


def _against_model(train, score, model_cfg, tok, problems: list[str], warnings: list[str]) -> None:
    """An SFT run's settings against its base (architecture config, tokenizer; either None when unknown):
    context, room to generate, LoRA targets, label tokens."""
    from rationale_sft import validate
    from rationale_sft.config.train import JobConfig
    from rationale_sft.train.loop import with_max_len

    job = JobConfig(train=train, score=score)
    if model_cfg is not None:
        job = JobConfig(train=with_max_len(train, model_cfg), score=score)
        validate.check_context(model_cfg, job, problems)
        if train.lora.enabled:
            validate.check_lora_targets(model_cfg, job, problems)
    if tok is not None:
        validate.check_label_tokens(tok, job, problems, warnings)


def _model(model: dict, problems: list[str]) -> tuple:
    """(architecture config, tokenizer or None) of a base: a from-scratch family's config (its tokenizer is
    trained by the grid), or a checkpoint's files on disk (an alias not yet converted: neither)."""
    from rationale_sft import validate
    from rationale_sft.models import hub
    from rationale_sft.models.families import model_config
    from rationale_sft.models.tokenizer import SPECIAL_IDS

    if not model["checkpoint"]:  # the grid trains its tokenizer
        return model_config(model["family"], model["size"], model["vocab_size"], SPECIAL_IDS), None
    name = model["checkpoint"]
    if name.lower() in hub.ALIASES:
        path = hub.converted_dir(name.lower())
        if not (path / "DONE").is_file():
            return None, None
    else:
        try:
            path = hub.resolve(name)
        except InputError:  # reported by input_problems
            return None, None
    return validate.model_config(path, problems), validate.tokenizer(path, problems)
