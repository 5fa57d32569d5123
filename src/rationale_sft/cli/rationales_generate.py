"""``rationale-sft rationales generate``: teacher rationales for rendered examples (resumable, cached)."""

from __future__ import annotations

import argparse

from rationale_sft.config import describe, load
from rationale_sft.config.teacher import TeacherConfig

HELP = "Generate teacher rationales for rendered examples (knowledge, OpenAI-compatible server or local model)."


def add_parser(subparsers) -> None:
    """Register ``rationales generate``."""
    keys = "\n".join(f"  {k} (default {d}): {h}" for k, d, h in describe(TeacherConfig))
    p = subparsers.add_parser("generate", help=HELP, description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="config keys (YAML file or key=value):\n" + keys)
    p.add_argument("--examples", required=True, help="examples.parquet written by `rationale-sft render`")
    p.add_argument("--out", required=True, help="output directory (rationales.parquet, failures.json, DONE)")
    p.add_argument("--meds", help="MEDS dataset directory (needed by the knowledge backend for subject facts)")
    p.add_argument("--config", help="YAML file with teacher config keys")
    p.add_argument("--styles", help="comma-separated styles (shortcut for styles=[...]): freeform,stepwise")
    p.add_argument("--mode", choices=("conditioned", "blind", "flipped"), help="shortcut for mode=...")
    p.add_argument("--backend", choices=("knowledge", "openai", "hf"), help="shortcut for backend=...")
    p.add_argument("--force", action="store_true", help="run again even when OUT/DONE exists (the cache is kept)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, after all options, e.g. concurrency=8")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Build the config, generate, print where the rationales are."""
    from rationale_sft.rationales.generate import generate

    shortcuts = [f"styles=[{args.styles}]"] if args.styles else []
    shortcuts += [f"mode={args.mode}"] if args.mode else []
    shortcuts += [f"backend={args.backend}"] if args.backend else []
    cfg = load(TeacherConfig, args.config, shortcuts + list(args.overrides))
    path = generate(cfg, args.examples, args.out, meds=args.meds, force=args.force)
    print(path)
    return 0
