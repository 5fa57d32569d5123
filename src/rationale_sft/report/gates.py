"""Quality gates: can the students do what the comparison assumes? Per run and per arm, and what the verdict may say.

A comparison of a rationale arm with label-only SFT tests the study's claim only if the rationale students
write what the teacher writes and the label-only students learn the task; the few-shot comparison only if
the model answers at all. The gates (thresholds in ``ReportConfig``):

- every rationale-arm run (an arm scored after a generated rationale): answer marker reached, label mass
  after the rationale, grounding of the generated claims, age and sex stated correctly, loops;
- the reference arm at the largest scale, per model: mean AUROC minus the LR baseline's mean AUROC (the
  baselines job of the same scale and seed, on the run's test subjects), and minus the AUROC of the
  number of history lines (``n_history_items`` of the rendered examples);
- every few-shot run: mean label mass at the answer slot, share of prompts truncated.

A gate is ``passed`` True or False; null ("not measured") when its input is absent from the run directory
(a results.parquet written before the gate existed, no baselines, no examples). A run the gate applies to
whose value is null fails it.

>>> runs = pl.DataFrame({"run_id": ["a"], "arm": ["freeform"], "model": ["m"], "scale": [900], "seed": [0],
...                      "marker_found_rate": [0.5], "mean_label_mass": [0.95], "gen_loop_rate": [0.0]})
>>> t = gate_table(runs, ReportConfig(), {})
>>> dict(zip(t["gate"], t["passed"]))
{'marker': False, 'label_mass': True, 'grounding': None, 'age_correct': None, 'sex_correct': None, 'loops': True}
>>> [(f["gate"], f["worst"], f["threshold"], f["n_failed"]) for f in failed_gates(t, ["freeform"])]
[('marker', 0.5, 0.95, 1)]
"""

from __future__ import annotations

import polars as pl

from rationale_sft.config.report import ReportConfig
from rationale_sft.report.load import FEWSHOT_PREFIX, RunDir
from rationale_sft.report.render import Section, fmt

RATIONALE_GATES = {  # gate: (results column, comparison, ReportConfig field)
    "marker": ("marker_found_rate", ">=", "gate_marker_rate"),
    "label_mass": ("mean_label_mass", ">=", "gate_label_mass"),
    "grounding": ("gen_grounding_rate", ">=", "gate_grounding"),
    "age_correct": ("gen_age_correct_rate", ">=", "gate_age_correct"),
    "sex_correct": ("gen_sex_correct_rate", ">=", "gate_sex_correct"),
    "loops": ("gen_loop_rate", "<=", "gate_loop_rate"),
}
CONTENT_GATES = ("grounding", "age_correct", "sex_correct")
"Gates that check a generated rationale's facts against the test subject's own record."
NOT_APPLICABLE = {"shuffled_rationale": CONTENT_GATES, "padded_label_only": CONTENT_GATES + ("loops",)}
"""Gates that do not apply to a control, because what they measure is its manipulation: shuffled_rationale is
trained to write another subject's rationale (its facts are wrong by design), padded_label_only to write
neutral padding (no facts, one unit repeated). The marker and label-mass gates apply to both."""
FEWSHOT_GATES = {
    "fewshot_label_mass": ("mean_label_mass", ">=", "gate_fewshot_label_mass"),
    "truncated": ("truncated_rate", "<=", "gate_fewshot_truncated"),
}
REFERENCE_GATES = {  # gate: (reference AUROC key, ReportConfig field); value = mean AUROC - mean reference
    "auroc_vs_lr": ("lr", "gate_lr_margin"),
    "auroc_vs_lines": ("lines", "gate_lines_margin"),
}
GROUP_KEYS = ("family", "size", "model", "base", "hidden_share")
SCHEMA = {"run_id": pl.String, "arm": pl.String, "model": pl.String, "scale": pl.Int64, "seed": pl.Int64,
          "gate": pl.String, "value": pl.Float64, "op": pl.String, "threshold": pl.Float64, "passed": pl.Boolean,
          "auroc": pl.Float64, "reference_auroc": pl.Float64}
LABELS = {"marker": "answer marker reached", "label_mass": "label mass after the rationale",
          "grounding": "generated claims grounded", "age_correct": "age stated correctly",
          "sex_correct": "sex stated correctly", "loops": "generations that loop",
          "fewshot_label_mass": "label mass at the answer slot", "truncated": "prompts truncated",
          "auroc_vs_lr": "mean AUROC minus LR AUROC", "auroc_vs_lines": "mean AUROC minus line-count AUROC"}


def generates(arm: str) -> bool:
    """Whether an arm is scored after a generated rationale (``weighted_x5`` is the weighted arm).

    >>> generates("freeform"), generates("weighted_x5"), generates("label_only"), generates("fewshot_freeform")
    (True, True, False, False)
    """
    from rationale_sft.train.arms import SCORING

    return not arm.startswith(FEWSHOT_PREFIX) and SCORING.get(arm.split("_x")[0]) == "generate"


def rationale_gates(arm: str) -> dict:
    """The gates of a generating arm: RATIONALE_GATES less those NOT_APPLICABLE to it.

    >>> list(rationale_gates("shuffled_rationale")), list(rationale_gates("padded_label_only"))
    (['marker', 'label_mass', 'loops'], ['marker', 'label_mass'])
    >>> len(rationale_gates("freeform"))
    6
    """
    skip = NOT_APPLICABLE.get(arm, ())
    return {g: v for g, v in RATIONALE_GATES.items() if g not in skip}


def passes(value: float | None, op: str, threshold: float) -> bool:
    """Whether a gate's value meets its threshold (a missing value does not).

    >>> passes(0.95, ">=", 0.95), passes(0.06, "<=", 0.05), passes(None, ">=", 0.5)
    (True, False, False)
    """
    if value is None or value != value:
        return False
    return value >= threshold if op == ">=" else value <= threshold


def gate_table(runs: pl.DataFrame, cfg: ReportConfig, refs: dict[str, dict]) -> pl.DataFrame:
    """One row per run x gate (``SCHEMA``); the reference arm's gates are one row per model (run_id, seed null;
    ``auroc`` and ``reference_auroc`` the two means whose difference is the value).

    ``runs``: results rows (``auroc`` recomputed); ``refs``: ``{run_id: {"lr": AUROC, "lines": AUROC}}``
    for reference-arm runs, on each run's test subjects.
    """
    rows = []
    for r in runs.sort("run_id").iter_rows(named=True):
        gates = rationale_gates(r["arm"]) if generates(r["arm"]) else FEWSHOT_GATES \
            if r["arm"].startswith(FEWSHOT_PREFIX) else {}
        for gate, (col, op, field) in gates.items():
            rows.append(_row(r, gate, r.get(col), op, getattr(cfg, field), col in runs.columns))
    rows += reference_rows(runs, cfg, refs)
    return pl.DataFrame(rows, schema=SCHEMA)


def _row(r: dict, gate: str, value, op: str, threshold: float, measured: bool) -> dict:
    value = None if value is None or value != value else float(value)
    return {"run_id": r.get("run_id"), "arm": r["arm"], "model": r.get("model"), "scale": r.get("scale"),
            "seed": r.get("seed"), "gate": gate, "value": value, "op": op, "threshold": threshold,
            "passed": passes(value, op, threshold) if measured else None}


def reference_rows(runs: pl.DataFrame, cfg: ReportConfig, refs: dict[str, dict]) -> list[dict]:
    """The reference arm's gates at its largest scale, one row per model (GROUP_KEYS) and gate."""
    ref = runs.filter(pl.col("arm") == cfg.reference_arm)
    if not ref.height or "scale" not in ref.columns or ref["scale"].drop_nulls().is_empty():
        return []
    ref = ref.filter(pl.col("scale") == ref["scale"].max())
    keys = [k for k in GROUP_KEYS if k in ref.columns]
    out = []
    for _, part in sorted(ref.group_by(keys, maintain_order=True), key=lambda kv: str(kv[0])) if keys else \
            [((), ref)]:
        first = part.row(0, named=True)
        aurocs = dict(zip(part["run_id"].to_list(), part["auroc"].to_list()))
        for gate, (key, field) in REFERENCE_GATES.items():
            # runs without a reference AUROC (no baselines for their seed) are left out of both means
            pairs = [(aurocs[rid], refs[rid][key]) for rid in sorted(aurocs)
                     if aurocs[rid] is not None and refs.get(rid, {}).get(key) is not None]
            own, other = (sum(x for x, _ in pairs) / len(pairs), sum(y for _, y in pairs) / len(pairs)) if pairs \
                else (None, None)
            row = _row({**first, "run_id": None, "seed": None}, gate, None if own is None else own - other, ">=",
                       getattr(cfg, field), bool(pairs))
            out.append({**row, "auroc": own, "reference_auroc": other})
    return out


def failed_gates(table: pl.DataFrame, arms: list[str]) -> list[dict]:
    """The failed gates of ``arms``: per arm and gate the worst value, the threshold and how many runs failed."""
    out = []
    part = table.filter(pl.col("arm").is_in(arms) & pl.col("passed").is_not_null())
    order = [*RATIONALE_GATES, *FEWSHOT_GATES, *REFERENCE_GATES]
    for (arm, gate), g in sorted(part.group_by("arm", "gate"), key=lambda kv: (arms.index(kv[0][0]),
                                                                                order.index(kv[0][1]))):
        bad = g.filter(~pl.col("passed"))
        if bad.height:
            op = g["op"][0]
            vals = bad["value"].drop_nulls()
            worst = None if vals.len() < bad.height else float(vals.min() if op == ">=" else vals.max())
            out.append({"arm": arm, "gate": gate, "worst": worst, "op": op, "threshold": float(g["threshold"][0]),
                        "n_failed": bad.height, "n_runs": g.height,
                        "unit": "models" if g["run_id"].null_count() == g.height else "runs"})
    return out


def not_measured(table: pl.DataFrame, arms: list[str]) -> list[str]:
    """Gates of ``arms`` that could not be measured (sorted names)."""
    part = table.filter(pl.col("arm").is_in(arms) & pl.col("passed").is_null())
    return sorted(set(part["gate"].to_list()))


def describe(failed: list[dict]) -> str:
    """Failed gates in words.

    >>> describe([{"arm": "freeform", "gate": "marker", "worst": 0.27, "op": ">=", "threshold": 0.95,
    ...            "n_failed": 3, "n_runs": 4, "unit": "runs"}])
    'freeform: answer marker reached 0.270 (needs >= 0.950; 3 of 4 runs fail)'
    """
    return "; ".join(f"{f['arm']}: {LABELS.get(f['gate'], f['gate'])} "
                     f"{'missing' if f['worst'] is None else fmt(f['worst'])} (needs {f['op']} "
                     f"{fmt(f['threshold'])}; {f['n_failed']} of {f['n_runs']} {f['unit']} fail)" for f in failed)


def gated_verdict(verdict: dict, table: pl.DataFrame, cfg: ReportConfig) -> dict:
    """The verdict with every comparison whose arm or reference fails a gate called "not evaluable".

    The overall call is "not evaluable" when any judged arm is; unmeasured gates are listed, not judged.
    ``fewshot_failed_gates`` lists the few-shot gates that fail (the few-shot comparison is then not evaluable).
    """
    out = {**verdict, "arms": {}, "gates_not_measured": not_measured(table, [cfg.reference_arm, *verdict["arms"]])}
    for arm, a in verdict["arms"].items():
        failed = failed_gates(table, [arm, cfg.reference_arm])
        out["arms"][arm] = {**a, "failed_gates": failed, **({"call": "not evaluable"} if failed else {})}
    fewshot = sorted({a for a in table["arm"].to_list() if a.startswith(FEWSHOT_PREFIX)}) if table.height else []
    out["fewshot_failed_gates"] = failed_gates(table, fewshot)
    if any(a["call"] == "not evaluable" for a in out["arms"].values()):
        out["overall"] = "not evaluable"
    out["rule"] = (verdict["rule"] + "; not evaluable: the arm or the reference fails a quality gate (the "
                   "comparison then says nothing about the study's claim)")
    return out


def reference_aurocs(rd: RunDir, runs: pl.DataFrame, scores: dict[str, pl.DataFrame], cfg: ReportConfig) -> dict:
    """``{run_id: {"lr": AUROC, "lines": AUROC}}`` for reference-arm runs, on each run's own test subjects.

    LR: the baselines job of the run's scale and seed (``index.json`` ``baselines_by_seed["<scale>/<seed>"]``);
    lines: ``n_history_items`` of the rendered examples (``index.json`` ``examples``).
    """
    from rationale_sft.report.load import read_examples
    from rationale_sft.stats import auroc

    examples = read_examples(rd)
    lines = None if examples is None or "n_history_items" not in examples.columns else \
        examples.unique("subject_id", keep="first", maintain_order=True).select("subject_id", "n_history_items")
    out = {}
    for r in runs.filter(pl.col("arm") == cfg.reference_arm).iter_rows(named=True):
        s = scores.get(r["run_id"])
        if s is None:
            continue
        y = s.select("subject_id", pl.col("label").cast(pl.Boolean))
        out[r["run_id"]] = {"lr": _lr_auroc(rd, r, y, auroc), "lines": _score_auroc(y, lines, "n_history_items",
                                                                                     auroc)}
    return out


def _lr_auroc(rd: RunDir, r: dict, y: pl.DataFrame, auroc) -> float | None:
    rel = (rd.index.get("baselines_by_seed") or {}).get(f"{r.get('scale')}/{r.get('seed')}")
    path = rd.path(rel) / "predictions" / "lr.parquet" if isinstance(rel, str) else None
    if path is None or not path.is_file():
        return None
    preds = pl.read_parquet(path).select("subject_id", pl.col("predicted_boolean_probability").cast(pl.Float64))
    return _score_auroc(y, preds, "predicted_boolean_probability", auroc)


def _score_auroc(y: pl.DataFrame, table: pl.DataFrame | None, col: str, auroc) -> float | None:
    if table is None:
        return None
    j = y.join(table, on="subject_id", how="inner")
    if j.height < y.height or j[col].null_count() or not 0 < int(j["label"].sum()) < j.height:
        return None  # a reference that misses test subjects is not on the same subjects
    return float(auroc(j["label"].to_numpy(), j[col].cast(pl.Float64).to_numpy()))


def gates_section(an, cfg: ReportConfig) -> Section:
    """The quality-gate table per arm (value range over runs, pass/fail) and the per-run detail."""
    from rationale_sft.report.analysis import arm_order

    t = an.gates
    if t is None or not t.height:
        return Section("gates", "Quality gates", [("absent", "No rationale-arm, few-shot or reference-arm runs "
                                                             "to gate.")])
    blocks: list[tuple] = [("p", _rule_text(cfg))]
    for arm in arm_order(t["arm"].to_list(), cfg):
        blocks.append(("table", arm_gate_table(t.filter(pl.col("arm") == arm)), f"Gates of {arm} (n = "
                       + ("models at the largest scale; value = difference of mean AUROCs"
                          if arm == cfg.reference_arm else "runs") + ")."))
        blocks += _reference_text(t, cfg) if arm == cfg.reference_arm else []
    n_runs = t["run_id"].drop_nulls().n_unique()
    if n_runs:
        shown = min(n_runs, cfg.max_rows)
        blocks.append(("details", f"Per-run gate values ({n_runs} runs{'' if shown == n_runs else f', first {shown}'})",
                       run_gate_table(an.runs, t, cfg), "Marked ✗: fails its threshold; –: not measured or not "
                       "applicable. marker = marker_found_rate, label_mass = mean_label_mass (results.parquet); "
                       "all rows are in stats.json ('gates')."))
    return Section("gates", "Quality gates", blocks)


def _reference_text(t: pl.DataFrame, cfg: ReportConfig) -> list[tuple]:
    ref = t.filter(pl.col("run_id").is_null() & pl.col("reference_auroc").is_not_null())
    by_model: dict[tuple, dict] = {}
    for r in ref.iter_rows(named=True):
        by_model.setdefault((r["model"] or "all", r["scale"]), {"auroc": r["auroc"]})[r["gate"]] = r["reference_auroc"]
    names = {"auroc_vs_lr": "LR", "auroc_vs_lines": "history-line count"}
    texts = [f"{model} at scale {scale}: mean AUROC {fmt(v['auroc'])} vs "
             + " and ".join(f"{names[g]} {fmt(v[g])}" for g in names if g in v)
             for (model, scale), v in by_model.items()]
    return [("p", f"{cfg.reference_arm} on the same test subjects: " + "; ".join(texts) + ".")] if texts else []


def arm_gate_table(t: pl.DataFrame) -> pl.DataFrame:
    """Per gate of one arm: rule, runs, value range and pass/fail."""
    rows = []
    for gate in dict.fromkeys(t["gate"].to_list()):
        g = t.filter(pl.col("gate") == gate)
        vals = g["value"].drop_nulls()
        n_bad = int((~g["passed"]).sum()) if g["passed"].null_count() < g.height else None
        rng = "–" if vals.is_empty() else fmt(vals.min()) if vals.n_unique() == 1 else \
            f"{fmt(vals.min())} – {fmt(vals.max())}"
        rows.append({"gate": gate, "what": LABELS.get(gate, gate), "rule": f"{g['op'][0]} {fmt(g['threshold'][0])}",
                     "n": str(g.height), "value (min – max)": rng,
                     "result": "not measured" if n_bad is None else "pass" if n_bad == 0
                     else f"FAIL ({n_bad} of {g.height})"})
    return pl.DataFrame(rows)


def run_gate_table(runs: pl.DataFrame, t: pl.DataFrame, cfg: ReportConfig) -> pl.DataFrame:
    """One row per gated run: its keys, steps and tokens, and each gate's value (✗ when it fails)."""
    from rationale_sft.report.analysis import arm_order

    per_run = t.filter(pl.col("run_id").is_not_null())
    mark = pl.when(pl.col("value").is_null()).then(pl.lit("–")).otherwise(
        pl.col("value").map_elements(fmt, return_dtype=pl.String)
        + pl.when(pl.col("passed").not_()).then(pl.lit(" ✗")).otherwise(pl.lit("")))
    wide = per_run.with_columns(mark.alias("cell")).pivot("gate", index="run_id", values="cell",
                                                           sort_columns=False)
    extra = [c for c in ("model", "scale", "seed", "train_steps", "train_tokens") if c in runs.columns]
    keys = runs.select("run_id", "arm", *[pl.col(c).cast(pl.String) for c in extra])
    order = {a: i for i, a in enumerate(arm_order(keys["arm"].to_list(), cfg))}
    table = keys.join(wide, on="run_id", how="inner").with_columns(
        pl.col("arm").replace_strict(order, default=len(order)).alias("_o")).sort("_o", *extra, "run_id").drop("_o")
    return table.fill_null("–").head(cfg.max_rows)


def _rule_text(cfg: ReportConfig) -> str:
    return (f"A comparison tests the study's claim only when both sides can do the task. Every rationale-arm run "
            f"must reach the answer marker for >= {cfg.gate_marker_rate:.0%} of test subjects, put >= "
            f"{cfg.gate_label_mass:g} mean probability on the two label words after its rationale, have >= "
            f"{cfg.gate_grounding:.0%} of its generated claims grounded by the rationale checker, state age and sex "
            f"correctly for >= {cfg.gate_age_correct:.0%} / {cfg.gate_sex_correct:.0%} of subjects and loop in <= "
            f"{cfg.gate_loop_rate:.0%} of generations (shuffled_rationale, trained to write another subject's "
            "rationale, is held to the marker, label-mass and loop gates only, and padded_label_only, trained to "
            f"write neutral padding, to the marker and label-mass gates only). The reference arm ({cfg.reference_arm}) "
            "at the largest scale "
            f"must have mean AUROC >= the LR baseline's (same training and test subjects) + {cfg.gate_lr_margin:g} "
            f"and >= the AUROC of the number of history lines + {cfg.gate_lines_margin:g}. Few-shot runs must put "
            f">= {cfg.gate_fewshot_label_mass:g} mean probability on the label words with <= "
            f"{cfg.gate_fewshot_truncated:.0%} of prompts truncated. A comparison with a failing gate on either "
            "side is not evaluable.")


__all__ = ["RATIONALE_GATES", "FEWSHOT_GATES", "REFERENCE_GATES", "generates", "passes", "gate_table",
           "reference_rows", "failed_gates", "not_measured", "describe", "gated_verdict", "reference_aurocs",
           "gates_section", "arm_gate_table", "run_gate_table"]
