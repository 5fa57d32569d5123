"""How the gap moves with the training scale, and whether that is data or optimizer steps.

A trend of the gap (arm - reference) over scales is a data effect only when every run took the same number
of optimizer steps; with an epoch budget, steps grow with the number of training subjects, so the trend mixes
more data with more steps. This module reads the budget rule from the grid's config, each run's steps and
tokens, and states which of the two the trend is.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rationale_sft.config.report import ReportConfig
from rationale_sft.report.analysis import Analysis, arm_order, pooled_method
from rationale_sft.report.load import RunDir, grid_config, read_budget
from rationale_sft.report.render import fmt_ci
from rationale_sft.seeding import rng
from rationale_sft.stats.bootstrap import percentile_ci, pooled_replicates


def budget_rule(config: dict) -> dict:
    """The step-budget rule of the grid's ``train`` config: fixed steps (``train.steps`` > 0) or epochs.

    >>> budget_rule({"train": {"steps": 120, "epochs": 1}})["fixed"]
    True
    >>> r = budget_rule({"train": {"steps": 0, "epochs": 2}}); r["fixed"], "grows with the scale" in r["text"]
    (False, True)
    >>> budget_rule({})["fixed"] is None
    True
    """
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    steps, epochs = train.get("steps"), train.get("epochs")
    if steps is None and epochs is None:
        return {"fixed": None, "text": "unknown (no train section in RUN_DIR/config.yaml)"}
    if steps and int(steps) > 0:
        return {"fixed": True, "text": f"a fixed budget of train.steps = {int(steps)} optimizer steps for every arm "
                                       "and scale"}
    return {"fixed": False, "text": f"train.epochs = {epochs} passes over each run's training examples "
                                    "(train.steps = 0), so the number of optimizer steps grows with the scale"}


def budget_table(an: Analysis, rd: RunDir, cfg: ReportConfig) -> pl.DataFrame:
    """One row per fine-tuned run: arm, model, scale, seed, optimizer steps and trained tokens."""
    sft = an.runs.filter(~pl.col("arm").str.starts_with("fewshot"))
    keys = [k for k in ("model", "scale", "seed") if k in sft.columns]
    order = {a: i for i, a in enumerate(arm_order(sft["arm"].to_list(), cfg))}
    rows = [{"arm": r["arm"], **{k: r[k] for k in keys}, **read_budget(rd, r)} for r in sft.iter_rows(named=True)]
    if not rows:
        return pl.DataFrame()
    table = pl.DataFrame(rows, infer_schema_length=None)
    return table.sort(pl.col("arm").replace_strict(order, return_dtype=pl.Int64), *keys, nulls_last=True)


def scale_blocks(an: Analysis, cfg: ReportConfig, rd: RunDir) -> list[tuple]:
    """The paragraph on the gap against scale (data or steps), the budget rule and the steps/tokens table."""
    rule = budget_rule(grid_config(rd))
    table = budget_table(an, rd, cfg)
    blocks: list[tuple] = [("p", f"Training budget rule: {rule['text']}."
                            + (" Warning: under this rule a trend with scale confounds data with optimizer steps."
                               if rule["fixed"] is False else ""))]
    gap = gap_by_scale(an, cfg)
    if gap:
        blocks.append(("p", "How the gap moves with scale (arm - " + cfg.reference_arm + ", mean over paired "
                            f"configurations; {pooled_method(cfg)}): " + "; ".join(gap) + ". "
                            + steps_verdict(table)))
    if table.height:
        shown = table.drop("tokens_source").with_columns(pl.all().cast(pl.String).fill_null("–"))
        source = table["tokens_source"][0]
        blocks.append(("table", shown.head(cfg.max_rows),
                       f"Optimizer steps and trained tokens of every fine-tuned run (n = {table.height} runs; "
                       f"tokens: {source}; from results.parquet train_steps/train_tokens when present, else each "
                       "run's train.json and train_log.parquet)."
                       + (f" First {cfg.max_rows} rows (report.max_rows)." if table.height > cfg.max_rows else "")))
    return blocks


def budget_stats(an: Analysis, cfg: ReportConfig, rd: RunDir) -> dict:
    """The budget rule, each fine-tuned run's steps and tokens, and the data-or-steps sentence, for stats.json."""
    table = budget_table(an, rd, cfg)
    return {"rule": budget_rule(grid_config(rd)), "runs": table.to_dicts(), "steps": steps_verdict(table),
            "gap_by_scale": gap_by_scale(an, cfg)}


def gap_by_scale(an: Analysis, cfg: ReportConfig) -> list[str]:
    """Per arm: the pooled gap at each scale, and its change from the smallest to the largest scale with a
    two-level bootstrap interval (paired on the subject draws)."""
    if not an.deltas.height or "scale" not in an.deltas.columns or not an.replicates:
        return []
    texts = []
    for arm in arm_order(an.deltas["arm"].to_list(), cfg):
        d = an.deltas.filter((pl.col("arm") == arm) & pl.col("scale").is_not_null())
        scales = sorted(set(d["scale"].to_list()))
        if len(scales) < 2:
            continue
        at = {s: _pooled(d.filter(pl.col("scale") == s), an, cfg, f"{arm}/{s}") for s in (scales[0], scales[-1])}
        mid = [f"{_scale(s)}: {fmt_ci(*at[s][:3])}" for s in (scales[0], scales[-1])]
        change = at[scales[-1]][3] - at[scales[0]][3]
        lo, hi = percentile_ci(change, cfg.level)
        est = at[scales[-1]][0] - at[scales[0]][0]
        moves = "gains on" if lo > 0 else "loses to" if hi < 0 else "shows no clear change against"
        texts.append(f"{arm}: gap at scale {mid[0]}, at scale {mid[1]}; change {est:+.3f} [{lo:.3f}, {hi:.3f}] "
                     f"(the arm {moves} the reference as data grow)")
    return texts


def _pooled(d: pl.DataFrame, an: Analysis, cfg: ReportConfig, purpose: str) -> tuple:
    reps = np.array([an.replicates[a]["auroc"] - an.replicates[r]["auroc"]
                     for a, r in zip(d["run_id"], d["run_id_ref"])])
    pooled = pooled_replicates(reps, rng(cfg.seed, f"gap_by_scale/{purpose}"))
    return (float(d["delta"].mean()), *percentile_ci(pooled, cfg.level), pooled)


def _scale(s) -> str:
    return f"{s:g}" if isinstance(s, float) else str(s)


def steps_verdict(table: pl.DataFrame) -> str:
    """Data or steps: equal steps in every run -> a data effect at a fixed step budget; else confounded.

    >>> steps_verdict(pl.DataFrame({"scale": [30, 120], "steps": [50, 50]}))
    'Every fine-tuned run took 50 optimizer steps, so the trend is a data effect at a fixed step budget.'
    >>> steps_verdict(pl.DataFrame({"scale": [30, 30], "steps": [8, 8]}))[:21]
    'Only one data scale: '
    >>> steps_verdict(pl.DataFrame({"scale": [30, 120], "steps": [8, 30]}))[:60]
    'Optimizer steps differ across scales (30: 8; 120: 30), so th'
    """
    if not table.height or "steps" not in table.columns or table["steps"].null_count() == table.height:
        return "Optimizer steps are unknown (no train_steps column and no train.json), so whether this is data " \
               "or steps cannot be told."
    steps = table["steps"].drop_nulls()
    if "scale" in table.columns and table["scale"].drop_nulls().n_unique() < 2:
        return "Only one data scale: there is no trend with scale to attribute to data or steps."
    if steps.n_unique() == 1:
        return f"Every fine-tuned run took {steps[0]} optimizer steps, so the trend is a data effect at a fixed " \
               "step budget."
    if "scale" in table.columns:
        per = table.group_by("scale").agg(pl.col("steps").min().alias("lo"), pl.col("steps").max().alias("hi")
                                          ).sort("scale", nulls_last=True)
        if per.height > 1 and per.filter(pl.col("lo") != pl.col("hi")).height == 0:
            text = "; ".join(f"{_scale(r['scale'])}: {r['lo']}" for r in per.iter_rows(named=True))
            return f"Optimizer steps differ across scales ({text}), so the trend confounds data with steps."
    return (f"Optimizer steps differ between runs ({steps.min()}-{steps.max()}), so the trend confounds data with "
            "steps.")


__all__ = ["budget_rule", "budget_stats", "budget_table", "gap_by_scale", "scale_blocks", "steps_verdict"]
