"""``rationale-sft report RUN_DIR [--config report.yaml] [key=value ...]``."""

from __future__ import annotations

import argparse

from rationale_sft import config
from rationale_sft.config.report import ReportConfig


def add_parser(subparsers, help_text: str) -> None:
    """Register ``report``."""
    keys = "\n".join(f"  {k} (default {d}): {h}" for k, d, h in config.describe(ReportConfig))
    parser = subparsers.add_parser(
        "report", help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=help_text + "\n\nWrites RUN_DIR/report/: index.html, report.md, PNG figures, results.parquet "
                                "and stats.json. Re-running on the same files gives identical bytes.",
        epilog="settings (key=value overrides):\n" + keys)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished grid run directory (has DONE and "
                                                           "results.parquet)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="report settings, e.g. n_boot=2000")
    parser.add_argument("--config", metavar="YAML", help="report settings file (keys listed below)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config, write the report, print where it is."""
    from rationale_sft.report import write_report  # matplotlib loads only when a report is written

    cfg = config.load(ReportConfig, args.config, args.overrides)
    print(write_report(cfg, args.run_dir))
    return 0
