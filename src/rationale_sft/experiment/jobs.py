"""The experiment's job functions: each builds one artifact of the grid from its dependencies' directories.

Every function is called by the grid engine as ``fn(out_dir=ROOT/<dir>, root=ROOT, **kwargs)`` with JSON
keyword arguments (configs arrive as plain dicts; paths of other jobs' directories are relative to
ROOT). Each writes its outputs, then ``DONE`` (directly or through the stage function it wraps) and
returns the metrics the engine stores in ``result.json``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir
from rationale_sft.experiment.paths import CORPUS, LABELS, SUBSETS, TEST, USED, base_dir, grid_path, subset_ids
from rationale_sft.grid.tracking import numeric_metrics
from rationale_sft.seeding import rng


def external(out_dir: str, root: str, path: str, content: str) -> dict:
    """Record an input outside the grid by content (``inputs.json``: every file's size and sha256); refuse
    when it changed since the grid was planned (the plan's ids would describe other data)."""
    from rationale_sft import fingerprint
    from rationale_sft.errors import InputError

    if fingerprint.digest(path) != content:
        raise InputError(f"{path} changed after the grid was planned; relaunch the grid so that every job "
                         "depending on it gets a new id")
    rundir.run_stage(out_dir, lambda d: rundir.write_json(d / "inputs.json", {
        "path": path, "content": content, "files": fingerprint.manifest(path)}) and None)
    return {"n_files": len(fingerprint.manifest(path))}


def cohort(out_dir: str, root: str, synth: dict) -> dict:
    """The synthetic MEDS cohort."""
    from rationale_sft.cohort.synth import synthesize
    from rationale_sft.config.synth import SynthConfig

    cfg = cfglib.build(SynthConfig, synth)
    rundir.run_stage(out_dir, lambda d: synthesize(cfg, d), cfg=cfg, seeds={"seed": cfg.seed})
    return rundir.read_json(Path(out_dir) / "summary.json")


def labels(out_dir: str, root: str, meds: str, task: dict | None, scales: list, seeds: list,
           controls_per_case: float | None, test_controls_per_case: float | None, test_max: int,
           seed: int, labels_file: str | None = None) -> dict:
    """Labelled cohort (from ``task``, or completed from the precomputed ``labels_file``), the fixed test set,
    nested training subsets per seed, and the subjects used."""
    from rationale_sft.cohort.extract import extract_labels
    from rationale_sft.cohort.precomputed import labels_from_file
    from rationale_sft.cohort.scales import nested_subsets
    from rationale_sft.config.task import TaskConfig

    task_cfg = None if task is None else cfglib.build(TaskConfig, task)

    def work(d: Path) -> dict:
        if labels_file is not None:
            table, summary = labels_from_file(grid_path(root, labels_file), grid_path(root, meds))
        else:
            table, summary = extract_labels(task_cfg, grid_path(root, meds))
        test = fixed_test_set(table, test_controls_per_case, test_max, seed)
        subsets = pl.concat([nested_subsets(table, scales, s, controls_per_case).with_columns(
            seed=pl.lit(s, pl.Int64)) for s in seeds])
        rundir.write_parquet(table, d / LABELS)
        rundir.write_parquet(test, d / TEST)
        rundir.write_parquet(subsets, d / SUBSETS)
        rundir.write_parquet(used_labels(table, subsets, test), d / USED)
        return {"extract": summary, "n_test": test.height, "n_test_pos": int(test["boolean_value"].sum())}

    source = {"task": task} if labels_file is None else {"labels_file": labels_file}
    rundir.run_stage(out_dir, work, cfg=source | {"scales": scales, "seeds": seeds, "seed": seed,
                                                  "controls_per_case": controls_per_case,
                                                  "test_controls_per_case": test_controls_per_case,
                                                  "test_max": test_max})
    manifest = rundir.read_json(Path(out_dir) / rundir.MANIFEST)
    return manifest["extract"] | {"n_test": manifest["n_test"]}


def fixed_test_set(table: pl.DataFrame, controls_per_case: float | None, cap: int, seed: int) -> pl.DataFrame:
    """The fixed test subjects: every held-out case plus sampled held-out controls, at most ``cap``.

    The same labels and seed give the same subjects for every run, scale and run seed.
    """
    held = table.filter(pl.col("split") == "held_out").sort("subject_id")
    cases, controls = held.filter(pl.col("boolean_value")), held.filter(~pl.col("boolean_value"))
    n_ctrl = controls.height if controls_per_case is None else min(controls.height,
                                                                   round(cases.height * controls_per_case))
    shrink = min(1.0, cap / max(cases.height + n_ctrl, 1))
    n_case, n_ctrl = max(1, int(cases.height * shrink)), max(1, int(n_ctrl * shrink))
    g = rng(seed, "test_set")
    pick = lambda df, n: df[sorted(g.choice(df.height, size=min(n, df.height), replace=False).tolist())]
    return pl.concat([pick(cases, n_case), pick(controls, n_ctrl)]).sort("subject_id")


def used_labels(table: pl.DataFrame, subsets: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Labels of the subjects any stage touches: training-subset members (train), the tuning split (early
    stopping of the baselines) and the test subjects (held_out)."""
    train_ids = subsets["subject_id"].unique()
    train = table.filter(pl.col("subject_id").is_in(train_ids.implode()) & (pl.col("split") == "train"))
    tuning = table.filter(pl.col("split") == "tuning")
    return pl.concat([train, tuning, test.with_columns(split=pl.lit("held_out"))]).sort("subject_id")


def render(out_dir: str, root: str, meds: str, labels_dir: str, render: dict, template: str | None = None,
           knowledge: dict | None = None) -> dict:
    """Prompts for every subject used, identical across arms. ``template`` (``templates.template_hash`` of the
    built-in template with the question and anchor) and ``knowledge`` (the knowledge teacher's
    ``generate.backend_params``, for a template with a factors line, whose wording is the knowledge module's) are
    part of the job's id only."""
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.render.stage import render as render_stage

    path = render_stage(cfglib.build(RenderConfig, render), grid_path(root, meds), grid_path(root, labels_dir) / USED,
                        out_dir)
    table = pl.read_parquet(path, columns=["split", "truncated"])
    return {"n_examples": table.height, "n_truncated": int(table["truncated"].sum())}


def rationales(out_dir: str, root: str, meds: str, render_dir: str, teacher: dict,
               backend: dict | None = None) -> dict:
    """Teacher rationales for the training subjects. ``backend`` (``generate.backend_params``: for the
    knowledge teacher its phrasing version and knowledge-base hash) is part of the job's id only, so a resumed
    grid rewrites its rationales when what the backend writes changed, as it rebuilds the corpus."""
    from rationale_sft.config.teacher import TeacherConfig
    from rationale_sft.rationales.generate import generate

    path = generate(cfglib.build(TeacherConfig, teacher), grid_path(root, render_dir) / "examples.parquet",
                    out_dir, meds=grid_path(root, meds))
    table = pl.read_parquet(path, columns=["style", "text"])
    words = table.with_columns(n=pl.col("text").str.split(" ").list.len()).group_by("style").agg(
        pl.col("n").mean().alias("mean_words"))
    return {"n_rationales": table.height, **{f"mean_words_{r['style']}": r["mean_words"] for r in words.to_dicts()}}


def quality(out_dir: str, root: str, meds: str, labels_dir: str, rationales_dir: str, render: dict) -> dict:
    """Rationale quality report (grounding, accuracy, consistency, length, diversity)."""
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.rationales.check import check_rationales

    table = pl.read_parquet(grid_path(root, rationales_dir) / "rationales.parquet")
    labels_table = pl.read_parquet(grid_path(root, labels_dir) / USED)
    check_rationales(table, grid_path(root, meds), labels_table, out_dir,
                     render_cfg=cfglib.build(RenderConfig, render))
    return numeric_metrics(rundir.read_json(Path(out_dir) / "quality.json"))


def baselines(out_dir: str, root: str, meds: str, labels_dir: str, scale: int, seed: int, cfg: dict) -> dict:
    """Classical baselines and the oracle, trained on the same subset as the language models."""
    from rationale_sft.baselines.fit import fit_baselines
    from rationale_sft.config.baselines import BaselinesConfig

    ids = subset_ids(grid_path(root, labels_dir), scale, seed)
    metrics = fit_baselines(cfglib.build(BaselinesConfig, cfg), grid_path(root, labels_dir) / USED,
                            grid_path(root, meds), out_dir, train_ids=ids)
    return {f"{model}_{k}": v for model, m in metrics.items() for k, v in m.items()}


def corpus(out_dir: str, root: str, synth: dict, task: dict, render: dict, seed: int, teacher: dict,
           version: int = 1, template: str | None = None, knowledge: dict | None = None) -> dict:
    """Pretraining texts from a second synthetic cohort (disjoint from every task split) and the knowledge base.

    ``base`` texts: each subject's prompt followed by the knowledge teacher's label-blind rationale (in
    the grid's styles; it knows no outcome), and knowledge-base sentences. ``reasoning`` texts: the
    label-blind step-by-step reasoning, for the reasoning-oriented base. ``short`` texts: the same people
    with only sex and age recorded, and with their measurements but no diagnosis. ``drill`` and ``redrawn``
    texts: copy drills and measured texts with permuted values (``pretrain.copy_steps``). ``version``
    (``corpus.CORPUS_VERSION``), ``template`` (``templates.template_hash`` of the prompts' template) and
    ``knowledge`` (the knowledge teacher's ``generate.backend_params``: its phrasing version and the knowledge
    base's hash, which the texts depend on) are part of the job's id only.
    """
    from rationale_sft.experiment.corpus import build_corpus

    rundir.run_stage(out_dir, lambda d: build_corpus(d, synth, task, render, seed, teacher))
    table = pl.read_parquet(Path(out_dir) / CORPUS)
    return {f"n_{k}": int(v) for k, v in table.group_by("kind").len().iter_rows()}


def base(out_dir: str, root: str, corpus_dir: str, model: dict, pretrain: dict) -> dict:
    """A base model: a from-scratch tiny model pretrained on the corpus, or a resolved real checkpoint."""
    from rationale_sft.config.model import BaseModelConfig
    from rationale_sft.models.pretrain import ensure_base

    cfg = cfglib.build(BaseModelConfig, {"model": model, "pretrain": pretrain})
    table = pl.read_parquet(grid_path(root, corpus_dir) / CORPUS) if corpus_dir else None
    texts = lambda kind: [] if table is None else table.filter(pl.col("kind") == kind)["text"].to_list()
    path = ensure_base(cfg, texts, Path(root) / "shared" / "models")

    def work(d: Path) -> dict:
        stored = rundir.portable(path, d)
        rundir.write_json(d / "base.json", {"path": stored})
        # a model built inside the grid is this job's output too: checked whenever the job is reused
        return {} if Path(stored).is_absolute() else {"covers": [stored]}

    rundir.run_stage(out_dir, work, cfg=cfg)
    return {"base_dir": rundir.portable(path, root)}


def sft(out_dir: str, root: str, labels_dir: str, render_dir: str, rationales_dir: str | None, base_job: str,
        scale: int, seed: int, train: dict, score: dict, probe: bool, meta: dict, meds: str, render: dict,
        layer_probes: bool = False) -> dict:
    """One configuration: fine-tune the base in one arm on one subset, score the test set, probe its states
    (with ``layer_probes`` every layer of every checkpoint), check its generated rationales (``meds`` and
    ``render`` say how the test subjects' facts are read)."""
    from rationale_sft.experiment.runs import run_sft

    return run_sft(Path(out_dir), Path(root), labels_dir, render_dir, rationales_dir, base_job, scale, seed,
                   train, score, probe, meta, meds, render, layer_probes)


def fewshot(out_dir: str, root: str, labels_dir: str, render_dir: str, rationales_dir: str | None, base_job: str,
            settings: dict, score: dict, meta: dict) -> dict:
    """The few-shot arm: the untrained base with k demonstrations from the training subjects."""
    from rationale_sft.experiment.runs import run_fewshot

    return run_fewshot(Path(out_dir), Path(root), labels_dir, render_dir, rationales_dir, base_job, settings,
                       score, meta)
