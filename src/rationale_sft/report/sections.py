"""Report sections on the main question: verdict, arms, Delta AUROC by factor, scale, curves, few-shot, baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.config.report import ReportConfig
from rationale_sft.report import figures
from rationale_sft.report.budget import scale_blocks
from rationale_sft.report.analysis import Analysis, arm_order, is_fewshot, pooled_method
from rationale_sft.report.gates import describe, failed_gates
from rationale_sft.report.load import RunDir, read_baselines, read_labels
from rationale_sft.report.render import Section, fmt, fmt_ci, fmt_p, p_text
from rationale_sft.seeding import rng
from rationale_sft.stats import (age_bands, auroc, auroc_by_group, bootstrap_table, delong_test, paired_deltas,
                                 two_level_bootstrap)
from rationale_sft.stats.compare import level_name as fmt_level
from rationale_sft.stats.metrics import band_names, cohort_age_edges

NAMES = {"label_only": "label only", "freeform": "free-form rationale", "stepwise": "step-by-step rationale"}
CALL_TEXT = {"reproduced": "Yes: the study's effect reproduces here",
             "partly reproduced": "Partly: the study's effect reproduces for some rationale arms",
             "reversed": "No, the opposite: the rationale arms discriminate better than the reference here",
             "not reproduced": "No: the study's effect does not reproduce here with the stated certainty",
             "no data": "Cannot tell: there are no paired rationale-arm configurations",
             "not evaluable": "Not evaluable: a quality gate fails, so this grid does not test the study's claim"}


def verdict_section(an: Analysis, cfg: ReportConfig) -> Section:
    """Plain-language answer: does the gap reproduce, how large, how certain, with caveats."""
    v = an.verdict
    blocks: list[tuple] = [("verdict", CALL_TEXT[v["overall"]] + ".")]
    for arm, a in v["arms"].items():
        study = v["study_delta"].get(arm)
        if a.get("failed_gates"):  # a gate of either side fails: no direction or size is stated
            blocks.append(("p", f"{NAMES.get(arm, arm).capitalize()} vs "
                                f"{NAMES.get(cfg.reference_arm, cfg.reference_arm)}: not evaluable. Failed quality "
                                f"gates: {describe(a['failed_gates'])}."))
            continue
        blocks.append(("p", f"{NAMES.get(arm, arm).capitalize()} vs {NAMES.get(cfg.reference_arm, cfg.reference_arm)}: "
                            f"mean Delta AUROC {fmt_ci(a['mean'], a['lo'], a['hi'])} over {a['n']} paired "
                            f"configurations ({a.get('interval') or f'{cfg.level:.0%} t-interval'}); Wilcoxon signed-rank "
                            f"{p_text(a['p_wilcoxon'])}, Holm-adjusted {p_text(a['p_holm'])}; sign test "
                            f"{p_text(a['p_sign'])}. Verdict for this arm: {a['call']}"
                            + (f" (study: {study:+.3f})." if study is not None else ".")))
    blocks.append(("p", f"Rule: {v['rule']} (alpha = {v['alpha']})."))
    if v.get("fewshot_failed_gates"):
        blocks.append(("p", "Few-shot comparison (rationale vs label-only demonstrations): not evaluable. Failed "
                            f"quality gates: {describe(v['fewshot_failed_gates'])}."))
    if v.get("gates_not_measured"):
        blocks.append(("p", f"Quality gates not measured (their inputs are not in this run directory), so not "
                            f"checked by the verdict: {', '.join(v['gates_not_measured'])}."))
    few = sorted({a["n"] for a in v["arms"].values() if 2.0 / 2 ** a["n"] >= v["alpha"]})
    if few:
        blocks.append(("p", f"Too few pairs for certainty: with {few[0]} paired configurations the smallest possible "
                            f"two-sided Wilcoxon p is {2.0 / 2 ** few[0]:.3f}, not below alpha; add seeds or "
                            "scales to the grid."))
    n_sub = int(an.runs["n_test"].median()) if an.runs.height else 0
    blocks.append(("p", "Caveats: the models here are tiny and the cohort is whatever the run directory holds "
                        f"(a synthetic cohort unless real data was supplied; median {n_sub} test subjects per run), "
                        "so the size of the gap is not comparable with the study's 42,566-person cohort and "
                        "billion-parameter models. Pooled intervals resample the shared test subjects and the configurations "
                        "together; the Wilcoxon and sign tests treat configurations as independent replicates; "
                        "per-configuration DeLong tests below account for pairing on the same subjects."))
    return Section("verdict", "Verdict", blocks)


def main_section(an: Analysis, cfg: ReportConfig, rd: RunDir) -> Section:
    """Mean AUROC/AUPRC per arm with CIs, next to the study's reference values."""
    t = an.arms
    table = pl.DataFrame({
        "arm": t["arm"], "kind": t["kind"], "configurations": t["n_configs"].cast(pl.String),
        "test subjects": t["n_test"].cast(pl.String),
        "AUROC mean [CI]": [fmt_ci(*r) for r in zip(t["auroc"], t["auroc_lo"], t["auroc_hi"])],
        "AUPRC mean [CI]": [fmt_ci(*r) for r in zip(t["auprc"], t["auprc_lo"], t["auprc_hi"])],
        "Brier": [fmt(x) for x in t["brier"]], "ECE (equal mass)": [fmt(x) for x in t["ece"]],
        "study AUROC (reference only)": [fmt(x) for x in t["study_auroc"]]})
    n_failed = rd.results.filter(pl.col("status") != "ok").height
    blocks: list[tuple] = [
        ("table", table, f"Mean over configurations; {cfg.level:.0%} intervals: {pooled_method(cfg)} (every "
                         "configuration is scored on the same test subjects, so both are resampled); n = "
                         "configurations per arm. Per-configuration bootstrap intervals are in results.parquet."),
        ("p", f"{an.runs.height} finished configurations; {n_failed} not finished (status other than ok)"
              + (f"; failures.json lists {len(rd.failures)}." if rd.failures else "."))]
    blocks += [("p", f"Note: {n}.") for n in an.notes]
    return Section("main", "Main results", blocks)


def delta_section(an: Analysis, cfg: ReportConfig, out: Path) -> Section:
    """Forest plot and table of Delta AUROC by factor, the gap model, and per-configuration DeLong tests."""
    if not an.factors.height:
        return Section("delta", "Delta AUROC by factor", [("absent", "No paired comparisons: the reference arm "
                                                                      f"{cfg.reference_arm!r} has no runs.")])
    arms = arm_order(an.runs["arm"].to_list(), cfg)
    f = an.factors
    table = pl.DataFrame({"arm": f["arm"], "factor": f["factor"], "level": f["level"], "n": f["n"].cast(pl.String),
                          "mean Delta [CI]": [fmt_ci(*r) for r in zip(f["mean"], f["lo"], f["hi"])],
                          "Wilcoxon p": [fmt_p(p) for p in f["p_wilcoxon"]], "sign p": [fmt_p(p) for p in f["p_sign"]],
                          "Holm p": [fmt_p(p) for p in f["p_holm"]], "BH p": [fmt_p(p) for p in f["p_bh"]]})
    # the study's arms get every factor level; other arms (ablations) only their overall row, to stay legible
    shown = f.filter(pl.col("arm").is_in(list(cfg.study_arms)) | (pl.col("factor") == "overall"))
    blocks: list[tuple] = [
        ("img", figures.forest(shown, arms, out / "delta_forest.png"),
         "Delta AUROC (arm - reference) by factor: mean over paired configurations and CI by "
         f"{pooled_method(cfg)} (other arms: overall)"),
        ("table", _cap(table, cfg), _capped(f"CI: {f['method'][0]}. Holm/BH adjust within the overall rows and "
                                            "within the per-level rows separately.", table, cfg))]
    blocks += _model_blocks(an)
    blocks += _pairs_blocks(an, cfg)
    return Section("delta", "Delta AUROC by factor", blocks)


def _model_blocks(an: Analysis) -> list[tuple]:
    if not an.model.height:
        return [("absent", "Too few paired configurations to fit the gap model.")]
    m = an.model
    table = pl.DataFrame({"term": m["term"], "coefficient [CI]": [fmt_ci(*r) for r in zip(m["coef"], m["lo"], m["hi"])],
                          "SE": [fmt(x) for x in m["se"]], "p": [fmt_p(p) for p in m["p"]]})
    dropped = f" Dropped (constant or collinear): {', '.join(an.model_dropped)}." if an.model_dropped else ""
    return [("p", "How the gap depends on the grid: Delta AUROC regressed on arm, family, model, base and "
                  "log2(scale)." + dropped),
            ("table", table, f"{m['method'][0]}; n = {m['n'][0]} deltas in {m['clusters'][0]} clusters.")]


def _pairs_blocks(an: Analysis, cfg: ReportConfig) -> list[tuple]:
    p = an.runs.filter(pl.col("delta_auroc").is_not_null()) if "delta_auroc" in an.runs.columns else pl.DataFrame()
    if not p.height:
        return []
    sig_lower = p.filter((pl.col("delong_p_holm") < cfg.alpha) & (pl.col("delta_auroc") < 0)).height
    sig_higher = p.filter((pl.col("delong_p_holm") < cfg.alpha) & (pl.col("delta_auroc") > 0)).height
    keys = [k for k in ("family", "model", "base", "scale", "seed") if k in p.columns]
    table = p.sort("arm", *keys).select(
        "arm", *[pl.col(k).cast(pl.String) for k in keys], pl.col("n_paired").cast(pl.String),
        pl.struct("delta_auroc", "delta_lo", "delta_hi").map_elements(
            lambda r: fmt_ci(r["delta_auroc"], r["delta_lo"], r["delta_hi"]),
            return_dtype=pl.String).alias("Delta [bootstrap CI]"),
        pl.col("delong_z").map_elements(lambda x: fmt(x, 2), return_dtype=pl.String).alias("DeLong z"),
        pl.col("delong_p_holm").map_elements(fmt_p, return_dtype=pl.String).alias("Holm p"))
    return [("p", f"Per configuration (paired on the same test subjects): {sig_lower} of {p.height} arm runs are "
                  f"significantly below their reference run and {sig_higher} above (DeLong test, Holm-adjusted over "
                  f"all {p.height} pairs, alpha {cfg.alpha})."),
            ("table", _cap(table, cfg), _capped(f"Paired percentile bootstrap ({cfg.n_boot} replicates, seed "
                                                f"{cfg.seed}) and DeLong test per configuration.", table, cfg))]


def scale_section(an: Analysis, cfg: ReportConfig, rd: RunDir, out: Path) -> Section:
    """AUROC against training-set size, per arm and family, with the baselines fitted at each scale."""
    sft = an.runs.filter(~pl.col("arm").str.starts_with("fewshot"))
    budget = scale_blocks(an, cfg, rd)
    if "scale" not in sft.columns or sft["scale"].drop_nulls().n_unique() < 2:
        return Section("scale", "AUROC vs data scale", [("absent", "Fewer than two data scales in this grid."),
                                                        *budget])
    oracle = an.oracle
    png = figures.scale_curves(sft.filter(pl.col("scale").is_not_null()), arm_order(sft["arm"].to_list(), cfg),
                               out / "auroc_vs_scale.png", baseline_curves(an, rd),
                               auroc(*oracle) if oracle else None)
    return Section("scale", "AUROC vs data scale", [
        ("img", png, "AUROC vs number of training subjects, per family (grey: baselines fitted on the same "
                     "number of subjects, scored on the same test subjects; dotted: chance 0.5; dashed: "
                     + ("the oracle on the same test subjects)" if oracle else "no oracle in this run directory)")),
        *budget])


def baseline_curves(an: Analysis, rd: RunDir, models: tuple[str, ...] = ("lr", "lightgbm")) -> dict:
    """``{model: [(scale, AUROC on the language models' test subjects)]}`` for baselines with numeric scales."""
    rep_ref = next(iter(an.representative.get("runs", {}).values()), None)
    test_ids = an.scores[rep_ref]["subject_id"].to_list() if rep_ref in an.scores else None
    curves: dict[str, list] = {}
    for scale, preds in read_baselines(rd).items():
        for model in (m for m in models if m in preds):
            p = preds[model] if test_ids is None else preds[model].filter(pl.col("subject_id").is_in(test_ids))
            y = p["boolean_value"].cast(pl.Boolean).to_numpy()
            if scale.replace(".", "", 1).isdigit() and 0 < y.sum() < y.size:
                s = p["predicted_boolean_probability"].cast(pl.Float64).to_numpy()
                curves.setdefault(model, []).append((float(scale), auroc(y, s)))
    return {m: pts for m, pts in curves.items() if len(pts) >= 2}


def curves_section(an: Analysis, cfg: ReportConfig, rd: RunDir, out: Path) -> Section:
    """ROC and reliability curves, ECE and subgroup AUROC for the representative configuration."""
    rep = an.representative
    if not rep:
        return Section("curves", "ROC and calibration", [("absent", "No fine-tuned runs to draw curves for.")])
    title = ", ".join(f"{k}={v}" for k, v in rep["keys"].items())
    arms = arm_order(list(rep["runs"]), cfg)
    curves = {a: _ys(an.scores[rep["runs"][a]]) for a in arms if rep["runs"][a] in an.scores}
    blocks: list[tuple] = [("p", f"Representative configuration: {title} (largest scale; first family, model and "
                                 "seed). Every arm is scored on the same test subjects."),
                           ("img", figures.roc_curves(curves, arms, title, out / "roc.png", an.oracle),
                            "ROC curves per arm, with chance (diagonal) and the oracle (true risk, dashed) on the "
                            "same test subjects"),
                           ("img", figures.calibration(curves, arms, cfg.n_bins, title, out / "calibration.png"),
                            "Reliability curves per arm (equal-mass bins)")]
    blocks.append(("table", _ece_table(an, rep, arms), "ECE with equal-width and equal-mass bins "
                                                        f"({cfg.n_bins} bins), representative configuration."))
    blocks += _subgroup_blocks(curves, an, rep, rd, cfg)
    return Section("curves", "ROC and calibration", blocks)


def _ys(scores: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return scores["label"].cast(pl.Boolean).to_numpy(), scores["p_yes"].cast(pl.Float64).to_numpy()


def _ece_table(an: Analysis, rep: dict, arms: list[str]) -> pl.DataFrame:
    runs = an.runs.filter(pl.col("run_id").is_in([rep["runs"][a] for a in arms]))
    order = {rep["runs"][a]: i for i, a in enumerate(arms)}
    runs = runs.sort(pl.col("run_id").replace_strict(order, return_dtype=pl.Int64))
    return pl.DataFrame({"arm": runs["arm"], "n": runs["n_test"].cast(pl.String),
                         "AUROC [bootstrap CI]": [fmt_ci(*r) for r in
                                                  zip(runs["auroc"], runs["auroc_lo"], runs["auroc_hi"])],
                         "ECE equal width": [fmt(x) for x in runs["ece_uniform"]],
                         "ECE equal mass": [fmt(x) for x in runs["ece_quantile"]]})


def _subgroup_blocks(curves: dict, an: Analysis, rep: dict, rd: RunDir, cfg: ReportConfig) -> list[tuple]:
    labels = read_labels(rd)
    if labels is None or not {"age", "sex"} <= set(labels.columns):
        return [("absent", "No labelled cohort with age and sex in index.json ('labels'): AUROC by age band and "
                           "sex is not shown.")]
    tables = []
    first = an.scores[rep["runs"][next(iter(curves))]].join(labels.select("subject_id", "age"), on="subject_id",
                                                            how="left")
    edges, span = (cfg.age_edges, None) if cfg.age_edges else cohort_age_edges(
        first["age"].cast(pl.Float64).fill_null(np.nan).to_numpy())
    for arm in curves:
        s = an.scores[rep["runs"][arm]].join(labels.select("subject_id", "age", "sex"), on="subject_id", how="left")
        y, p = _ys(s)
        ages = age_bands(s["age"].cast(pl.Float64).fill_null(np.nan).to_numpy(), edges, span)
        for name, groups, order in (("age", ages, band_names(edges, span)),
                                    ("sex", s["sex"].fill_null("unknown").to_numpy(), None)):
            t = auroc_by_group(y, p, groups, order).with_columns(pl.lit(name).alias("by"), pl.lit(arm).alias("arm"))
            tables.append(t)
    long = pl.concat(tables).with_columns((pl.col("by") + " " + pl.col("group")).alias("group"))
    wide = long.pivot("arm", index=["group", "n", "n_pos"], values="auroc")
    shown = wide.with_columns(pl.col("n").cast(pl.String), pl.col("n_pos").cast(pl.String),
                              *[pl.col(a).map_elements(fmt, return_dtype=pl.String) for a in curves])
    bands = (f"age bands cut at report.age_edges {list(edges)}" if cfg.age_edges else
             f"age bands: quartiles of the test subjects' ages in whole years, within their range {span[0]:g}-"
             f"{span[1]:g}")
    return [("table", shown, "AUROC by age band and sex per arm, representative configuration (same subjects for "
                             f"every arm; {bands}; no interval; a group with one class shows a dash).")]


def fewshot_section(an: Analysis, cfg: ReportConfig, out: Path) -> Section:
    """Few-shot arms next to the fine-tuned arms of the same models."""
    fs = an.runs.filter(pl.col("arm").str.starts_with("fewshot"))
    if not fs.height:
        return Section("fewshot", "Few-shot vs fine-tuned", [("absent", "No few-shot runs in this grid "
                                                                         "(arms named fewshot_*): section absent.")])
    key = "model" if "model" in an.runs.columns else "family"
    models = sorted(set(fs[key].cast(pl.String).to_list()))
    arms = arm_order(an.runs["arm"].to_list(), cfg)
    wide = (an.runs.filter(pl.col(key).cast(pl.String).is_in(models)).group_by(pl.col(key).cast(pl.String), "arm")
            .agg(pl.col("auroc").mean()).pivot("arm", index=key, values="auroc").sort(key))
    wide = wide.select(key, *[a for a in arms if a in wide.columns])
    shown = wide.with_columns([pl.col(a).map_elements(fmt, return_dtype=pl.String) for a in wide.columns[1:]])
    png = figures.bars(wide, key, wide.columns[1:], "mean AUROC", out / "fewshot_vs_finetuned.png",
                       auroc(*an.oracle) if an.oracle else None)
    return Section("fewshot", "Few-shot vs fine-tuned", [
        ("table", shown, f"Mean AUROC per {key} and arm (few-shot arms: untrained model with in-context "
                         "demonstrations, scored on " + _subset_text(fs) + "; fine-tuned arms averaged over scales "
                         "and seeds)."),
        ("img", png, "Mean AUROC of few-shot and fine-tuned arms per model (dotted: chance 0.5; dashed: the oracle "
                     "on the fine-tuned runs' test subjects)"), *_demo_blocks(an, fs, cfg, an.gates)])


def _subset_text(fs: pl.DataFrame) -> str:
    lo, hi = int(fs["n_test"].min()), int(fs["n_test"].max())
    return f"{lo} test subjects" if lo == hi else f"{lo}-{hi} test subjects"


def _demo_blocks(an: Analysis, fs: pl.DataFrame, cfg: ReportConfig, gates: pl.DataFrame | None = None) -> list[tuple]:
    """Rationale demonstrations vs label-only demonstrations, paired by model, seed and k on the test subjects
    that both runs scored (few-shot runs may score a fixed subset of the test set); not evaluable when a
    few-shot quality gate fails."""
    ref = "fewshot_label_only"
    if ref not in set(fs["arm"].to_list()) or fs["arm"].n_unique() < 2:
        return [("absent", f"No paired few-shot comparison: needs {ref!r} and a rationale-demonstration arm.")]
    failed = failed_gates(gates, sorted(set(fs["arm"].to_list()))) if gates is not None and gates.height else []
    if failed:
        return [("p", "Rationale demonstrations vs label-only demonstrations: not evaluable. Failed quality gates: "
                      f"{describe(failed)}.")]
    keys = tuple(k for k in ("family", "size", "model", "base", "seed", "k_shot", "hidden_share") if k in fs.columns)
    d = paired_deltas(fs, ref, keys=keys)
    sft = an.runs.filter(~pl.col("arm").str.starts_with("fewshot"))
    n_test = int(sft["n_test"].max()) if sft.height else None
    rows, texts = [], []
    for pair in d.sort("arm", *keys).iter_rows(named=True):
        j = _paired_scores(an, [(pair["run_id"], pair["run_id_ref"])])
        t = delong_test(j[0], j[1][0], j[2][0], cfg.level) if j else None
        rows.append({"arm": pair["arm"], **{k: fmt_level(pair[k]) for k in keys},
                     "paired subjects": str(j[0].size) if j else "0", "cases": str(int(j[0].sum())) if j else "0",
                     "Delta AUROC [DeLong CI]": fmt_ci(t["diff"], t["lo"], t["hi"]) if t else "–",
                     "DeLong p": fmt_p(t["p"]) if t else "–"})
    for arm in sorted(set(d["arm"].to_list())):
        sub = d.filter(pl.col("arm") == arm)
        j = _paired_scores(an, list(zip(sub["run_id"], sub["run_id_ref"])))
        if j is None:
            continue
        r = two_level_bootstrap(*j, rng(cfg.seed, f"fewshot_pairs/{arm}"), cfg.n_boot, cfg.level)
        texts.append(f"{arm} - {ref}: mean Delta AUROC {fmt_ci(r['mean'], r['lo'], r['hi'])} over {r['n_configs']} "
                     f"pair(s) on the {r['n_subjects']} test subjects every run of the comparison scored"
                     + (f" (of {n_test})" if n_test else ""))
    caption = (f"Per pair (same model, seed and k), on the test subjects both runs scored: Delta AUROC with the "
               f"paired DeLong {cfg.level:.0%} CI and p. Pooled over pairs: {pooled_method(cfg)}.")
    return [("p", "Rationale demonstrations vs label-only demonstrations (the study found rationales help as "
                  f"demonstrations), paired by {', '.join(keys)} and on the same test subjects: "
                  + ("; ".join(texts) if texts else "no pair shares subjects of both classes") + "."),
            ("table", pl.DataFrame(rows), caption)]


def _paired_scores(an: Analysis, pairs: list[tuple[str, str]]):
    """(labels, arm scores (C, n), reference scores (C, n)) on the subjects every run of ``pairs`` scored, or
    None when those subjects lack a class or a run has no scores."""
    runs = [r for pair in pairs for r in pair]
    if any(r not in an.scores for r in runs):
        return None
    common = an.scores[runs[0]].select("subject_id", "label")
    for r in runs[1:]:
        common = common.join(an.scores[r].select("subject_id"), on="subject_id", how="semi")
    common = common.sort("subject_id")
    y = common["label"].cast(pl.Boolean).to_numpy()
    if not 0 < y.sum() < y.size:
        return None

    def mat(ids):
        return np.stack([common.join(an.scores[r].select("subject_id", "p_yes"), on="subject_id", how="left",
                                     maintain_order="left")["p_yes"].cast(pl.Float64).to_numpy() for r in ids])
    return y, mat([a for a, _ in pairs]), mat([b for _, b in pairs])


def baselines_section(an: Analysis, cfg: ReportConfig, rd: RunDir) -> Section:
    """Classical baselines and the oracle, restricted to the subjects the language models were scored on."""
    preds = read_baselines(rd)
    if not preds:
        return Section("baselines", "Baselines and oracle", [("absent", "No baselines in index.json ('baselines'): "
                                                                         "section absent.")])
    rep_ref = an.representative.get("runs", {}).get(cfg.reference_arm)
    test_ids = an.scores[rep_ref]["subject_id"] if rep_ref in an.scores else None
    rows = []
    for scale, models in preds.items():
        ref_mean = _ref_mean(an, cfg, scale)
        for model, p in models.items():
            rows.append(_baseline_row(scale, model, p, test_ids, ref_mean, an, rep_ref, cfg))
    return Section("baselines", "Baselines and oracle", [
        ("table", pl.DataFrame(rows), f"Held-out subjects that the language models were scored on; bootstrap "
                                      f"{cfg.level:.0%} CI ({cfg.n_boot} replicates, seed {cfg.seed}); oracle = "
                                      "true risk of the generative process (synthetic data only). The DeLong "
                                      "column compares the representative label-only run with each baseline.")])


def _ref_mean(an: Analysis, cfg: ReportConfig, scale: str):
    if "scale" not in an.runs.columns:
        return None
    sub = an.runs.filter((pl.col("arm") == cfg.reference_arm) & (pl.col("scale").cast(pl.String) == str(scale)))
    return float(sub["auroc"].mean()) if sub.height else None


def _baseline_row(scale, model, p, test_ids, ref_mean, an, rep_ref, cfg) -> dict:
    if test_ids is not None:
        p = p.filter(pl.col("subject_id").is_in(test_ids.to_list()))
    y = p["boolean_value"].cast(pl.Boolean).to_numpy()
    s = p["predicted_boolean_probability"].cast(pl.Float64).to_numpy()
    boot = bootstrap_table(y, s, seed=cfg.seed, n_boot=cfg.n_boot, level=cfg.level)
    t = {r["metric"]: r for r in boot.iter_rows(named=True)}
    vs = "–"
    if rep_ref in an.scores:
        j = an.scores[rep_ref].select("subject_id", "label", "p_yes").join(
            p.select("subject_id", "predicted_boolean_probability"), on="subject_id", how="inner")
        d = delong_test(j["label"].cast(pl.Boolean).to_numpy(), j["p_yes"].to_numpy(),
                        j["predicted_boolean_probability"].to_numpy(), cfg.level)
        vs = f"{d['diff']:+.3f} (p {fmt_p(d['p'])})"
    return {"scale": str(scale), "model": model, "n": str(y.size), "n_pos": str(int(y.sum())),
            "AUROC [CI]": fmt_ci(t["auroc"]["estimate"], t["auroc"]["lo"], t["auroc"]["hi"]),
            "AUPRC [CI]": fmt_ci(t["auprc"]["estimate"], t["auprc"]["lo"], t["auprc"]["hi"]),
            f"{cfg.reference_arm} mean AUROC at this scale": fmt(ref_mean),
            "label-only run minus baseline (DeLong)": vs}


def _cap(table: pl.DataFrame, cfg: ReportConfig) -> pl.DataFrame:
    return table.head(cfg.max_rows)


def _capped(caption: str, table: pl.DataFrame, cfg: ReportConfig) -> str:
    if table.height <= cfg.max_rows:
        return caption
    return (f"{caption} First {cfg.max_rows} of {table.height} rows (report.max_rows); all are in results.parquet "
            "and stats.json.")
