"""Is the label-only model more than a line counter? Its AUROC within strata of history length.

A score that is just the number of history lines (``n_history_items`` of the rendered examples) already
discriminates when cases have longer histories. Within a stratum of similar length that score carries little
signal, so a model that reads the history keeps its AUROC there and a line counter falls towards 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.config.report import ReportConfig
from rationale_sft.report import figures
from rationale_sft.report.analysis import Analysis
from rationale_sft.report.load import RunDir, read_baselines, read_examples
from rationale_sft.report.render import Section, fmt
from rationale_sft.stats import auroc

ALL, WITHIN = "all", "within strata (pooled)"


def count_strata(counts: np.ndarray, n_strata: int = 4) -> tuple[np.ndarray, list[str]]:
    """Equal-mass strata of integer counts (whole-number quantile cuts): a label per subject, and their order.

    >>> labels, order = count_strata(np.array([1, 2, 2, 3, 5, 8, 9, 12]))
    >>> order, labels.tolist()
    (['1', '2-3', '4-8', '9-12'], ['1', '2-3', '2-3', '2-3', '4-8', '4-8', '9-12', '9-12'])
    """
    counts = np.asarray(counts, np.int64)
    lo, hi = int(counts.min()), int(counts.max())
    cuts = np.unique(np.ceil(np.quantile(counts, np.arange(1, n_strata) / n_strata)).astype(np.int64))
    cuts = [int(c) for c in cuts if lo < c <= hi]
    starts, ends = [lo, *cuts], [c - 1 for c in cuts] + [hi]
    order = [f"{a}-{b}" if a != b else f"{a}" for a, b in zip(starts, ends)]
    return np.asarray(order)[np.searchsorted(np.asarray(cuts, np.int64), counts, side="right")], order


def within_strata_auroc(y: np.ndarray, score: np.ndarray, strata: np.ndarray) -> dict[str, float | None]:
    """AUROC per stratum (None with one class) and, under ``WITHIN``, their mean weighted by the number of
    case-control pairs in each stratum: the AUROC over pairs matched on the stratum.

    >>> r = within_strata_auroc(np.array([0, 1, 0, 1, 1]), np.array([.1, .9, .8, .2, .5]), np.array(list("aabbb")))
    >>> r["a"], r["b"], round(r[WITHIN], 4)
    (1.0, 0.0, 0.3333)
    """
    y, score, strata = np.asarray(y, bool), np.asarray(score, np.float64), np.asarray(strata)
    out: dict[str, float | None] = {}
    num = den = 0.0
    for s in dict.fromkeys(strata.tolist()):
        m = strata == s
        pairs = float(y[m].sum() * (~y[m]).sum())
        out[s] = auroc(y[m], score[m]) if pairs else None
        num, den = num + (out[s] or 0.0) * pairs, den + pairs
    out[WITHIN] = num / den if den else None
    return out


def history_section(an: Analysis, cfg: ReportConfig, rd: RunDir, out: Path) -> Section:
    """Label-only AUROC per history-length stratum and scale, next to the line count's and LR's AUROC."""
    title = "Label-only within strata of history length"
    examples = read_examples(rd)
    if examples is None or "n_history_items" not in examples.columns:
        return Section("history", title, [("absent", "No rendered examples with n_history_items in index.json "
                                                     "('examples'): history-length strata not shown.")])
    ref = an.runs.filter(pl.col("arm") == cfg.reference_arm)
    if not ref.height:
        return Section("history", title, [("absent", f"No runs of the reference arm {cfg.reference_arm!r}.")])
    lines = examples.select("subject_id", pl.col("n_history_items").cast(pl.Int64)).unique("subject_id", keep="first")
    table = strata_table(an, ref, lines, read_baselines(rd))
    if not table.height:
        return Section("history", title, [("absent", "No test subjects with a history length.")])
    shown = table.with_columns(pl.col("n").cast(pl.String), pl.col("n_pos").cast(pl.String),
                               *[pl.col(c).map_elements(fmt, return_dtype=pl.String, skip_nulls=False)
                                 for c in ("label-only AUROC", "line-count AUROC", "LR AUROC")])
    blocks: list[tuple] = [
        ("p", "A score that is just the number of history lines discriminates when cases have longer histories. "
              "Within strata of similar length it carries little signal: a model that reads the history keeps its "
              "AUROC there, a line counter falls towards 0.5. 'within strata (pooled)' is the AUROC over case-"
              "control pairs in the same stratum."),
        ("table", shown, "Per scale: test subjects in equal-mass strata of history lines (n_history_items); label-"
                         f"only AUROC is the mean over that scale's {cfg.reference_arm} runs (column runs), the LR "
                         "baseline is the one fitted at that scale, all on the same subjects; no interval (point "
                         "estimates; n and n_pos per stratum shown).")]
    png = figures.strata_curves(table, out / "auroc_by_history_length.png",
                                auroc(*an.oracle) if an.oracle else None)
    blocks.append(("img", png, "AUROC within history-length strata per scale: label-only, LR and the line count "
                               "(dotted: chance 0.5; dashed: the oracle on all test subjects)"))
    return Section("history", title, blocks)


def strata_stats(an: Analysis, cfg: ReportConfig, rd: RunDir) -> list[dict]:
    """The strata table's rows for stats.json (empty without examples or reference runs)."""
    examples = read_examples(rd)
    ref = an.runs.filter(pl.col("arm") == cfg.reference_arm)
    if examples is None or "n_history_items" not in examples.columns or not ref.height:
        return []
    lines = examples.select("subject_id", pl.col("n_history_items").cast(pl.Int64)).unique("subject_id", keep="first")
    return strata_table(an, ref, lines, read_baselines(rd)).to_dicts()


def strata_table(an: Analysis, ref: pl.DataFrame, lines: pl.DataFrame, baselines: dict) -> pl.DataFrame:
    """One row per scale and stratum (then ``all`` and ``within strata (pooled)``)."""
    rows = []
    scales = sorted(set(ref["scale"].to_list()), key=lambda s: (s is None, s)) if "scale" in ref.columns else [None]
    for scale in scales:
        runs = ref.filter(pl.col("scale").eq_missing(scale)) if "scale" in ref.columns else ref
        ids = [r for r in runs["run_id"] if r in an.scores]
        if not ids:
            continue
        base = an.scores[ids[0]].select("subject_id", "label").join(lines, on="subject_id", how="inner")
        lr = baselines.get(str(scale), baselines.get("all", {})).get("lr")
        if lr is not None:
            base = base.join(lr.select("subject_id", pl.col("predicted_boolean_probability").alias("lr")),
                             on="subject_id", how="left")
        if not base.height:
            continue
        y, n_lines = base["label"].cast(pl.Boolean).to_numpy(), base["n_history_items"].to_numpy()
        strata, order = count_strata(n_lines)
        per_run = [_run_strata(an.scores[r], base, strata) for r in ids]
        line_auc = _with_all(y, n_lines.astype(float), strata)
        lr_auc = _with_all(y, base["lr"].to_numpy(), strata) if "lr" in base.columns and \
            base["lr"].null_count() == 0 else {}
        for s in [*order, ALL, WITHIN]:
            m = np.ones(y.size, bool) if s in (ALL, WITHIN) else strata == s
            vals = [p[s] for p in per_run if p.get(s) is not None]
            rows.append({"scale": "-" if scale is None else str(scale), "history lines": s, "n": int(m.sum()),
                         "n_pos": int(y[m].sum()), "runs": str(len(vals)),
                         "label-only AUROC": float(np.mean(vals)) if vals else None,
                         "line-count AUROC": line_auc.get(s), "LR AUROC": lr_auc.get(s)})
    return pl.DataFrame(rows, schema={"scale": pl.String, "history lines": pl.String, "n": pl.Int64,
                                      "n_pos": pl.Int64, "runs": pl.String, "label-only AUROC": pl.Float64,
                                      "line-count AUROC": pl.Float64, "LR AUROC": pl.Float64})


def _with_all(y: np.ndarray, score: np.ndarray, strata: np.ndarray) -> dict:
    out = within_strata_auroc(y, score, strata)
    out[ALL] = auroc(y, score) if 0 < y.sum() < y.size else None
    return out


def _run_strata(scores: pl.DataFrame, base: pl.DataFrame, strata: np.ndarray) -> dict:
    """A run's AUROC per stratum on the base subjects (a run that lacks some of them is left out)."""
    j = base.select("subject_id", "label").with_columns(pl.Series("stratum", strata)).join(
        scores.select("subject_id", "p_yes"), on="subject_id", how="inner", maintain_order="left")
    if j.height != base.height:
        return {}
    return _with_all(j["label"].cast(pl.Boolean).to_numpy(), j["p_yes"].cast(pl.Float64).to_numpy(),
                     j["stratum"].to_numpy())
