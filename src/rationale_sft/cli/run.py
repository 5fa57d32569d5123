"""``rationale-sft run CONFIG.yaml [key=value ...]``: the whole experiment grid, resumable."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rationale_sft import config
from rationale_sft.errors import InputError


def add_parser(subparsers, help_text: str) -> None:
    """Register ``run``."""
    parser = subparsers.add_parser(
        "run", help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=help_text + "\n\nBuilds the shared artifacts once (cohort, labels, prompts, rationales, "
        "baselines, base models), then one run per arm x model x scale x seed and the few-shot arm, then "
        "RUN_DIR/results.parquet, index.json, DONE and RUN_DIR/report/. Re-running skips every finished job; "
        "a killed grid resumes where it stopped. Presets: configs/smoke.yaml (seconds), configs/quick.yaml "
        "(the demo), configs/cpu_full.yaml (504 runs), configs/paper.yaml (GPUs, real checkpoints).",
        epilog="Any setting can be overridden with dotted keys, e.g. grid.seeds=[0,1] executor.kind=ray "
               "executor.ray_address=HOST:6379 executor.allow_remote_phi=true (a non-loopback cluster) train.lr=1e-4. "
               "`rationale-sft validate` lists the SFT keys.")
    parser.add_argument("config", metavar="CONFIG.yaml", help="experiment config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the config")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<name>-<config hash>)")
    parser.add_argument("--no-report", action="store_true", help="skip writing RUN_DIR/report/")
    parser.add_argument("--plan", action="store_true", help="print the planned jobs and exit")
    parser.add_argument("--cost", action="store_true",
                        help="with --plan: per stage, the tokens to train, prefill and decode and the device-hours "
                             "they take, measured lengths where the grid's run directory (--out) already holds "
                             "prompts and rationales, upper bounds elsewhere (docs/cost.md)")
    parser.add_argument("--device", metavar="NAME",
                        help="device --cost prices the grid on: cpu (this machine, measured), a100, h100, h200, l4 "
                             "(spec sheets; estimates) (default: cpu)")
    parser.add_argument("--verify", action="store_true",
                        help="check the sha256 of every finished job's files before reusing it (sizes are always "
                             "checked); a job whose files changed is rebuilt with everything depending on it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, run (or list) the grid, print a summary; exit 1 when any run failed."""
    from rationale_sft.config.experiment import ExperimentConfig
    from rationale_sft.experiment.driver import default_out, run_experiment

    if args.cost and not args.plan:
        raise InputError("--cost prices a plan: add --plan (rationale-sft run CONFIG.yaml --plan --cost); it runs "
                         "nothing")
    if args.device and not args.cost:
        raise InputError(f"--device {args.device} only chooses the device --plan --cost prices the grid on; add "
                         "--plan --cost")
    cfg = config.load(ExperimentConfig, args.config, args.overrides)
    config_dir = Path(args.config).resolve().parent
    if args.plan:
        from rationale_sft.experiment.checks import check_inputs
        from rationale_sft.experiment.plan import plan

        check_inputs(cfg, config_dir)
        p = plan(cfg, config_dir)
        kinds = {}
        for job in p.jobs:
            kinds[job.function] = kinds.get(job.function, 0) + 1
        print(json.dumps({"jobs": len(p.jobs), "runs": len(p.runs), "by_kind": kinds}, indent=2))
        if args.cost:
            print_cost(cfg, p, Path(args.out) if args.out else default_out(cfg), args.device or "cpu")
        return 0
    summary = run_experiment(cfg, args.out or default_out(cfg), config_dir, report=not args.no_report,
                             verify=args.verify)
    print(json.dumps(summary, indent=2))
    return 1 if summary["runs_failed"] else 0


def print_cost(cfg, p, out_dir: Path, device: str) -> None:
    """Print the grid's cost on ``device`` per stage, then its total on every device."""
    from rationale_sft.experiment import cost, devices

    dev = devices.get_device(device)
    lengths = cost.Lengths(out_dir)
    print(cost.format_estimate(cost.estimate(cfg, p, out_dir, dev, lengths), cfg.name))
    print(f"lengths read under {out_dir}" + ("" if out_dir.is_dir() else " (not there yet)"))
    print(cost.device_table(cfg, p, lengths))
