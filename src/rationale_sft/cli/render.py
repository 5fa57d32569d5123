"""``rationale-sft render``: subjects' histories before the prediction time as prompts (examples.parquet)."""

from __future__ import annotations

import argparse

from rationale_sft import config
from rationale_sft.config.render import RenderConfig


def add_parser(subparsers, help_text: str) -> None:
    """Register ``render``."""
    keys = "\n".join(f"  {k} (default {d}): {h}" for k, d, h in config.describe(RenderConfig))
    p = subparsers.add_parser(
        "render", help=help_text, description=help_text + " Writes OUT/examples.parquet (one prompt per "
        "labelled subject, ending with 'Answer:'), config.yaml, manifest.json and DONE; skipped when DONE "
        "exists. See docs/rendering.md.",
        epilog="render keys (YAML via --config, or KEY=VALUE overrides):\n" + keys,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meds", required=True, help="MEDS dataset directory (holds data/ and metadata/).")
    p.add_argument("--labels", required=True, help="Labels parquet written by `rationale-sft cohort extract`.")
    p.add_argument("--out", required=True, help="Output directory for examples.parquet.")
    p.add_argument("--template", choices=("chronological", "by_system", "recap", "recap_factors"), default=None,
                   help="Prompt layout (same as template=...; default chronological).")
    p.add_argument("--config", default=None, help="Render config YAML (keys below).")
    p.add_argument("--force", action="store_true", help="Render again even when OUT/DONE exists.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Render overrides, e.g. max_tokens=512.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config, render, print a one-line summary."""
    import polars as pl

    from rationale_sft.render.stage import render

    overrides = list(args.overrides) + ([f"template={args.template}"] if args.template else [])
    cfg = config.load(RenderConfig, args.config, overrides)
    path = render(cfg, args.meds, args.labels, args.out, force=args.force)
    ex = pl.read_parquet(path, columns=["truncated", "template_hash"])
    print(f"{path}: {ex.height} examples (template {cfg.template}, hash {ex['template_hash'][0] if ex.height else '-'}, "
          f"{int(ex['truncated'].sum())} truncated)")
    return 0
