"""``rationale-sft cohort synth``: write the calibrated synthetic UK-Biobank-like MEDS cohort."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rationale_sft import config, rundir
from rationale_sft.config.synth import SynthConfig
from rationale_sft.errors import InputError

HELP = "Write a calibrated synthetic UK-Biobank-like MEDS cohort with the exact 5-year ADRD risk."


def add_parser(subparsers) -> None:
    """Register ``cohort synth``."""
    keys = "\n".join(f"  {k} (default {d}): {h}" for k, d, h in config.describe(SynthConfig))
    p = subparsers.add_parser(
        "synth", help=HELP, description=HELP + " Writes DIR/data/*.parquet, DIR/metadata/, DIR/truth/risk.parquet, "
        "DIR/summary.json, config.yaml, manifest.json and DONE (a finished DIR is skipped unless --force). "
        "Same config -> byte-identical data files. See docs/synthetic_cohort.md.",
        epilog="synth keys (YAML or KEY=VALUE overrides):\n" + keys,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output directory (the MEDS dataset root).")
    p.add_argument("--n-subjects", type=int, default=None, help="Number of subjects (same as n_subjects=N).")
    p.add_argument("--seed", type=int, default=None, help="Sample seed (same as seed=S).")
    p.add_argument("--config", default=None, help="YAML file of synth keys (optional).")
    p.add_argument("--force", action="store_true", help="Regenerate even when DIR/DONE exists.")
    p.add_argument("--allow-large", action="store_true",
                   help="Generate even when the estimate exceeds 100,000,000 events (about 3.8M subjects).")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Synth overrides, e.g. hidden_share=0.2.")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> SynthConfig:
    """The config from --config, the KEY=VALUE overrides, then --n-subjects and --seed."""
    extra = [f"{k}={v}" for k, v in (("n_subjects", args.n_subjects), ("seed", args.seed)) if v is not None]
    return config.load(SynthConfig, args.config, [*args.overrides, *extra])


def run(args: argparse.Namespace) -> int:
    """Parse, synthesize inside a run stage, print the summary."""
    from rationale_sft.cohort.synth import MAX_EVENTS, estimate_size, synthesize

    cfg, out = resolve(args), Path(args.out)
    size = estimate_size(cfg)
    what = f"about {size['events']:,} events (~{_human(size['bytes'])}) for {cfg.n_subjects:,} subjects"
    if size["events"] > MAX_EVENTS and not args.allow_large:
        raise InputError(f"{what} is more than the bound of {MAX_EVENTS:,} events; lower n_subjects, or pass "
                         "--allow-large to generate it anyway")
    print(f"cohort synth: {what}", file=sys.stderr)
    done_cfg = out / rundir.CONFIG
    if rundir.is_done(out) and not args.force and done_cfg.is_file() and done_cfg.read_text() != config.to_yaml(cfg):
        raise InputError(f"{out} already holds a finished cohort with a different config ({done_cfg}); "
                         "use another --out or --force to overwrite it")
    ran = rundir.run_stage(out, lambda d: {"summary": synthesize(cfg, d)}, cfg=cfg,
                           seeds={"seed": cfg.seed, "world_seed": cfg.world_seed}, force=args.force)
    summary = json.loads((out / "summary.json").read_text())
    if not ran:
        print(f"{out} is already done (DONE exists); use --force to regenerate")
    print(json.dumps(summary, indent=2))
    return 0


def _human(n: int) -> str:
    """Bytes as a short text.

    >>> _human(2_620_000), _human(512)
    ('2.6 MB', '512 B')
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
