"""The cost estimate of a finished grid against the seconds its jobs recorded, per stage.

Measured: ``train.json`` and ``score.json`` seconds (with ``sample_seconds``, of the sampled rationales) of every
SFT run, ``fewshot.json`` seconds of every few-shot run, and the last ``elapsed_s`` of each pretraining stage's
``pretrain_log.parquet`` (the base's model directory and its ``base-<stage>-<key>`` siblings). Estimated: ``run --plan --cost`` on the same run directory.

    PYTHONPATH=src .venv/bin/python benchmarks/check_cost.py configs/quick.yaml runs/demo [--device cpu]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.experiment import cost, devices
from rationale_sft.experiment.plan import plan


def measured(p, run_dir: Path) -> dict[str, float]:
    """Recorded seconds per stage of the plan's finished jobs (pretrain: every stage of each base once)."""
    out = {"pretrain": 0.0, "train": 0.0, "score": 0.0, "fewshot": 0.0}
    models: set[Path] = set()
    for job in p.jobs:
        path = run_dir / job.out_dir
        if job.function == "base" and (path / "base.json").is_file():
            model = (path / json.loads((path / "base.json").read_text())["path"]).resolve()
            key = model.name.removeprefix("base-")
            models |= {d for d in model.parent.glob(f"base-*{key}") if (d / "pretrain_log.parquet").is_file()}
        for name, stage in (("train.json", "train"), ("score.json", "score"), ("fewshot.json", "fewshot")):
            if (path / name).is_file():
                record = json.loads((path / name).read_text())
                out[stage] += record["seconds"] + record.get("sample_seconds", 0.0)
    for model in models:
        out["pretrain"] += pl.read_parquet(model / "pretrain_log.parquet")["elapsed_s"].max()
    return out


def main() -> None:
    """Print estimated vs measured hours per stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("run_dir")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = cfglib.load(ExperimentConfig, args.config, [])
    p = plan(cfg, Path(args.config).resolve().parent)
    est = cost.estimate(cfg, p, args.run_dir, devices.get_device(args.device)).by_stage()
    got = measured(p, Path(args.run_dir))
    print(f"{'stage':<9} {'estimate h':>10} {'measured h':>10} {'ratio':>6}  counts")
    for stage, s in est.items():
        m = got.get(stage, 0.0)
        ratio = f"{s['seconds'] / m:.2f}" if m else "-"
        print(f"{stage:<9} {s['seconds'] / 3600:>10.3f} {m / 3600:>10.3f} {ratio:>6}  {s['mark']}")
    total_e, total_m = sum(s["seconds"] for s in est.values()), sum(got.values())
    print(f"{'total':<9} {total_e / 3600:>10.3f} {total_m / 3600:>10.3f} {total_e / total_m:>6.2f}")


if __name__ == "__main__":
    main()
