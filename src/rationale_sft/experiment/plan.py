"""Turn an experiment config into grid jobs: shared artifacts once, then one job per configuration.

Job ids are content hashes of each job's resolved settings and inputs, so shared artifacts (cohort,
labels, prompts, rationales, base models) are built once and reused by every run that needs them, and
relaunching the same grid runs only what is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rationale_sft import config as cfglib
from rationale_sft import fingerprint
from rationale_sft.config.experiment import ExperimentConfig, ModelSpec
from rationale_sft.config.train import check_answer_stage
from rationale_sft.errors import InputError
from rationale_sft.experiment import jobs
from rationale_sft.experiment.corpus import CORPUS_VERSION
from rationale_sft.grid.job import Job, make_job
from rationale_sft.rationales.generate import backend_params
from rationale_sft.render.templates import get_template, template_hash

PRETRAIN_SEED_OFFSET = 1_000_003
"Seed offset of the pretraining cohort: same synthetic world, other people."


@dataclass
class Plan:
    """Every job of a grid, the run jobs among them (one results row each) and the artifact index."""

    jobs: list[Job] = field(default_factory=list)
    runs: list[Job] = field(default_factory=list)
    index: dict = field(default_factory=dict)

    def add(self, job: Job) -> Job:
        """Add a job (once) and return it."""
        if job.id not in {j.id for j in self.jobs}:
            self.jobs.append(job)
        return job


def plan(cfg: ExperimentConfig, config_dir: str | Path = ".") -> Plan:
    """All jobs of the experiment ``cfg`` (relative paths in it are read relative to ``config_dir``)."""
    check_budget(cfg)
    p, task = Plan(), load_task(cfg, Path(config_dir))
    if cfg.data.meds_dir and cfg.grid.hidden_shares:
        raise InputError("grid.hidden_shares varies the synthetic generator; it cannot apply to data.meds_dir "
                         f"({cfg.data.meds_dir}); drop one of them")
    bases = base_jobs(p, cfg, task)
    for share in cfg.grid.hidden_shares or (None,):
        shared = data_jobs(p, cfg, Path(config_dir), task, share)
        for spec in cfg.grid.models:
            for arm, label_weight in arm_levels(cfg):
                for scale in cfg.grid.scales:
                    for seed in cfg.grid.seeds:
                        p.runs.append(p.add(sft_job(cfg, spec, arm, scale, seed, shared, bases[_base_key(spec)],
                                                    label_weight)))
        if cfg.fewshot.enabled:
            fewshot_jobs(p, cfg, shared, bases)
    return p


def check_budget(cfg: ExperimentConfig) -> None:
    """The grid's training-budget rule: every run takes ``train.steps`` optimizer steps, whatever its arm and scale.

    (A grid without fine-tuning arms trains nothing.) Epochs would make the steps grow with the training scale (and double them for the two-sequence
    multitask arm), so a trend over scales would confound data with optimisation. A grid therefore needs a
    fixed step budget; small scales repeat their subjects, large ones may see each subject less than once.

    >>> from rationale_sft.config import build
    >>> check_budget(build(ExperimentConfig, {"train": {"steps": 50}}))
    >>> check_budget(build(ExperimentConfig, {"train": {"epochs": 2}}))
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: train.steps is 0: a grid gives every run the same fixed number of optimizer steps (epochs would make steps grow with the training scale); set train.steps, e.g. train.steps=100 (scales [500])

    The answer_stage arm spends the last ``train.answer_stage_steps`` of these steps on its answer stage:

    >>> check_budget(build(ExperimentConfig, {"train": {"steps": 50}, "grid": {"arms": ["answer_stage"]}}))
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: train: arm 'answer_stage' needs 0 < answer_stage_steps < steps (its steps are part of the run's budget), got answer_stage_steps=0 with steps=50; set e.g. answer_stage_steps=5
    """
    if cfg.grid.arms and cfg.train.steps <= 0:
        raise InputError("train.steps is 0: a grid gives every run the same fixed number of optimizer steps (epochs "
                         "would make steps grow with the training scale); set train.steps, e.g. train.steps=100 "
                         f"(scales {list(cfg.grid.scales)})")
    if "answer_stage" in cfg.grid.arms:
        try:
            check_answer_stage(cfg.train.answer_stage_steps, cfg.train.steps)
        except ValueError as exc:
            raise InputError(f"train: {exc}") from None


def data_jobs(p: Plan, cfg: ExperimentConfig, config_dir: Path, task: dict, share: float | None) -> dict:
    """Cohort, labels, prompts, rationales and baselines of one level of the generator's hidden share
    (``None``: the data as configured); the first level's artifacts are the index's."""
    index, p.index = p.index, {}
    meds_job, meds = cohort_job(p, cfg, config_dir, share)
    given_job, given = labels_input(p, cfg, config_dir)
    labels = p.add(_job(jobs.labels, {
        "meds": meds, "task": None if given else task, "scales": list(cfg.grid.scales), "seeds": list(cfg.grid.seeds),
        "controls_per_case": cfg.data.controls_per_case, "test_controls_per_case": cfg.data.test_controls_per_case,
        "test_max": cfg.data.test_max, "seed": cfg.seed} | ({"labels_file": given} if given else {}),
        [meds_job, given_job], "labels"))
    # a factors line is worded by the knowledge module: its phrasing version and base are in the id; so is
    # the template's text (an edited built-in template renders new prompts)
    template = get_template(cfg.render.template)
    knowledge = {"knowledge": knowledge_params(cfg)} if "{factors}" in template.question_block else {}
    render = p.add(_job(jobs.render, {"meds": meds, "labels_dir": labels.out_dir, "render": cfglib.to_dict(cfg.render),
                                   "template": template_id(cfg)}
                        | knowledge, [meds_job, labels], "render"))
    by_mode = rationale_jobs(p, cfg, meds, meds_job, labels, render)
    baseline_jobs(p, cfg, meds, meds_job, labels)
    p.index.update({"cohort": meds, "labels": f"{labels.out_dir}/labels_used.parquet", "examples": render.out_dir})
    level, p.index = p.index, index or dict(p.index)
    if share is not None:
        p.index.setdefault("hidden_share_levels", {})[f"{share:g}"] = level
    return {"labels": labels, "render": render, "rationales": by_mode.get(cfg.teacher.mode),
            "rationales_by_mode": by_mode, "hidden_share": share, "meds": meds}


def load_task(cfg: ExperimentConfig, config_dir: Path) -> dict:
    """The task YAML (or ACES config) named by ``data.task``, resolved and validated, as a plain dict (hashed by
    content; fields added later are left out at their defaults, see ``TaskConfig.hashed``)."""
    from rationale_sft.cohort.task import load_task as load

    path = Path(cfg.data.task)
    return load(path if path.is_absolute() else config_dir / path).hashed()


def labels_input(p: Plan, cfg: ExperimentConfig, config_dir: Path) -> tuple[Job | None, str | None]:
    """The precomputed labels file of ``data.labels`` (recorded by content) and its path; (None, None) without."""
    if cfg.data.labels is None:
        return None, None
    path = Path(cfg.data.labels)
    path = (path if path.is_absolute() else config_dir / path).resolve()
    return external_job(p, "labels-input", path), str(path)


def cohort_job(p: Plan, cfg: ExperimentConfig, config_dir: Path, share: float | None = None) -> tuple[Job | None, str]:
    """The synthetic cohort job (none for an existing MEDS dataset) and the MEDS path runs read."""
    if cfg.data.meds_dir:
        path = Path(cfg.data.meds_dir)
        path = (path if path.is_absolute() else config_dir / path).resolve()
        return external_job(p, "meds", path), str(path)
    synth = cfg.data.synth if share is None else dataclasses.replace(cfg.data.synth, hidden_share=share)
    job = p.add(_job(jobs.cohort, {"synth": cfglib.to_dict(synth)}, [], "cohort"))
    return job, job.out_dir


def external_job(p: Plan, kind: str, path: Path) -> Job:
    """An input outside the grid (a MEDS dataset, a checkpoint) recorded by content: its id, and so the id
    of every job depending on it, changes when any file under ``path`` changes, even at the same path."""
    if not path.exists():
        raise InputError(f"{kind} input {path} does not exist; fix the path in the config")
    return p.add(_job(jobs.external, {"path": str(path), "content": fingerprint.digest(path)}, [], kind))


def rationale_jobs(p: Plan, cfg: ExperimentConfig, meds: str, meds_job, labels: Job, render: Job) -> dict[str, Job]:
    """Teacher rationales (and their quality report) when any arm or few-shot demonstration uses them, per
    teacher mode: ``teacher.mode``, plus the modes of the arms that fix their own (``extra_modes``)."""
    demos = cfg.fewshot.demos if cfg.fewshot.enabled else ()
    if all(a == "label_only" for a in cfg.grid.arms) and all(d == "label_only" for d in demos):
        return {}
    by_mode = {}
    for mode in (cfg.teacher.mode, *extra_modes(cfg)):
        teacher = dataclasses.replace(cfg.teacher, mode=mode)
        kwargs = {"meds": meds, "render_dir": render.out_dir, "teacher": cfglib.to_dict(teacher),
                  "backend": backend_params(teacher)}
        by_mode[mode] = p.add(_job(jobs.rationales, kwargs, [meds_job, render], "rationales"))
    job = by_mode[cfg.teacher.mode]
    quality = p.add(_job(jobs.quality, {"meds": meds, "labels_dir": labels.out_dir, "rationales_dir": job.out_dir,
                                     "render": cfglib.to_dict(cfg.render)}, [meds_job, labels, job], "quality"))
    p.index.update({"rationales": job.out_dir, "rationale_quality": quality.out_dir})
    if len(by_mode) > 1:
        p.index["rationales_by_mode"] = {m: j.out_dir for m, j in by_mode.items()}
    return by_mode


def extra_modes(cfg: ExperimentConfig) -> list[str]:
    """Teacher modes other than ``teacher.mode`` that the grid's arms train on (flipped_rationale: flipped,
    blind_rationale: blind), each generated by its own rationales job.

    >>> from rationale_sft.config import build
    >>> extra_modes(build(ExperimentConfig, {"grid": {"arms": ["freeform", "flipped_rationale", "blind_rationale"]}}))
    ['blind', 'flipped']
    >>> extra_modes(build(ExperimentConfig, {"teacher": {"mode": "blind"}, "grid": {"arms": ["blind_rationale"]}}))
    []
    """
    from rationale_sft.train.arms import RATIONALE_MODES

    return sorted({RATIONALE_MODES[a] for a in cfg.grid.arms if a in RATIONALE_MODES} - {cfg.teacher.mode})


def baseline_jobs(p: Plan, cfg: ExperimentConfig, meds: str, meds_job, labels: Job) -> None:
    """Baselines and the oracle at every scale and seed (the index lists the first seed's per scale)."""
    p.index["baselines"], p.index["baselines_by_seed"] = {}, {}
    for scale in cfg.grid.scales:
        for seed in cfg.grid.seeds:
            job = p.add(_job(jobs.baselines, {"meds": meds, "labels_dir": labels.out_dir, "scale": scale, "seed": seed,
                                           "cfg": cfglib.to_dict(cfg.baselines)}, [meds_job, labels], "baselines"))
            p.index["baselines"].setdefault(str(scale), job.out_dir)
            p.index["baselines_by_seed"][f"{scale}/{seed}"] = job.out_dir


def knowledge_params(cfg: ExperimentConfig) -> dict:
    """The knowledge teacher's ``backend_params`` (phrasing version, knowledge-base hash), whatever the grid's
    teacher: the pretraining corpus and a factors line are its texts."""
    return backend_params(dataclasses.replace(cfg.teacher, backend="knowledge"))


def template_id(cfg: ExperimentConfig) -> str:
    """``templates.template_hash`` of the grid's prompts (template text, question, anchor): in the ids of the jobs
    that render them (prompts, pretraining corpus), so an edited built-in template is rendered anew."""
    return template_hash(get_template(cfg.render.template), cfg.render.question, cfg.render.anchor)


def base_jobs(p: Plan, cfg: ExperimentConfig, task: dict) -> dict[tuple, Job]:
    """One base-model job per distinct model level (and the pretraining corpus they share)."""
    specs = list(cfg.grid.models) + (list(cfg.fewshot.models) if cfg.fewshot.enabled else [])
    corpus = None
    if any(not s.checkpoint or s.reasoning_base for s in specs):
        synth = dataclasses.replace(cfg.data.synth, seed=cfg.data.synth.seed + PRETRAIN_SEED_OFFSET,
                                    n_subjects=cfg.data.pretrain_subjects)
        # the texts are the knowledge teacher's, whatever the grid's teacher: its wording and base are in the id;
        # so is the template's text, which its prompts are rendered with
        knowledge = knowledge_params(cfg)
        corpus = p.add(_job(jobs.corpus, {"synth": cfglib.to_dict(synth), "task": task,
                                       "render": cfglib.to_dict(cfg.render), "seed": cfg.seed,
                                       "teacher": cfglib.to_dict(cfg.teacher), "version": CORPUS_VERSION,
                                       "template": template_id(cfg), "knowledge": knowledge}, [], "corpus"))
    out = {}
    for spec in specs:
        model = {"family": spec.family, "size": spec.size, "checkpoint": spec.checkpoint,
                 "vocab_size": cfg.vocab_size, "bf16_autocast": cfg.bf16_autocast,
                 "reasoning_base": spec.reasoning_base}
        kwargs = {"corpus_dir": corpus.out_dir if corpus else "", "model": model,
                  "pretrain": cfglib.to_dict(cfg.pretrain)}
        local = Path(spec.checkpoint).expanduser() if spec.checkpoint else None
        weights = external_job(p, "checkpoint", local.resolve()) if local and local.exists() else None
        out[_base_key(spec)] = p.add(_job(jobs.base, kwargs, [corpus, weights], "base"))
    return out


def arm_levels(cfg: ExperimentConfig) -> list[tuple[str, float | None]]:
    """(arm, label weight) levels: the weighted arm splits into one level per ``grid.label_weights`` entry."""
    out: list[tuple[str, float | None]] = []
    for arm in cfg.grid.arms:
        weights = cfg.grid.label_weights if arm == "weighted" else ()
        out += [(arm, w) for w in weights] or [(arm, None)]
    return out


def sft_job(cfg: ExperimentConfig, spec: ModelSpec, arm: str, scale: int, seed: int, shared: dict,
            base: Job, label_weight: float | None = None) -> Job:
    """One configuration: arm (with its label weight) x model x scale x seed."""
    train = {**id_neutral("train", cfglib.to_dict(cfg.train)), "arm": arm}
    if label_weight is not None:
        train["label_weight"] = label_weight
    if spec.lora:
        train["lora"] = {**cfglib.to_dict(cfg.lora), "enabled": True}
    meta = _meta(spec, arm if label_weight is None else f"{arm}_x{label_weight:g}", shared)
    from rationale_sft.train.arms import RATIONALE_MODES

    rationales = None if arm == "label_only" else (
        shared["rationales_by_mode"][RATIONALE_MODES[arm]] if arm in RATIONALE_MODES else shared["rationales"])
    extra = {"layer_probes": True} if cfg.layer_probes else {}  # absent when off: ids of older grids hold
    return _run_job(jobs.sft, cfg, shared, base, rationales, scale=scale, seed=seed, train=train,
                    probe=cfg.probe, meta=meta, meds=shared["meds"], render=cfglib.to_dict(cfg.render), **extra)


ID_NEUTRAL = {"train": {"keep_checkpoints": False, "system_prompt": "", "bucket_by_length": True,
                        "gradient_checkpointing": False},
              "score": {"dtype": "float32"}}
"""Keys added after grids were run: left out of a job's arguments at these values, so its id is unchanged.
Each value reproduces what ran before the key existed (bucket_by_length: exactly so with grad_accum 1, the
presets that were run; with grad_accum > 1 up to float summation order and LoRA dropout masks)."""


def id_neutral(section: str, values: dict) -> dict:
    """``values`` of a config ``section`` without the keys of ``ID_NEUTRAL`` that hold their neutral value.

    >>> id_neutral("train", {"steps": 5, "keep_checkpoints": False}), id_neutral("train", {"keep_checkpoints": True})
    ({'steps': 5}, {'keep_checkpoints': True})
    """
    neutral = ID_NEUTRAL[section]
    return {k: v for k, v in values.items() if k not in neutral or neutral[k] != v}


def fewshot_jobs(p: Plan, cfg: ExperimentConfig, shared: dict, bases: dict) -> None:
    """Few-shot runs: every few-shot model x demonstration kind (x seed)."""
    for spec in cfg.fewshot.models:
        for demo in cfg.fewshot.demos:
            for seed in cfg.fewshot.seeds or cfg.grid.seeds:
                settings = {**cfglib.to_dict(cfg.fewshot.settings), "with_rationales": demo != "label_only",
                            "seed": seed}
                if demo != "label_only":
                    settings["rationale_style"] = demo
                rationales = shared["rationales"] if demo != "label_only" else None
                p.runs.append(p.add(_run_job(jobs.fewshot, cfg, shared, bases[_base_key(spec)], rationales,
                                             settings=settings, meta=_meta(spec, f"fewshot_{demo}", shared))))


def _run_job(fn: Callable, cfg: ExperimentConfig, shared: dict, base: Job, rationales: Job | None, **kwargs) -> Job:
    """A run job (one results row): reads the shared labels, prompts, base model and, if used, rationales."""
    inputs = {"labels_dir": shared["labels"].out_dir, "render_dir": shared["render"].out_dir,
              "rationales_dir": rationales.out_dir if rationales else None, "base_job": base.out_dir,
              "score": id_neutral("score", cfglib.to_dict(cfg.score))}
    deps = [shared["labels"], shared["render"], base, rationales]
    return _job(fn, {**inputs, **kwargs}, deps, None, resources=_resources(cfg),
                label=run_label(fn.__name__, kwargs))


def run_label(fn: str, kwargs: dict) -> str:
    """A run job as a person names it: its kind, arm, model and, for SFT, scale and seed.

    >>> run_label("sft", {"meta": {"arm": "freeform", "model": "gpt2-xs"}, "scale": 600, "seed": 1})
    'sft freeform gpt2-xs scale 600 seed 1'
    >>> run_label("fewshot", {"meta": {"arm": "fewshot_freeform", "model": "smollm2"}, "settings": {"seed": 0}})
    'fewshot fewshot_freeform smollm2 seed 0'
    """
    meta = kwargs["meta"]
    where = [f"{k} {kwargs[k]}" for k in ("scale", "seed") if k in kwargs]
    if "settings" in kwargs:
        where.append(f"seed {kwargs['settings']['seed']}")
    share = [f"hidden share {meta['hidden_share']:g}"] if "hidden_share" in meta else []
    return " ".join([fn, meta["arm"], meta["model"], *where, *share])


def _job(fn: Callable, kwargs: dict, deps: list, kind: str | None, resources: dict | None = None,
         label: str = "") -> Job:
    """A job of one of ``experiment.jobs``' functions (its arguments checked against the function now)."""
    out_dir = f"shared/{kind}-{{id}}" if kind else "runs/{id}"
    return make_job(fn, kwargs, [d for d in deps if d is not None], out_dir=out_dir, resources=resources,
                    label=label or fn.__name__)


def _meta(spec: ModelSpec, arm: str, shared: dict) -> dict:
    share = {} if shared["hidden_share"] is None else {"hidden_share": shared["hidden_share"]}
    return {"arm": arm, "family": spec.family, "size": spec.size, "model": spec.name, "base": spec.base, **share}


def _base_key(spec: ModelSpec) -> tuple:
    return (spec.family, spec.size, spec.checkpoint, spec.reasoning_base)


def _resources(cfg: ExperimentConfig) -> dict:
    return {"num_cpus": cfg.executor.num_cpus, "num_gpus": cfg.executor.num_gpus}
