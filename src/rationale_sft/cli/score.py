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
        "(meds-evaluation schema), RUN/score.json and, with score.save_states=true, RUN/answer_states.npy; with "
        "score.n_samples=K on a generating arm also RUN/samples.parquet (K sampled rationales per subject). "
        "Rationale arms generate up to the answer marker first. With --probe-layers it scores nothing and "
        "instead probes every layer of every checkpoint RUN holds (RUN/probe_layers.parquet). See docs/scoring.md.",
        epilog=keys_epilog("score", ScoreConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    job_arguments(p, rationales=False, model_help="Model to score (default RUN/checkpoint, written by train).")
    p.add_argument("--probe-layers", action="store_true",
                   help="Probe the hidden state of every layer at the answer slots (direct; after the rationale for "
                        "generating arms) of each checkpoint in RUN (checkpoint/, checkpoints/*/) instead of scoring.")
    p.add_argument("--probe-folds", type=int, default=5, help="Cross-validation folds of the layer probes.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the job, score (or probe the layers), print the headline numbers."""
    from rationale_sft.score import score

    if args.probe_layers:
        return probe(args)
    if not args.model and not any(o.startswith("model=") for o in args.overrides):
        args.model = str(Path(args.out) / "checkpoint")
    job = load_job(args)
    out = score(job.score, args.out, job.examples, job.model)
    auroc = "n/a" if out["auroc"] is None else f"{out['auroc']:.3f}"
    samples = "".join(f", AUROC over {k} samples {v:.3f}" for k, v in list(out.get("auroc_k", {}).items())[-1:]
                      if v is not None)
    print(f"{args.out}: {out['n']} subjects scored ({out['mode']}), AUROC {auroc}{samples}, "
          f"{out['prompt_tokens_per_s']:.0f} prompt tokens/s")
    return 0


def probe(args: argparse.Namespace) -> int:
    """Probe every layer of RUN's checkpoints; print the best layer per slot at the last step."""
    import polars as pl

    from rationale_sft.probes.layers import FILE, probe_checkpoints

    job = load_job(args)
    table = probe_checkpoints(args.out, job.examples, cfg=job.score, folds=args.probe_folds)
    last = table.filter(pl.col("step") == table["step"].max())
    for slot in last["slot"].unique().sort().to_list():
        rows = last.filter(pl.col("slot") == slot)
        best = rows.filter(pl.col("measure") == "probe").sort("auroc", descending=True).row(0, named=True)
        risk = rows.filter(pl.col("measure") == "p_yes")["auroc"][0]
        print(f"step {best['step']}, {slot} slot: best probe layer {best['layer']} (AUROC {best['auroc']:.3f}), "
              f"P(Yes) AUROC {risk:.3f}")
    print(f"{Path(args.out) / FILE}: {table['step'].n_unique()} checkpoint(s), {table.height} rows")
    return 0
