"""``rationale-sft baselines``: age+sex LR, LR, LightGBM and the oracle on a labelled cohort."""

from __future__ import annotations

import argparse

from rationale_sft import config
from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.errors import InputError


def add_parser(subparsers, help_text: str) -> None:
    """Register ``baselines``."""
    keys = "\n".join(f"  {k} (default {d}): {h}" for k, d, h in config.describe(BaselinesConfig))
    p = subparsers.add_parser(
        "baselines", help=help_text, description=help_text + " Trains on the train split (or one nested "
        "subset of it), early-stops LightGBM on tuning, predicts held_out; writes OUT/predictions/<model>.parquet, "
        "OUT/metrics.json, OUT/vocab.json, config.yaml, manifest.json and DONE (a finished OUT is not refitted).",
        epilog="config keys (YAML or KEY=VALUE overrides):\n" + keys,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", required=True, help="Labels parquet from `rationale-sft cohort extract`.")
    p.add_argument("--meds", required=True, help="The MEDS dataset directory the labels were extracted from.")
    p.add_argument("--out", required=True, help="Output directory.")
    p.add_argument("--config", default=None, help="Baselines config YAML (default: built-in defaults).")
    p.add_argument("--train-subsets", default=None, help="Subsets parquet (subject_id, scale) from cohort extract.")
    p.add_argument("--scale", type=int, default=None, help="Which subset of --train-subsets to train on.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides, e.g. lightgbm.num_leaves=7.")
    p.set_defaults(func=run)


def subset_ids(path: str | None, scale: int | None) -> list[int] | None:
    """Subject ids of one scale of a subsets parquet (None without --train-subsets)."""
    if path is None:
        if scale is not None:
            raise InputError("--scale needs --train-subsets (the subsets parquet written by cohort extract --scales)")
        return None
    import polars as pl

    from rationale_sft.cohort.meds_io import read_parquet_checked

    df = read_parquet_checked(path, {"subject_id": pl.Int64, "scale": pl.Int64})
    scales = sorted(df["scale"].unique().to_list())
    if scale not in scales:
        raise InputError(f"{path}: --scale {scale} not found; available scales: {', '.join(map(str, scales))}")
    return df.filter(pl.col("scale") == scale)["subject_id"].to_list()


def run(args: argparse.Namespace) -> int:
    """Parse, fit, print the metrics table."""
    from rich.console import Console
    from rich.table import Table

    from rationale_sft.baselines.fit import fit_baselines

    cfg = config.load(BaselinesConfig, args.config, args.overrides)
    metrics = fit_baselines(cfg, args.labels, args.meds, args.out, subset_ids(args.train_subsets, args.scale))
    table = Table(title=f"held-out metrics ({args.out})")
    for col in ("model", "AUROC", "AUPRC", "n", "n_pos"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for model, m in metrics.items():
        table.add_row(model, f"{m['auroc']:.4f}", f"{m['auprc']:.4f}", str(m["n"]), str(m["n_pos"]))
    Console().print(table)
    return 0
