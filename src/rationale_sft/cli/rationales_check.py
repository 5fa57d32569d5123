"""``rationale-sft rationales check``: grounding, leakage, accuracy, label, length and diversity of rationales."""

from __future__ import annotations

import argparse

HELP = "Check rationales against the record and the knowledge base; write a quality report."


def add_parser(subparsers) -> None:
    """Register ``rationales check``."""
    p = subparsers.add_parser(
        "check", help=HELP, description=HELP + " Writes OUT/quality.json, OUT/quality.md (one table row per "
        "backend/model/style/mode), OUT/rows.parquet (one row per rationale, with its problems), config.yaml, "
        "manifest.json and DONE. See docs/rationale_specs.md.")
    p.add_argument("--rationales", required=True, help="rationales.parquet (contract section 5).")
    p.add_argument("--meds", required=True, help="MEDS dataset directory the rationales were written about.")
    p.add_argument("--labels", required=True, help="Labels parquet (contract section 2).")
    p.add_argument("--out", required=True, help="Output directory for the quality report.")
    p.add_argument("--tokenizer", default=None,
                   help="Hugging Face tokenizer directory: also report lengths in its tokens (default: words only).")
    p.add_argument("--render-config", default=None,
                   help="Render config YAML saying how codes are read (prefixes, description suffixes); "
                        "default: the render defaults (ICD10// diagnoses, UKB// measurements).")
    p.add_argument("--force", action="store_true", help="Check again even when OUT/DONE exists.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="Render config overrides, e.g. diagnosis_prefixes=[DX//] (see `rationale-sft render --help`).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the rationales, check them, print the markdown table."""
    from pathlib import Path

    from rationale_sft import config
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.errors import InputError
    from rationale_sft.rationales.check import check_rationales
    from rationale_sft.tables import read_parquet

    if not Path(args.rationales).is_file():
        raise InputError(f"{args.rationales}: rationales file not found; write it with `rationale-sft rationales "
                         "generate`")
    render_cfg = config.load(RenderConfig, args.render_config, args.overrides)
    check_rationales(read_parquet(args.rationales), args.meds, args.labels, args.out, args.tokenizer, args.force,
                     render_cfg)
    print((Path(args.out) / "quality.md").read_text())
    return 0
