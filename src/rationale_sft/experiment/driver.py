"""Run a whole experiment: plan the grid, execute it (resumably), gather results, write the report."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.experiment.checks import check_inputs
from rationale_sft.experiment.plan import Plan, plan
from rationale_sft.grid.job import collect

RESULT_KEYS = ("run_id", "arm", "family", "size", "model", "base", "scale", "seed", "status", "n_test", "n_pos",
               "auroc", "auprc", "brier", "auroc_direct", "conclusion_yes_rate", "conclusion_rate", "marker_found_rate",
               "mean_label_mass", "truncated_rate", "gen_grounding_rate", "gen_age_correct_rate",
               "gen_sex_correct_rate", "gen_loop_rate", "gen_direction_accuracy", "auroc_probe", "k_shot", "n_train",
               "train_steps", "train_answer_steps", "train_tokens", "train_seconds", "train_tokens_per_s",
               "score_seconds", "peak_rss_mb", "peak_gpu_mb", "run_path", "error")


def default_out(cfg: ExperimentConfig) -> Path:
    """``runs/<name>-<config hash>``: the same config always lands in the same directory."""
    return Path("runs") / f"{cfg.name}-{cfglib.config_hash(cfg)}"


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, config_dir: str | Path = ".",
                   report: bool = True, progress: bool = True, verify: bool = False) -> dict:
    """Execute every missing job of the grid under ``out_dir``; write results, index, the report, then DONE.

    Everything happens under the root's lock, so a second driver is refused before it changes a file.
    ``verify`` checks the content hash of every finished job's files before reusing it (sizes always).
    """
    from rationale_sft.grid.execute import execute, root_lock

    started, root = time.time(), Path(out_dir).resolve()
    check_inputs(cfg, Path(config_dir))
    the_plan = plan(cfg, config_dir)
    root.mkdir(parents=True, exist_ok=True)
    with root_lock(root):
        (root / rundir.DONE).unlink(missing_ok=True)
        rundir.write_text(root / rundir.CONFIG, cfglib.to_yaml(cfg))
        outcome = execute(the_plan.jobs, root, cfg.executor, progress=progress, verify=verify, locked=True)
        prune_failures(root, {j.id for j in the_plan.jobs})
        table = results_table(root, the_plan, failures(root))
        rundir.write_parquet(table, root / "results.parquet")
        rundir.write_json(root / "index.json", the_plan.index)
        rundir.write_manifest(root, cfg=cfg, seeds={"master": cfg.seed, "runs": list(cfg.grid.seeds)},
                              started=started, extra={"jobs": outcome.counts(), "n_runs": len(the_plan.runs)})
        summary = {"root": str(root), "jobs": outcome.counts(), "runs_ok": int((table["status"] == "ok").sum()),
                   "runs_failed": int((table["status"] != "ok").sum()), "seconds": round(time.time() - started, 1)}
        if outcome.rebuilt:
            summary["rebuilt"] = outcome.rebuilt
        if report and summary["runs_ok"]:
            from rationale_sft.report import write_report

            summary["report"] = str(write_report(cfg.report, root, require_done=False))
        rundir.mark_done(root)  # last: a grid whose report failed is not done
    return summary


def prune_failures(root: Path, planned: set[str]) -> None:
    """Drop failures.json entries of jobs this grid no longer plans (an earlier config's): the root holds
    one experiment, and its report must list only failures that still stand."""
    path = root / "failures.json"
    if not path.is_file():
        return
    kept = [e for e in rundir.read_json(path) if e.get("job_id") in planned]
    if kept:
        rundir.write_json(path, kept)
    else:
        path.unlink()


def failures(root: Path) -> dict[str, str]:
    """``{job id: last error}`` from the engine's failures.json (empty when nothing failed)."""
    path = root / "failures.json"
    if not path.is_file():
        return {}
    data = rundir.read_json(path)
    items = data if isinstance(data, list) else data.get("failures", [])
    return {item.get("job_id") or item.get("id"): str(item.get("error") or item.get("traceback") or "")[-500:]
            for item in items}


def results_table(root: Path, the_plan: Plan, failed: dict[str, str]) -> pl.DataFrame:
    """One row per planned run: its metrics when complete, its error when it failed or was blocked."""
    done = {row["job_id"]: row for row in collect(root, the_plan.runs)}
    rows = []
    for job in the_plan.runs:
        meta = job.kwargs["meta"]
        base = {"run_id": job.id, "run_path": job.out_dir, "scale": job.kwargs.get("scale"),
                "seed": job.kwargs.get("seed", job.kwargs.get("settings", {}).get("seed")), **meta}
        if job.id in done:
            rows.append({**base, **_pick(done[job.id]), "status": "ok"})
        else:
            rows.append({**base, "status": "failed", "error": failed.get(job.id, "not run: a dependency failed")})
    keys = RESULT_KEYS + (("hidden_share",) if any("hidden_share" in r for r in rows) else ()) + mechanism_keys(rows)
    return pl.DataFrame([{k: r.get(k) for k in keys} for r in rows], schema=_schema(keys))


MECHANISM_KEYS = ("grad_cos_mean", "grad_norm_ratio_mean", "label_grad_share_mean", "grad_steps", "probe_best_direct",
                  "probe_best_layer_direct", "probe_best_after", "probe_best_layer_after")
"Mechanism summary columns (experiment.run.mechanism_metrics), present when any run measured them."


def mechanism_keys(rows: list[dict]) -> tuple[str, ...]:
    """The mechanism columns some row holds, the AUROC at each K (``auroc_k_<K>``) last, by K.

    >>> mechanism_keys([{"auroc_k_4": 0.6, "auroc_k_1": 0.5}, {"grad_cos_mean": -0.1}, {"auroc": 0.7}])
    ('grad_cos_mean', 'auroc_k_1', 'auroc_k_4')
    """
    present = {k for r in rows for k in r}
    ks = sorted((k for k in present if k.startswith("auroc_k_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    return tuple(k for k in MECHANISM_KEYS if k in present) + tuple(ks)


def _pick(row: dict) -> dict:
    keys = RESULT_KEYS + mechanism_keys([row])
    return {k: row[k] for k in keys if k in row and k not in ("run_id", "run_path", "status")}


def _schema(keys: tuple[str, ...]) -> dict:
    ints = {"scale", "seed", "n_test", "n_pos", "k_shot", "n_train", "train_steps", "train_answer_steps",
            "train_tokens", "grad_steps", "probe_best_layer_direct", "probe_best_layer_after"}
    strs = {"run_id", "arm", "family", "size", "model", "base", "status", "run_path", "error"}
    return {k: pl.Int64 if k in ints else pl.String if k in strs else pl.Float64 for k in keys}
