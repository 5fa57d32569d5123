"""``rationale-sft annotate import``: validate expert ratings, unblind them, compute means and agreement."""

from __future__ import annotations

import argparse

HELP = "Import ratings (packet.html JSON, packet CSV or Label Studio export) and compute agreement statistics."


def add_parser(subparsers) -> None:
    """Register ``annotate import``."""
    p = subparsers.add_parser("import", help=HELP, description=HELP + " Writes ratings.parquet, agreement.json "
                              "and agreement.md.")
    p.add_argument("--packet", required=True, help="packet directory written by `annotate export`")
    p.add_argument("--ratings", required=True, nargs="+", metavar="FILE",
                   help="ratings files: *.json saved by packet.html, a filled packet *.csv, "
                        "or a Label Studio JSON export")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="method=bootstrap|t, n_bootstrap=2000, level=0.95, seed=0")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Build the config, import, print a one-line summary per criterion."""
    from rationale_sft.annotate.ratings import import_ratings
    from rationale_sft.config import build
    from rationale_sft.config.annotate import ImportConfig
    from rationale_sft.rundir import read_json

    # `--ratings a.json b.csv method=t`: nargs="+" swallows trailing overrides, which files never look like
    files = [f for f in args.ratings if "=" not in f]
    overrides = [f for f in args.ratings if "=" in f] + list(args.overrides)
    cfg = build(ImportConfig, {}, overrides)
    path = import_ratings(cfg, args.packet, files, args.out)
    for name, c in read_json(path)["criteria"].items():
        print(f"{name}: mean {c['mean']}, n={c['n_ratings']}, kappa={c['kappa_quadratic']}, alpha={c['alpha_ordinal']}")
    print(path)
    return 0
