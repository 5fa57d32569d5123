"""``rationale-sft validate``: resolve a job config and check every example before any compute (no weights)."""

from __future__ import annotations

import argparse
import json

from rationale_sft import config
from rationale_sft.cli.train import keys_epilog
from rationale_sft.config.train import JobConfig, TrainConfig


def add_parser(subparsers, help_text: str) -> None:
    """Register ``validate``."""
    p = subparsers.add_parser(
        "validate", help=help_text, description=help_text + " Checks: the architecture is known, the checkpoint "
        "has weights, the label words are distinct (single) tokens, every training example's target renders "
        "and fits train.max_len with a correct loss mask, rationales exist for the arm, LoRA target modules "
        "exist. Prints every problem; exit code 1 when there are any.",
        epilog="job keys: examples, rationales, model, train.*, score.*, fewshot.*\n\n" + keys_epilog("train", TrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="Job YAML (keys examples, rationales, model, train, score, fewshot).")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Overrides, e.g. train.arm=stepwise.")
    p.add_argument("--json", action="store_true", help="Print the full report as JSON.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate and print the report; 1 when a problem was found."""
    from rationale_sft.validate import validate

    job = config.load(JobConfig, args.config, list(args.overrides))
    report = validate(job)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for w in report["warnings"]:
            print(f"warning: {w}")
        for p in report["problems"]:
            print(f"problem: {p}")
        if "n_sequences" in report:
            print(f"arm {report['arm']}: {report['n_sequences']} sequences from {report['n_examples']} examples, "
                  f"target tokens {report['target_tokens']}, {report['n_truncated']} truncated to fit")
    print(f"{len(report['problems'])} problem(s)" if report["problems"] else "ok")
    return 1 if report["problems"] else 0
