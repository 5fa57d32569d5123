"""The report's numbers: per-run metrics recomputed from scores, paired tests, arm and factor summaries, verdict.

Metrics are recomputed from each run's ``scores.parquet`` (the per-subject rows are the source of truth);
``results.parquet`` values that disagree are counted and shown, not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import Progress

from rationale_sft.config.report import ReportConfig
from rationale_sft.errors import InputError
from rationale_sft.report.gates import gate_table, gated_verdict, reference_aurocs
from rationale_sft.report.load import FEWSHOT_PREFIX, RunDir, read_baselines, read_scores
from rationale_sft.seeding import rng
from rationale_sft.stats import (auroc, bootstrap_table, delong_test, expected_calibration_error, factor_summary,
                                 gap_model, holm, paired_bootstrap_diff, paired_deltas, pooled_interval,
                                 subject_replicates, t_interval)
from rationale_sft.stats.bootstrap import two_level_method
from rationale_sft.stats.compare import PAIR_KEYS, level_name

SCORE_COLUMNS = ("subject_id", "label", "p_yes", "p_direct", "conclusion", "rationale_conclusion",
                 "n_generated_tokens")
FACTORS = ("family", "model", "scale", "base", "hidden_share")


@dataclass
class Analysis:
    """Everything the sections render: tables (polars) and per-run score tables, keyed by run id."""

    runs: pl.DataFrame
    scores: dict[str, pl.DataFrame]
    deltas: pl.DataFrame
    arms: pl.DataFrame
    factors: pl.DataFrame
    model: pl.DataFrame
    model_dropped: list[str]
    verdict: dict
    representative: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    replicates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    "Per run id: its AUROC and AUPRC under the shared subject resamples (the two-level bootstrap's first level)."
    oracle: tuple[np.ndarray, np.ndarray] | None = None
    "(labels, true risk) of the oracle on the representative configuration's test subjects; None without one."
    gates: pl.DataFrame = field(default_factory=pl.DataFrame)
    "Quality gates, one row per run x gate (report.gates.gate_table)."


def is_fewshot(arm: str) -> bool:
    """Few-shot rows are named ``fewshot_<demonstrations>``.

    >>> is_fewshot("fewshot_freeform"), is_fewshot("freeform")
    (True, False)
    """
    return arm.startswith(FEWSHOT_PREFIX)


def analyse(rd: RunDir, cfg: ReportConfig) -> Analysis:
    """Compute every number of the report from the run directory's files."""
    runs, scores, notes = run_metrics(rd, cfg)
    runs = add_pair_tests(runs, scores, cfg)
    reps = run_replicates(runs, scores, cfg)
    sft = runs.filter(~pl.col("arm").str.starts_with(FEWSHOT_PREFIX))
    has_ref = cfg.reference_arm in set(sft["arm"].to_list())
    deltas = paired_deltas(sft, cfg.reference_arm) if has_ref else pl.DataFrame()
    if not has_ref:
        notes.append(f"no runs of the reference arm {cfg.reference_arm!r}: no paired comparisons")
    factors = pooled_factors(factor_summary(deltas, FACTORS, cfg.level), deltas, reps, cfg) if deltas.height \
        else pl.DataFrame()
    model, dropped = gap_model(deltas, cfg.level) if deltas.height > 1 else (pl.DataFrame(), [])
    rep = representative(sft, cfg)
    gates = gate_table(runs, cfg, reference_aurocs(rd, runs, scores, cfg))
    return Analysis(runs, scores, deltas, arm_table(runs, cfg, reps), factors, model, dropped,
                    gated_verdict(verdict(factors, cfg), gates, cfg), rep, notes, reps, oracle_scores(rd, rep, scores),
                    gates)


def oracle_scores(rd: RunDir, rep: dict, scores: dict[str, pl.DataFrame]) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, true risk) of the oracle from the baselines job, on the representative configuration's test
    subjects (every configuration is scored on them); None without an oracle."""
    preds = next((p["oracle"] for p in read_baselines(rd).values() if "oracle" in p), None)
    if preds is None:
        return None
    rep_ref = next(iter(rep.get("runs", {}).values()), None)
    if rep_ref in scores:
        preds = preds.filter(pl.col("subject_id").is_in(scores[rep_ref]["subject_id"].to_list()))
    y = preds["boolean_value"].cast(pl.Boolean).to_numpy()
    if not 0 < y.sum() < y.size:
        return None
    return y, preds["predicted_boolean_probability"].cast(pl.Float64).to_numpy()


def pooled_method(cfg: ReportConfig) -> str:
    """What every interval that pools configurations resamples, with its replicates and seed."""
    return f"{two_level_method(cfg.n_boot, cfg.level)}, seed {cfg.seed}"


def run_replicates(runs: pl.DataFrame, scores: dict[str, pl.DataFrame],
                   cfg: ReportConfig) -> dict[str, dict[str, np.ndarray]]:
    """Every run's AUROC and AUPRC under one shared set of test-subject resamples.

    Subjects are keyed by (cohort, subject id): runs of one cohort (``hidden_share`` level) share the draw
    of each subject; cohorts are resampled separately, within labels. A run that scored a subset of the
    subjects (few-shot) is evaluated on its own subjects under the same draw.
    """
    cohort = pl.col("hidden_share").cast(pl.String).fill_null("") if "hidden_share" in runs.columns else pl.lit("")
    ids = runs.filter(pl.col("run_id").is_in(list(scores))).select("run_id", cohort.alias("cohort"))
    if not ids.height:
        return {}
    long = pl.concat([scores[r].select("subject_id", pl.col("label").cast(pl.Boolean), pl.col("p_yes").cast(pl.Float64),
                                       pl.lit(i).alias("row"), pl.lit(c).alias("cohort"))
                      for i, (r, c) in enumerate(ids.iter_rows())])
    keys = long.group_by("cohort", "subject_id").agg(pl.col("label").n_unique().alias("k"), pl.col("label").first()
                                                      ).sort("cohort", "subject_id").with_row_index("col")
    if keys["k"].max() > 1:
        bad = keys.filter(pl.col("k") > 1).row(0, named=True)
        raise InputError(f"subject {bad['subject_id']} has different labels in different runs' scores.parquet; "
                         "runs of one cohort must score the same labelled subjects (re-run the grid)")
    long = long.join(keys.select("cohort", "subject_id", "col"), on=["cohort", "subject_id"])
    mat = np.full((ids.height, keys.height), np.nan)
    mat[long["row"].to_numpy(), long["col"].to_numpy()] = long["p_yes"].to_numpy()
    strata = keys["cohort"].rank("dense").cast(pl.Int64).to_numpy()
    reps = subject_replicates(keys["label"].to_numpy(), mat, rng(cfg.seed, "two_level_subjects"), cfg.n_boot, strata)
    return {r: {m: reps[m][i] for m in reps} for i, r in enumerate(ids["run_id"].to_list())}


def pooled_factors(factors: pl.DataFrame, deltas: pl.DataFrame, reps: dict, cfg: ReportConfig) -> pl.DataFrame:
    """Replace the t-interval of every factor row by the two-level bootstrap (kept as ``t_lo``/``t_hi``)."""
    bounds = []
    for row in factors.iter_rows(named=True):
        sub = deltas.filter(pl.col("arm") == row["arm"])
        if row["factor"] != "overall":
            sub = sub.filter(pl.col(row["factor"]).map_elements(level_name, return_dtype=pl.String) == row["level"])
        sub = sub.filter(pl.col("run_id").is_in(list(reps)) & pl.col("run_id_ref").is_in(list(reps)))
        d = np.array([reps[a]["auroc"] - reps[r]["auroc"] for a, r in zip(sub["run_id"], sub["run_id_ref"])])
        g = rng(cfg.seed, f"two_level_configs/{row['arm']}/{row['factor']}/{row['level']}")
        bounds.append(pooled_interval(sub["delta"].to_numpy(), d.reshape(sub.height, -1), g, cfg.level)[1:])
    lo, hi = zip(*bounds) if bounds else ((), ())
    method = f"{pooled_method(cfg)}; Wilcoxon signed-rank and sign tests over paired configurations"
    return factors.rename({"lo": "t_lo", "hi": "t_hi"}).with_columns(
        pl.Series("lo", lo, pl.Float64), pl.Series("hi", hi, pl.Float64), pl.lit(method).alias("method"))


def run_metrics(rd: RunDir, cfg: ReportConfig) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], list[str]]:
    """Per finished run: AUROC/AUPRC/Brier with bootstrap CIs, ECE and readouts, recomputed from scores."""
    rows, scores, notes = [], {}, []
    ok = rd.ok()
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("metrics per run", total=ok.height)
        for row in ok.iter_rows(named=True):
            table = read_scores(rd, row)
            bar.advance(task)
            if table is None:
                notes.append(f"run {row['run_id']}: scores.parquet missing; left out")
                continue
            table = table.select([c for c in SCORE_COLUMNS if c in table.columns])
            scores[row["run_id"]] = table
            try:
                rows.append({**row, **_metrics(table, cfg)})
            except InputError as exc:
                raise InputError(f"{rd.path(row['run_path']) / 'scores.parquet'}: {exc}") from None
    mismatched = [r["run_id"] for r in rows if r.get("auroc") is not None
                  and abs(r["auroc"] - r["auroc_recomputed"]) > 1e-6]
    if mismatched:
        notes.append(f"{len(mismatched)} run(s) whose results.parquet AUROC differs from their scores.parquet "
                     f"(first: {mismatched[0]}); the report uses the recomputed values")
    runs = pl.DataFrame(rows, infer_schema_length=None)
    runs = runs.with_columns(pl.col("auroc_recomputed").alias("auroc"), pl.col("auprc_recomputed").alias("auprc"),
                             pl.col("brier_recomputed").alias("brier")).drop(
        "auroc_recomputed", "auprc_recomputed", "brier_recomputed")
    return runs, scores, notes


def _metrics(table: pl.DataFrame, cfg: ReportConfig) -> dict:
    y = table["label"].cast(pl.Boolean).to_numpy()
    s = table["p_yes"].cast(pl.Float64).to_numpy()
    boot = {r["metric"]: r for r in bootstrap_table(y, s, seed=cfg.seed, n_boot=cfg.n_boot,
                                                    level=cfg.level).iter_rows(named=True)}
    out = {"n_test": int(y.size), "n_pos": int(y.sum()), "boot_seed": cfg.seed, "boot_method": boot["auroc"]["method"]}
    for m in ("auroc", "auprc", "brier"):
        out |= {f"{m}_recomputed": boot[m]["estimate"], f"{m}_lo": boot[m]["lo"], f"{m}_hi": boot[m]["hi"]}
    out["ece_uniform"] = expected_calibration_error(y, s, cfg.n_bins, "uniform")
    out["ece_quantile"] = expected_calibration_error(y, s, cfg.n_bins, "quantile")
    out |= _readouts(table, y)
    return out


def _readouts(table: pl.DataFrame, y: np.ndarray) -> dict:
    out = {"auroc_direct": None, "conclusion_yes_rate": None, "mean_generated_tokens": None}
    direct = table["p_direct"].cast(pl.Float64).fill_nan(None) if "p_direct" in table.columns else None
    if direct is not None and direct.null_count() == 0:  # NaN/null: the run did not score the direct slot
        out["auroc_direct"] = auroc(y, direct.to_numpy())
    stated = table["rationale_conclusion"].drop_nulls() if "rationale_conclusion" in table.columns else None
    if stated is not None and len(stated):  # the verdict generated rationales state, among those stating one
        out["conclusion_yes_rate"] = float((stated == "Yes").sum() / len(stated))
    elif "conclusion" in table.columns and table["conclusion"].null_count() < table.height:
        out["conclusion_yes_rate"] = float((table["conclusion"] == "Yes").sum() / table.height)
    if "n_generated_tokens" in table.columns:
        out["mean_generated_tokens"] = float(table["n_generated_tokens"].cast(pl.Float64).mean())
    return out


def add_pair_tests(runs: pl.DataFrame, scores: dict[str, pl.DataFrame], cfg: ReportConfig) -> pl.DataFrame:
    """For each SFT run with a reference run of the same configuration: DeLong test and paired bootstrap CI."""
    sft = runs.filter(~pl.col("arm").str.starts_with(FEWSHOT_PREFIX))
    if cfg.reference_arm not in set(sft["arm"].to_list()):
        return runs
    pairs = paired_deltas(sft, cfg.reference_arm)
    rows = [_pair_row(p, scores, cfg) for p in pairs.iter_rows(named=True)]
    if not rows:
        return runs
    table = pl.DataFrame(rows)
    table = table.with_columns(pl.Series("delong_p_holm", holm(table["delong_p"].to_numpy())))
    return runs.join(table, on="run_id", how="left", maintain_order="left")


def _pair_row(pair: dict, scores: dict[str, pl.DataFrame], cfg: ReportConfig) -> dict:
    a, r = scores[pair["run_id"]], scores[pair["run_id_ref"]]
    joined = a.select("subject_id", "label", "p_yes").join(
        r.select("subject_id", pl.col("p_yes").alias("p_ref")), on="subject_id", how="inner")
    y = joined["label"].cast(pl.Boolean).to_numpy()
    s, s_ref = joined["p_yes"].to_numpy(), joined["p_ref"].to_numpy()
    test = delong_test(y, s, s_ref, cfg.level)
    boot = paired_bootstrap_diff(y, s, s_ref, rng(cfg.seed, "paired_bootstrap"), "auroc", cfg.n_boot, cfg.level)
    return {"run_id": pair["run_id"], "run_id_ref": pair["run_id_ref"], "n_paired": test["n"],
            "delta_auroc": test["diff"], "delta_lo": boot["lo"], "delta_hi": boot["hi"], "delong_se": test["se"],
            "delong_z": test["z"], "delong_p": test["p"]}


def arm_table(runs: pl.DataFrame, cfg: ReportConfig, reps: dict | None = None) -> pl.DataFrame:
    """Per arm: configurations, mean AUROC/AUPRC with intervals over test subjects and configurations (t-intervals
    over configurations when ``reps`` is not given), Brier, ECE."""
    rows = []
    for arm in arm_order(runs["arm"].to_list(), cfg):
        sub = runs.filter(pl.col("arm") == arm)
        if reps and all(r in reps for r in sub["run_id"]):
            au, au_lo, au_hi = _pooled_metric(sub, reps, "auroc", cfg)
            ap, ap_lo, ap_hi = _pooled_metric(sub, reps, "auprc", cfg)
        else:
            au, au_lo, au_hi = t_interval(sub["auroc"].to_numpy(), cfg.level)
            ap, ap_lo, ap_hi = t_interval(sub["auprc"].to_numpy(), cfg.level)
        rows.append({"arm": arm, "kind": "few-shot" if is_fewshot(arm) else "fine-tuned", "n_configs": sub.height,
                     "n_test": int(sub["n_test"].median()), "auroc": au, "auroc_lo": au_lo, "auroc_hi": au_hi,
                     "auprc": ap, "auprc_lo": ap_lo, "auprc_hi": ap_hi, "brier": float(sub["brier"].mean()),
                     "ece": float(sub["ece_quantile"].mean()), "study_auroc": cfg.study_reference.get(arm)})
    return pl.DataFrame(rows, schema_overrides={"study_auroc": pl.Float64})


def _pooled_metric(sub: pl.DataFrame, reps: dict, metric: str, cfg: ReportConfig) -> tuple[float, float, float]:
    rows = np.array([reps[r][metric] for r in sub["run_id"]])
    g = rng(cfg.seed, f"two_level_configs/{sub['arm'][0]}/{metric}")
    return pooled_interval(sub[metric].to_numpy(), rows, g, cfg.level)


def arm_order(arms: list[str], cfg: ReportConfig) -> list[str]:
    """Reference arm, the study's arms, other SFT arms, then few-shot arms.

    >>> arm_order(["fewshot_x", "weighted", "stepwise", "label_only", "freeform"], ReportConfig())
    ['label_only', 'freeform', 'stepwise', 'weighted', 'fewshot_x']
    """
    present = sorted(set(arms))
    first = [a for a in (cfg.reference_arm, *cfg.study_arms) if a in present]
    rest = [a for a in present if a not in first]
    return first + [a for a in rest if not is_fewshot(a)] + [a for a in rest if is_fewshot(a)]


def verdict(factors: pl.DataFrame, cfg: ReportConfig) -> dict:
    """Does the study's effect (study arms worse than the reference) reproduce? Per arm and overall."""
    arms = {}
    if factors.height:
        for row in factors.filter(pl.col("factor") == "overall").iter_rows(named=True):
            if row["arm"] in cfg.study_arms:
                arms[row["arm"]] = {**{k: row.get(k) for k in ("n", "mean", "lo", "hi", "t_lo", "t_hi", "p_wilcoxon",
                                                                "p_sign", "p_holm", "p_bh")},
                                    "interval": row["method"].split(";")[0], "call": _call(row, cfg.alpha)}
    calls = {a["call"] for a in arms.values()}
    overall = ("no data" if not arms else "reproduced" if calls == {"reproduced"}
               else "reversed" if calls == {"reversed"} else "partly reproduced" if "reproduced" in calls
               else "not reproduced")
    study = {a: cfg.study_reference[a] - cfg.study_reference[cfg.reference_arm] for a in cfg.study_arms
             if a in cfg.study_reference and cfg.reference_arm in cfg.study_reference}
    return {"overall": overall, "arms": arms, "alpha": cfg.alpha, "study_delta": study,
            "rule": "reproduced: the CI of the mean Delta AUROC lies below 0 and the Holm-adjusted Wilcoxon p < "
                    "alpha; reversed: CI above 0 and p < alpha; otherwise inconclusive"}


def _call(row: dict, alpha: float) -> str:
    significant = row["p_holm"] is not None and not math.isnan(row["p_holm"]) and row["p_holm"] < alpha
    if significant and row["hi"] is not None and row["hi"] < 0:
        return "reproduced"
    if significant and row["lo"] is not None and row["lo"] > 0:
        return "reversed"
    return "inconclusive"


def representative(sft: pl.DataFrame, cfg: ReportConfig) -> dict:
    """The configuration shown in per-subject figures: largest scale, then first by family/model/base/seed,
    among configurations that have the reference arm and as many study arms as any configuration has."""
    keys = [k for k in PAIR_KEYS if k in sft.columns]
    if not sft.height:
        return {}
    wanted = [cfg.reference_arm, *cfg.study_arms]
    groups = sft.group_by(keys).agg(pl.col("arm").filter(pl.col("arm").is_in(wanted)).n_unique().alias("k"))
    by = ["k", *(["scale"] if "scale" in keys else []), *[k for k in keys if k != "scale"]]
    desc = [True, *([True] if "scale" in keys else []), *[False] * (len(by) - 1 - ("scale" in keys))]
    pick = groups.sort(by, descending=desc, nulls_last=True).row(0, named=True)
    cond = pl.all_horizontal([pl.col(k).eq_missing(pick[k]) for k in keys])
    runs = sft.filter(cond)
    return {"keys": {k: pick[k] for k in keys}, "runs": dict(zip(runs["arm"].to_list(), runs["run_id"].to_list()))}
