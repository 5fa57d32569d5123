"""Per-stage profile of the `make demo` grid: where its wall time goes.

Usage: python benchmarks/bench_demo_profile.py [RUN_DIR] [CONFIG]. With a finished RUN_DIR (default
runs/demo) the profile is read from its files; otherwise CONFIG (default configs/quick.yaml) is run into
RUN_DIR first and timed. Prints seconds per stage: every shared job (cohort, corpus, labels, render,
rationales, quality, baselines, base = tokenizer + pretraining), then training and scoring per arm
(summed over runs, with the number of runs), the few-shot runs, and the report (re-written and timed here).
Stage times come from each job's manifest (started/finished) and each run's run.json (train_seconds,
score_seconds); they are wall times on a shared machine, so compare shares within one run.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections import defaultdict
from pathlib import Path


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _job_seconds(job_dir: Path) -> float | None:
    path = job_dir / "manifest.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    if "started" not in m or "finished" not in m:
        return None
    return (_stamp(m["finished"]) - _stamp(m["started"])).total_seconds()


def profile(root: Path) -> list[tuple[str, float, int]]:
    """(stage, seconds, count) rows read from a finished grid directory."""
    rows: dict[str, list[float]] = defaultdict(list)
    for job_dir in sorted((root / "shared").iterdir()):
        kind = job_dir.name.split("-")[0]
        seconds = _job_seconds(job_dir)
        if kind != "models" and seconds is not None:
            rows[kind].append(seconds)
    models = root / "shared" / "models"
    for base in sorted(models.glob("base-*")) if models.is_dir() else []:
        stats = json.loads((base / "manifest.json").read_text()).get("pretrain", {})
        rows["pretraining (inside base)"].append(float(stats.get("seconds", 0.0)))
    for run_json in sorted((root / "runs").glob("*/run.json")):
        run = json.loads(run_json.read_text())
        arm = run.get("arm", "?")
        if arm.startswith("fewshot"):
            rows[f"few-shot {arm[len('fewshot_'):]} (total)"].append(_job_seconds(run_json.parent) or 0.0)
            continue
        rows[f"train {arm}"].append(float(run.get("train_seconds") or 0.0))
        rows[f"score {arm}"].append(float(run.get("score_seconds") or 0.0))
    return [(stage, sum(v), len(v)) for stage, v in rows.items()]


def main(root: Path, config: Path) -> None:
    wall = None
    if not (root / "DONE").is_file():
        from rationale_sft import config as cfglib
        from rationale_sft.config.experiment import ExperimentConfig
        from rationale_sft.experiment.driver import run_experiment

        cfg = cfglib.load(ExperimentConfig, config)
        start = time.perf_counter()
        run_experiment(cfg, root, config_dir=config.parent, report=True)
        wall = time.perf_counter() - start
    from rationale_sft import config as cfglib
    from rationale_sft.config.report import ReportConfig
    from rationale_sft.report import write_report

    start = time.perf_counter()
    write_report(cfglib.build(ReportConfig, {}), root)
    report_s = time.perf_counter() - start
    rows = profile(root) + [("report (re-written)", report_s, 1)]
    total = sum(s for _, s, _ in rows)
    print(f"{'stage':<34} {'seconds':>9} {'runs':>5} {'share':>6}")
    for stage, seconds, count in rows:
        print(f"{stage:<34} {seconds:9.1f} {count:5d} {seconds / total:6.1%}")
    print(f"{'sum of stages':<34} {total:9.1f}")
    if wall is not None:
        print(f"{'wall time of the grid':<34} {wall:9.1f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else Path("runs/demo"), Path(args[1]) if len(args) > 1 else Path("configs/quick.yaml"))
