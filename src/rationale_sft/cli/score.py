"""``rationale-sft score``: P(Yes)/(P(Yes)+P(No)) at the answer slot for held-out subjects."""

from __future__ import annotations

import argparse
from pathlib import Path

from rationale_sft.cli.train import job_arguments, keys_epilog, load_job
from rationale_sft.config.score import ScoreConfig


def add_parser(subparsers, help_text: str) -> None:
    """Register ``score``."""
    p = subparsers.add_parser(
        "score", help=help_text, description=help_text + " Writes RUN/scores.parquet (one row per subject: p_yes, "
        "label_mass, p_direct, conclusion, marker_found, generated text, token counts), RUN/predictions.parquet "
        "(meds-evaluation schema), RUN/score.json and, with score.save_states=true, RUN/answer_states.npy. "
        "Rationale arms generate up to the answer marker first. See docs/scoring.md.",
        epilog=keys_epilog("score", ScoreConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    job_arguments(p, rationales=False, model_help="Model to score (default RUN/checkpoint, written by train).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the job, score, print the headline numbers."""
    from rationale_sft.score import score

    if not args.model and not any(o.startswith("model=") for o in args.overrides):
        args.model = str(Path(args.out) / "checkpoint")
    job = load_job(args)
    out = score(job.score, args.out, job.examples, job.model)
    auroc = "n/a" if out["auroc"] is None else f"{out['auroc']:.3f}"
    print(f"{args.out}: {out['n']} subjects scored ({out['mode']}), AUROC {auroc}, "
          f"{out['prompt_tokens_per_s']:.0f} prompt tokens/s")
    return 0
