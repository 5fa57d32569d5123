"""``rationale-sft cohort extract``: labels of a prediction task from a MEDS dataset (plus nested subsets)."""

from __future__ import annotations

import argparse
import json

from rationale_sft import config
from rationale_sft.config.task import TaskConfig
from rationale_sft.errors import InputError

HELP = "Extract a labelled prediction cohort (MEDS labels + split, age, sex) from a MEDS dataset."


def add_parser(subparsers) -> None:
    """Register ``cohort extract``."""
    keys = "\n".join(f"  {k} (default {d}): {h}" for k, d, h in config.describe(TaskConfig))
    p = subparsers.add_parser(
        "extract", help=HELP, description=HELP + " Writes LABELS.parquet, LABELS.summary.json and, with "
        "--scales, LABELS.subsets.parquet. Inputs are events strictly before the prediction time; the "
        "outcome window is (prediction_time, prediction_time + horizon].",
        epilog="task keys (YAML or KEY=VALUE overrides):\n" + keys,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meds", required=True, help="MEDS dataset directory (holds data/ and metadata/).")
    p.add_argument("--task", default=None, help="Task YAML (e.g. configs/tasks/adrd_5y.yaml) or ACES task config "
                                                "(configs/tasks/adrd_5y.aces.yaml); see docs/task.md.")
    p.add_argument("--labels", default=None,
                   help="Labels computed elsewhere (parquet: subject_id, prediction_time, boolean_value, e.g. from "
                        "ACES or MEDS-DEV), instead of --task: split, age and sex are added from --meds.")
    p.add_argument("--out", required=True, help="Labels parquet to write.")
    p.add_argument("--scales", default=None,
                   help="Comma-separated train-subset sizes (e.g. 500,1000,2000): writes nested subsets.")
    p.add_argument("--subset-seed", type=int, default=0, help="Seed of the nested subsets (default 0).")
    p.add_argument("--case-ratio", default=None,
                   help="Controls per case in every subset, as 1:3 or 3 (default: the train prevalence).")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Task overrides, e.g. horizon_years=3.")
    p.set_defaults(func=run)


def parse_sizes(text: str | None) -> tuple[int, ...]:
    """``"500,1000"`` -> ``(500, 1000)``.

    >>> parse_sizes("500, 1000"), parse_sizes(None)
    ((500, 1000), ())
    >>> parse_sizes("5k")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: --scales must be comma-separated integers (e.g. 500,1000,2000), got '5k'
    """
    if not text:
        return ()
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--scales must be comma-separated integers (e.g. 500,1000,2000), got {text!r}") from None


def parse_case_ratio(text: str | None) -> float | None:
    """``"1:3"`` or ``"3"`` -> 3.0 controls per case.

    >>> parse_case_ratio("1:3"), parse_case_ratio("2"), parse_case_ratio(None)
    (3.0, 2.0, None)
    >>> parse_case_ratio("three")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: --case-ratio must look like 1:3 or 3 (controls per case), got 'three'
    """
    if text is None:
        return None
    try:
        cases, _, controls = text.rpartition(":")
        return float(controls) / (float(cases) if cases else 1.0)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--case-ratio must look like 1:3 or 3 (controls per case), got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Parse, extract (or complete precomputed labels), print the summary."""
    from rationale_sft.cohort.extract import extract, write_cohort
    from rationale_sft.cohort.precomputed import labels_from_file
    from rationale_sft.cohort.task import load_task

    sizes, ratio = parse_sizes(args.scales), parse_case_ratio(args.case_ratio)
    if args.labels is not None:
        if args.task is not None or args.overrides:
            raise InputError("--labels takes labels computed elsewhere: drop --task and the KEY=VALUE task "
                             f"overrides ({' '.join(args.overrides) or args.task}), or drop --labels")
        labels, summary = labels_from_file(args.labels, args.meds)
        summary = write_cohort(labels, summary, args.out, sizes, args.subset_seed, ratio)
    else:
        summary = extract(load_task(args.task, args.overrides), args.meds, args.out, sizes, args.subset_seed, ratio)
    print(json.dumps(summary, indent=2, default=str))
    return 0
