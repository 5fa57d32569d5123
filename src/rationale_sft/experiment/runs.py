"""One grid configuration end to end: fine-tune (or prompt) a base model, score the fixed test set, probe.

A run directory holds the training checkpoint and log, the per-subject scores, the predictions in the
meds-evaluation schema, the answer-slot states with their probe, and ``run.json`` (the row this run
contributes to ``results.parquet``). It is done only when ``DONE`` exists; a killed run resumes from its
last training checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import memory, rundir
from rationale_sft.experiment.paths import TEST, USED, base_dir, grid_path, subset_ids

RUN_JSON = "run.json"
GENERATION_KEYS = ("gen_grounding_rate", "gen_age_correct_rate", "gen_sex_correct_rate", "gen_loop_rate",
                   "gen_direction_accuracy")
"Quality of a run's generated rationales (score.quality); None for arms that do not generate."


def run_examples(root: Path, labels_dir: str, render_dir: str, scale: int | None, seed: int | None) -> pl.DataFrame:
    """The rendered examples of one run: its training subset (split train) and the fixed test set (held_out).

    ``scale=None`` keeps every training subject rendered (the few-shot demonstration pool).
    """
    examples = pl.read_parquet(grid_path(root, render_dir) / "examples.parquet")
    test = pl.read_parquet(grid_path(root, labels_dir) / TEST)["subject_id"]
    keep = pl.col("subject_id").is_in(test.implode()) & (pl.col("split") == "held_out")
    if scale is None:
        keep = keep | (pl.col("split") == "train")
    else:
        ids = pl.Series(subset_ids(grid_path(root, labels_dir), scale, seed), dtype=pl.Int64)
        keep = keep | (pl.col("subject_id").is_in(ids.implode()) & (pl.col("split") == "train"))
    return examples.filter(keep).sort("split", "subject_id")


def run_sft(out_dir: Path, root: Path, labels_dir: str, render_dir: str, rationales_dir: str | None, base_job: str,
            scale: int, seed: int, train: dict, score: dict, probe: bool, meta: dict, meds: str, render: dict,
            layer_probes: bool = False) -> dict:
    """Train one arm on one subset, score the test set, probe the answer-slot states, check generated
    rationales against the test subjects' records (generating arms); with ``layer_probes``, probe every
    layer of every checkpoint (``probe_layers.parquet``); return the result row."""
    from rationale_sft.score.stage import score as score_stage
    from rationale_sft.train.loop import train as train_stage

    train_cfg, score_cfg = sft_settings(train, score, seed, probe)
    rationales = None if rationales_dir is None else grid_path(root, rationales_dir) / "rationales.parquet"
    base = base_dir(str(root), base_job)

    def work(d: Path) -> dict:
        with memory.peak() as peak:
            examples = run_examples(root, labels_dir, render_dir, scale, seed)
            summary = train_stage(train_cfg, d, examples, rationales, base)
            check_headroom(d, train_cfg, score_cfg)
            scored = score_stage(score_cfg, d, examples, d / "checkpoint")
            quality = generation_metrics(d, root, labels_dir, meds, render) if scored["mode"] == "generate" else {}
            probe_error = probe_layer_states(d, examples, score_cfg, seed) if layer_probes else None
        row = {**meta, "scale": scale, "seed": seed, **result_metrics(d), **peak,
               "probe": probe_row(d, seed) if probe else {},
               "train_seconds": summary["seconds"], "train_tokens_per_s": summary["tokens_per_s"],
               "train_steps": summary["steps"], "train_answer_steps": summary["answer_stage_steps"],
               "train_tokens": summary["tokens_seen"],
               "score_seconds": scored["seconds"], "n_train": summary["n_examples"],
               **{k: quality.get(k) for k in GENERATION_KEYS}, **mechanism_metrics(d),
               **({"layer_probes_error": probe_error} if probe_error else {})}
        rundir.write_json(d / RUN_JSON, row)
        return {"run": row}

    stage_cfg = {"train": train_cfg, "score": score_cfg, "meta": meta, "scale": scale,
                 "base": rundir.portable(base, out_dir)} | ({"layer_probes": True} if layer_probes else {})
    rundir.run_stage(out_dir, work, cfg=stage_cfg, seeds=_seeds(seed))
    return flat_row(rundir.read_json(out_dir / RUN_JSON))


def sft_settings(train: dict, score: dict, seed: int, probe: bool):
    """The (TrainConfig, ScoreConfig) of one SFT run from its job's arguments: the run seed in both, scored on
    the fixed test set (``held_out``), answer-slot states saved when the run is probed."""
    from rationale_sft.config.score import ScoreConfig
    from rationale_sft.config.train import TrainConfig

    return (cfglib.build(TrainConfig, {**train, "seed": seed}),
            cfglib.build(ScoreConfig, {**score, "seed": seed, "split": "held_out", "save_states": probe}))


def fewshot_settings(settings: dict, score: dict):
    """The (FewshotConfig, ScoreConfig) of one few-shot run from its job's arguments (scored on ``held_out``
    with the few-shot seed)."""
    from rationale_sft.config.fewshot import FewshotConfig
    from rationale_sft.config.score import ScoreConfig

    cfg = cfglib.build(FewshotConfig, settings)
    return cfg, cfglib.build(ScoreConfig, {**score, "split": "held_out", "seed": cfg.seed})


def probe_layer_states(run_dir: Path, examples: pl.DataFrame, score_cfg, seed: int) -> str | None:
    """Layer probes of every checkpoint of the run: the direct slot at each, the after slot at the last one
    (on the rationales ``score`` wrote, so nothing is generated again); folds seeded by the run's seed.

    A test set too small to probe (fewer cases than folds) is not worth the trained run: the reason is
    returned (run.json ``layer_probes_error``) and warned about, and the run has no probe_layers.parquet.
    """
    import dataclasses
    import sys

    from rationale_sft.probes.layers import probe_checkpoints
    from rationale_sft.errors import InputError

    cfg = dataclasses.replace(score_cfg, seed=seed, save_states=False)
    try:
        probe_checkpoints(run_dir, examples, cfg=cfg, after="final",
                          scores=pl.read_parquet(run_dir / "scores.parquet"))
    except InputError as exc:
        print(f"warning: {run_dir.name}: no layer probes: {exc}", file=sys.stderr)
        return str(exc)
    return None


def mechanism_metrics(run_dir: Path) -> dict:
    """The run's mechanism summary, each part only when measured: mean gradient cosine, norm ratio and label
    gradient share over the steps train.conflict_every measured; AUROC at each K of the sampled
    rationales (``auroc_k_<K>``); per slot, the best layer probe's AUROC and layer at the last checkpoint."""
    from rationale_sft.probes import layers
    from rationale_sft.train.loop import CONFLICT

    out: dict = {}
    if (run_dir / CONFLICT).is_file():
        out |= conflict_summary(pl.read_parquet(run_dir / "train_log.parquet"), pl.read_parquet(run_dir / CONFLICT))
    score = rundir.read_json(run_dir / "score.json") if (run_dir / "score.json").is_file() else {}
    out |= {f"auroc_k_{k}": v for k, v in (score.get("auroc_k") or {}).items()}
    if (run_dir / layers.FILE).is_file():
        out |= layers.best_layers(pl.read_parquet(run_dir / layers.FILE))
    return out


def conflict_summary(log: pl.DataFrame, conflict: pl.DataFrame) -> dict:
    """Means over measured steps (group ``all``) of the gradient cosine, the norm ratio |g_label| / |g_rationale|
    and the label's gradient share: its loss weight times its gradient norm over both terms' sum, at the
    step's label weight share s (``s |g_l| / (s |g_l| + (1 - s) |g_r|)``). None when no step was measured.

    >>> log = pl.DataFrame({"step": [1, 2], "label_token_share": [0.1, 0.5]})
    >>> c = pl.DataFrame({"step": [2, 2], "group": ["all", "layer_00"], "cos": [-0.2, 0.1],
    ...                   "norm_ratio": [3.0, 1.0], "label_norm": [3.0, 1.0], "rationale_norm": [1.0, 1.0]})
    >>> conflict_summary(log, c)
    {'grad_cos_mean': -0.2, 'grad_norm_ratio_mean': 3.0, 'label_grad_share_mean': 0.75, 'grad_steps': 1}
    """
    rows = conflict.filter(pl.col("group") == "all").join(log.select("step", "label_token_share"), on="step")
    if not rows.height:
        return {"grad_cos_mean": None, "grad_norm_ratio_mean": None, "label_grad_share_mean": None, "grad_steps": 0}
    s = rows["label_token_share"]
    share = s * rows["label_norm"] / (s * rows["label_norm"] + (1 - s) * rows["rationale_norm"])
    return {"grad_cos_mean": rows["cos"].mean(), "grad_norm_ratio_mean": rows["norm_ratio"].mean(),
            "label_grad_share_mean": share.mean(), "grad_steps": rows.height}


def check_headroom(run_dir: Path, train_cfg, score_cfg) -> None:
    """Warn when a generating arm cannot write its longest training target within score.max_new_tokens.

    A shorter budget cuts rationales before the answer marker, so the answer slot is read after a marker
    appended to an unfinished text (the marker gate of the report then fails for this run).
    """
    import sys

    from rationale_sft.train.arms import SCORING

    if SCORING[train_cfg.arm] != "generate" or score_cfg.mode == "direct":
        return
    longest = int(pl.read_parquet(run_dir / "train_examples.parquet")["n_target_tokens"].max())
    if score_cfg.max_new_tokens < longest:
        print(f"warning: {run_dir.name}: score.max_new_tokens={score_cfg.max_new_tokens} is shorter than the "
              f"longest training target of arm {train_cfg.arm!r} ({longest} tokens incl. marker and label); "
              f"generations will stop before the answer marker: set score.max_new_tokens >= {longest} (with "
              "headroom)", file=sys.stderr)


def run_fewshot(out_dir: Path, root: Path, labels_dir: str, render_dir: str, rationales_dir: str | None,
                base_job: str, settings: dict, score: dict, meta: dict) -> dict:
    """Prompt an untrained base with k demonstrations from the training subjects; score the test set."""
    from rationale_sft.fewshot.stage import fewshot as fewshot_stage

    cfg, score_cfg = fewshot_settings(settings, score)
    rationales = None if rationales_dir is None else grid_path(root, rationales_dir) / "rationales.parquet"
    base = base_dir(str(root), base_job)

    def work(d: Path) -> dict:
        with memory.peak() as peak:
            examples = run_examples(root, labels_dir, render_dir, None, None)
            fewshot_stage(cfg, d, examples, rationales, base, score_cfg)
        row = {**meta, "scale": None, "seed": cfg.seed, "k_shot": cfg.k, **result_metrics(d), **peak, "probe": {}}
        rundir.write_json(d / RUN_JSON, row)
        return {"run": row}

    rundir.run_stage(out_dir, work, cfg={"fewshot": cfg, "score": score_cfg, "meta": meta,
                                         "base": rundir.portable(base, out_dir)},
                     seeds=_seeds(cfg.seed))
    return flat_row(rundir.read_json(out_dir / RUN_JSON))


def result_metrics(run_dir: Path) -> dict:
    """Headline metrics recomputed from the run's scores.parquet."""
    from rationale_sft.stats.metrics import auroc, average_precision, brier

    table = pl.read_parquet(run_dir / "scores.parquet")
    y, p = table["label"].to_numpy().astype(int), table["p_yes"].to_numpy()
    direct = table["p_direct"].to_numpy()
    concl = table["rationale_conclusion"].drop_nulls()  # the verdict the generated rationale states
    gen = table["n_generated_tokens"].to_numpy()
    return {"n_test": table.height, "n_pos": int(y.sum()), "auroc": auroc(y, p), "auprc": average_precision(y, p),
            "brier": brier(y, p), "auroc_direct": None if np.isnan(direct).all() else auroc(y, direct),
            "conclusion_yes_rate": float((concl == "Yes").mean()) if gen.sum() and len(concl) else None,
            "conclusion_rate": float(len(concl) / table.height) if gen.sum() else None,
            "marker_found_rate": float(table["marker_found"].mean()) if gen.sum() else None,
            "mean_label_mass": float(table["label_mass"].mean()),
            "truncated_rate": float((table["n_history_dropped"] > 0).mean())}


def generation_metrics(run_dir: Path, root: Path, labels_dir: str, meds: str, render: dict) -> dict:
    """Check the run's generated rationales (``generation_quality.parquet``); return the run-level rates."""
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.score import quality

    labels = pl.read_parquet(grid_path(root, labels_dir) / USED)
    rows = quality.generation_quality(pl.read_parquet(run_dir / "scores.parquet"), grid_path(root, meds), labels,
                                      cfglib.build(RenderConfig, render))
    rundir.write_parquet(rows, run_dir / quality.FILE)
    return quality.summarise(rows)


def probe_row(run_dir: Path, seed: int) -> dict:
    """Linear-probe AUROC on the saved answer-slot states (empty when there are none or too few cases)."""
    from rationale_sft.probes.answer_state import probe_auroc
    from rationale_sft.errors import InputError

    states_path = run_dir / "answer_states.npy"
    if not states_path.is_file():
        return {}
    ids = np.load(run_dir / "answer_states_subjects.npy")
    labels = pl.read_parquet(run_dir / "scores.parquet").select("subject_id", "label")
    y = pl.DataFrame({"subject_id": ids}).join(labels, on="subject_id", how="left")["label"].to_numpy()
    try:
        return probe_auroc(np.load(states_path), y.astype(int), seed)
    except InputError as exc:
        return {"error": str(exc)}


def flat_row(row: dict) -> dict:
    """A result row with the probe's AUROC lifted to ``auroc_probe`` (the only nested part)."""
    probe = row.get("probe") or {}
    return {**{k: v for k, v in row.items() if k != "probe"}, "auroc_probe": probe.get("auroc")}


def _seeds(seed: int) -> dict:
    from rationale_sft.train.loop import seeds_of

    return {"master": seed, **seeds_of(seed)}
