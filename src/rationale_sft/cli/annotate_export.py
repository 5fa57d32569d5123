"""``rationale-sft annotate export``: a blinded, shuffled annotation packet (HTML, CSV, Label Studio)."""

from __future__ import annotations

import argparse

HELP = "Export a blinded packet of N rationales with their histories for expert rating."


def add_parser(subparsers) -> None:
    """Register ``annotate export``."""
    p = subparsers.add_parser(
        "export", help=HELP, description=HELP + " Send packet.html (or packet.csv, or the Label Studio files) "
        "to raters; keep private/id_map.json to unblind the ratings on import.")
    p.add_argument("--rationales", required=True, help="rationales.parquet written by `rationales generate`")
    p.add_argument("--examples", required=True, help="examples.parquet the rationales were generated from")
    p.add_argument("--n", type=int, required=True, help="number of rationales in the packet")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and its order (default 0)")
    p.add_argument("--no-stratify", action="store_true",
                   help="plain random sample (default: balanced over style, mode, backend and model)")
    p.add_argument("--title", default="Rationale review", help="heading of the HTML packet")
    p.add_argument("--out", required=True, help="packet directory to write")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Build the config, export, print the packet page."""
    from rationale_sft.annotate.packet import export_packet
    from rationale_sft.config import build
    from rationale_sft.config.annotate import ExportConfig

    cfg = build(ExportConfig, {"n": args.n, "seed": args.seed, "title": args.title,
                                "stratify": not args.no_stratify})
    print(export_packet(cfg, args.rationales, args.examples, args.out))
    return 0
