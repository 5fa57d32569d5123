"""``rationale-sft fewshot``: score an untrained model with k demonstrations from the training split."""

from __future__ import annotations

import argparse

from rationale_sft.cli.train import job_arguments, keys_epilog, load_job
from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.score import ScoreConfig


def add_parser(subparsers, help_text: str) -> None:
    """Register ``fewshot``."""
    p = subparsers.add_parser(
        "fewshot", help=help_text, description=help_text + " Writes RUN/scores.parquet, RUN/predictions.parquet "
        "(as `score`), RUN/fewshot_demos.parquet (demonstration subject ids, how many were kept, history lines "
        "dropped) and RUN/fewshot.json. Demonstrations never come from scored subjects.",
        epilog=keys_epilog("fewshot", FewshotConfig) + "\n\n" + keys_epilog("score", ScoreConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    job_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the job, run the few-shot arm, print the headline numbers."""
    from rationale_sft.fewshot import fewshot

    job = load_job(args)
    out = fewshot(job.fewshot, args.out, job.examples, job.rationales or None, job.model, job.score)
    auroc = "n/a" if out["auroc"] is None else f"{out['auroc']:.3f}"
    print(f"{args.out}: {out['n']} subjects, k={job.fewshot.k} ({job.fewshot.selection}, "
          f"{out['mean_demos_used']:.1f} used on average), AUROC {auroc}")
    return 0
