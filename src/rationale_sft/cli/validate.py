"""``rationale-sft validate``: check a job config (every example) or a grid config (every job of its plan) before
any compute; loads no weights."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from rationale_sft import config
from rationale_sft.cli.train import keys_epilog
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.config.train import JobConfig, TrainConfig


def add_parser(subparsers, help_text: str) -> None:
    """Register ``validate``."""
    p = subparsers.add_parser(
        "validate", help=help_text, description=help_text + " A job YAML: the architecture is known, the "
        "checkpoint has weights, the label words are distinct (single) tokens, every training example's target "
        "renders and fits train.max_len with a correct loss mask, rationales exist for the arm, LoRA target modules "
        "exist. A grid YAML (configs/quick.yaml and friends): its inputs, and every job of its plan (each job's "
        "settings; each run's against its base model's architecture: context, room to generate, LoRA targets, "
        "and a checkpoint's label tokens). Prints every problem; exit code 1 when there are any.",
        epilog="job keys: examples, rationales, model, train.*, score.*, fewshot.*\n\n" + keys_epilog("train", TrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="Job YAML (keys examples, rationales, model, train, score, fewshot) or grid YAML "
                                  "(keys such as data, grid, pretrain, teacher: see configs/).")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Overrides, e.g. train.arm=stepwise.")
    p.add_argument("--json", action="store_true", help="Print the full report as JSON.")
    p.set_defaults(func=run)


def is_grid(data: dict) -> bool:
    """True when a YAML mapping is a grid config: it has a key only a grid config has.

    >>> is_grid({"grid": {"scales": [300]}}), is_grid({"model": "m", "train": {"arm": "freeform"}})
    (True, False)
    """
    only_grid = {f.name for f in fields(ExperimentConfig)} - {f.name for f in fields(JobConfig)}
    return bool(only_grid & set(data))


def run(args: argparse.Namespace) -> int:
    """Validate and print the report; 1 when a problem was found."""
    if is_grid(config.read_yaml(args.config)):
        return _grid(args)
    from rationale_sft.validate import validate

    job = config.load(JobConfig, args.config, list(args.overrides))
    report = validate(job)
    _print(report, args.json)
    if not args.json and "n_sequences" in report:
        print(f"arm {report['arm']}: {report['n_sequences']} sequences from {report['n_examples']} examples, "
              f"target tokens {report['target_tokens']}, {report['n_truncated']} truncated to fit")
    return _done(report)


def _grid(args: argparse.Namespace) -> int:
    from rationale_sft.experiment.checks import validate_grid

    cfg = config.load(ExperimentConfig, args.config, list(args.overrides))
    report = validate_grid(cfg, Path(args.config).resolve().parent)
    _print(report, args.json)
    if not args.json:
        kinds = ", ".join(f"{n} {kind}" for kind, n in report["by_kind"].items())
        print(f"grid {report['name']}: {report['jobs']} jobs ({kinds}), {report['runs']} runs")
    return _done(report)


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    for w in report["warnings"]:
        print(f"warning: {w}")
    for p in report["problems"]:
        print(f"problem: {p}")


def _done(report: dict) -> int:
    print(f"{len(report['problems'])} problem(s)" if report["problems"] else "ok")
    return 1 if report["problems"] else 0
