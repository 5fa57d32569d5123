"""The Mechanism section: why rationale SFT loses to (or matches) label-only SFT, from the controls and mitigations.

Three explanations, each read off paired comparisons with the plain freeform arm (docs/arms.md says what each
arm isolates):

- **dilution**: the label's few tokens get a tiny share of the gradient, or their gradient conflicts with the
  rationale's. Supported when a mitigation (segment_norm, answer_stage, weighted) discriminates better than
  freeform *and* the freeform runs' gradient cosine is negative or the label's gradient share tiny.
- **content**: what the rationale says matters. Supported when a content control (shuffled_rationale,
  flipped_rationale) discriminates differently from freeform.
- **format**: the long target itself costs, whatever it says. Supported when padded_label_only and
  blind_rationale are close to freeform (the whole interval within ``report.mechanism_margin``).

A comparison whose arm or freeform fails a quality gate is "not evaluable" and supports nothing. Every
number is recomputed from the run directory's files: train_log.parquet (gradient cosine and norm ratio at
measured steps), grad_conflict.parquet (the label gradient share), probe_layers.parquet and samples.parquet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.config.report import ReportConfig
from rationale_sft.report import figures
from rationale_sft.report.analysis import Analysis, arm_order, pooled_method
from rationale_sft.report.gates import describe, failed_gates
from rationale_sft.report.load import RunDir
from rationale_sft.report.render import Section, fmt, fmt_ci
from rationale_sft.seeding import rng
from rationale_sft.stats import auroc, paired_deltas, pooled_interval, t_interval
from rationale_sft.tables import read_parquet

FREEFORM = "freeform"
ISOLATES = {"label_only": "no rationale (the reference)", "shuffled_rationale": "content: another same-label subject's "
            "rationale", "flipped_rationale": "content: a rationale arguing the opposite label",
            "blind_rationale": "format: a rationale written without the label", "padded_label_only": "format: neutral "
            "padding as long as the rationale", "segment_norm": "dilution: label and rationale means weigh 1:1",
            "answer_stage": "dilution: last steps train the label only",
            "weighted": "dilution: label tokens weigh more"}
GROUPS = {"dilution": ("segment_norm", "answer_stage", "weighted"),
          "content": ("shuffled_rationale", "flipped_rationale"), "format": ("padded_label_only", "blind_rationale")}


def base_arm(arm: str) -> str:
    """The arm without its label-weight level (``weighted_x5`` is the weighted arm).

    >>> base_arm("weighted_x5"), base_arm("segment_norm"), base_arm("label_only")
    ('weighted', 'segment_norm', 'label_only')
    """
    return arm.split("_x")[0]


def call(row: dict, margin: float) -> str:
    """A Delta AUROC (arm - comparator) in words: higher or lower when its interval excludes 0, close when it lies
    within +/- ``margin``, unclear otherwise; not evaluable when a gate fails on either side.

    >>> [call({"lo": a, "hi": b, "failed": f}, 0.02) for a, b, f in
    ...  [(0.01, 0.05, []), (-0.05, -0.01, []), (-0.01, 0.015, []), (-0.04, 0.03, []), (0.1, 0.2, [{"g": 1}])]]
    ['higher', 'lower', 'close', 'unclear', 'not evaluable']
    """
    if row["failed"]:
        return "not evaluable"
    if row["lo"] is None or np.isnan(row["lo"]):
        return "unclear"
    if row["lo"] > 0:
        return "higher"
    if row["hi"] < 0:
        return "lower"
    return "close" if -margin <= row["lo"] and row["hi"] <= margin else "unclear"


def comparisons(an: Analysis, cfg: ReportConfig) -> pl.DataFrame:
    """Delta AUROC of every mechanism arm (and label_only) vs freeform, and of every arm vs label_only: paired on
    the same configuration and test subjects, mean over configurations with the two-level bootstrap interval."""
    sft = an.runs.filter(~pl.col("arm").str.starts_with("fewshot"))
    present = set(sft["arm"].to_list())
    rows = []
    for ref in (FREEFORM, "label_only"):
        if ref not in present:
            continue
        deltas = paired_deltas(sft, ref)
        for arm in arm_order(deltas["arm"].to_list(), cfg):
            if base_arm(arm) not in ISOLATES and arm != FREEFORM:
                continue
            d = deltas.filter(pl.col("arm") == arm)
            mean, lo, hi = _interval(d, an, cfg, f"mechanism/{arm}/{ref}")
            row = {"arm": arm, "versus": ref, "n": d.height, "mean": mean, "lo": lo, "hi": hi,
                   "failed": failed_gates(an.gates, [arm, ref]) if an.gates.height else []}
            rows.append({**row, "call": call(row, cfg.mechanism_margin)})
    return pl.DataFrame(rows, schema={"arm": pl.String, "versus": pl.String, "n": pl.Int64, "mean": pl.Float64,
                                      "lo": pl.Float64, "hi": pl.Float64, "failed": pl.Object, "call": pl.String})


def _interval(d: pl.DataFrame, an: Analysis, cfg: ReportConfig, purpose: str) -> tuple[float, float, float]:
    reps = an.replicates
    if d.height and all(r in reps for r in d["run_id"].to_list() + d["run_id_ref"].to_list()):
        diff = np.array([reps[a]["auroc"] - reps[r]["auroc"] for a, r in zip(d["run_id"], d["run_id_ref"])])
        return pooled_interval(d["delta"].to_numpy(), diff, rng(cfg.seed, purpose), cfg.level)
    return t_interval(d["delta"].to_numpy(), cfg.level)


def read_mechanism(an: Analysis, rd: RunDir) -> dict[str, pl.DataFrame]:
    """Per-run mechanism rows: ``conflict`` (step, cos, norm_ratio, label_share), ``probes`` (probe_layers rows)
    and ``k`` (AUROC of the mean risk over the first K samples), each with run_id, arm and seed."""
    from rationale_sft.score.samples import sample_metrics

    parts: dict[str, list] = {"conflict": [], "probes": [], "k": []}
    for r in an.runs.filter(~pl.col("arm").str.starts_with("fewshot")).iter_rows(named=True):
        run, keys = rd.path(r["run_path"]), {"run_id": r["run_id"], "arm": r["arm"], "seed": r.get("seed")}
        tag = lambda t: t.with_columns(*[pl.lit(v).alias(k) for k, v in keys.items()])  # noqa: E731
        if (run / "train_log.parquet").is_file():
            log = read_parquet(run / "train_log.parquet")
            if "grad_cos" in log.columns and log["grad_cos"].null_count() < log.height:
                parts["conflict"].append(tag(_conflict_rows(log, run)))
        if (run / "probe_layers.parquet").is_file():
            parts["probes"].append(tag(read_parquet(run / "probe_layers.parquet")))
        if (run / "samples.parquet").is_file() and r["run_id"] in an.scores:
            by_k = sample_metrics(an.scores[r["run_id"]], read_parquet(run / "samples.parquet"))["auroc_k"]
            parts["k"].append(tag(pl.DataFrame({"k": [int(k) for k in by_k], "auroc": list(by_k.values())},
                                               schema={"k": pl.Int64, "auroc": pl.Float64})))
    return {k: pl.concat(v, how="diagonal_relaxed") if v else pl.DataFrame() for k, v in parts.items()}


def _conflict_rows(log: pl.DataFrame, run: Path) -> pl.DataFrame:
    rows = log.filter(pl.col("grad_cos").is_not_null()).select("step", pl.col("grad_cos").alias("cos"),
                                                                pl.col("grad_norm_ratio").alias("norm_ratio"),
                                                                "label_token_share")
    path = run / "grad_conflict.parquet"
    if not path.is_file():
        return rows.with_columns(pl.lit(None, pl.Float64).alias("label_share")).drop("label_token_share")
    norms = read_parquet(path).filter(pl.col("group") == "all").select("step", "label_norm", "rationale_norm")
    s = pl.col("label_token_share")
    share = s * pl.col("label_norm") / (s * pl.col("label_norm") + (1 - s) * pl.col("rationale_norm"))
    return rows.join(norms, on="step", how="left").select("step", "cos", "norm_ratio", share.alias("label_share"))


def gradient_table(conflict: pl.DataFrame, cfg: ReportConfig) -> pl.DataFrame:
    """Per arm: runs, measured steps, mean cosine with a t-interval over measured steps, mean norm ratio and
    mean label gradient share."""
    rows = []
    for arm in arm_order(conflict["arm"].unique().to_list(), cfg):
        g = conflict.filter(pl.col("arm") == arm)
        rows.append({"arm": arm, "runs": g["run_id"].n_unique(), "steps": g.height,
                     "cos": t_interval(g["cos"].drop_nulls().to_numpy(), cfg.level),
                     "norm_ratio": g["norm_ratio"].mean(), "label_share": g["label_share"].mean()})
    return pl.DataFrame(rows, schema={"arm": pl.String, "runs": pl.Int64, "steps": pl.Int64, "cos": pl.Object,
                                      "norm_ratio": pl.Float64, "label_share": pl.Float64})


def explain(comp: pl.DataFrame, grads: pl.DataFrame, cfg: ReportConfig) -> dict[str, dict]:
    """Per explanation (dilution, content, format): a status (supported, partly supported, not supported,
    inconclusive, not evaluable, not tested) and the evidence in words."""
    vs = {r["arm"]: r for r in comp.filter(pl.col("versus") == FREEFORM).iter_rows(named=True)}
    out = {}
    for name, arms in GROUPS.items():
        rows = [vs[a] for a in vs if base_arm(a) in arms]
        judged = [r for r in rows if r["call"] != "not evaluable"]
        calls = {r["call"] for r in judged}
        evidence = "; ".join(f"{r['arm']} - freeform {fmt_ci(r['mean'], r['lo'], r['hi'])} ({r['call']})"
                             for r in rows)
        if not rows:
            status = "not tested"
        elif not judged:
            status = "not evaluable"
        elif name == "content":
            status = "supported" if calls & {"higher", "lower"} else "not supported" if calls == {"close"} \
                else "inconclusive"
        elif name == "format":
            status = "supported" if calls == {"close"} and len(judged) == len(rows) else "not supported" \
                if calls & {"higher", "lower"} else "inconclusive"
        else:
            status, evidence = _dilution(calls, grads, cfg, evidence)
        out[name] = {"status": status, "evidence": evidence}
    return out


def _dilution(calls: set[str], grads: pl.DataFrame, cfg: ReportConfig, evidence: str) -> tuple[str, str]:
    g = grads.filter(pl.col("arm") == FREEFORM) if grads.height else grads
    if not g.height:
        signal, text = None, "gradient conflict not measured in freeform"
    else:
        r = g.row(0, named=True)
        mean, lo, hi = r["cos"]
        share = r["label_share"]
        signal = (hi is not None and hi < 0) or (share is not None and share < cfg.mechanism_tiny_share)
        text = (f"freeform gradient cosine {fmt_ci(mean, lo, hi)} over {r['steps']} measured steps, label gradient "
                f"share {fmt(share)} (tiny below {cfg.mechanism_tiny_share:g})")
    recovers = "higher" in calls
    if recovers and signal:
        status = "supported"
    elif recovers or signal:
        status = "partly supported"
    elif calls <= {"close", "lower"} and signal is False:
        status = "not supported"
    else:
        status = "inconclusive"
    return status, f"{evidence}; {text}"


def mechanism(an: Analysis, cfg: ReportConfig, rd: RunDir) -> dict | None:
    """Everything the section shows (None when the run holds no mechanism data: no control or mitigation arm,
    no gradient conflict, no layer probes, no samples)."""
    data = read_mechanism(an, rd)
    arms = {base_arm(a) for a in an.runs["arm"].to_list()} & (set(ISOLATES) - {"label_only"})
    if not arms and all(not t.height for t in data.values()):
        return None
    comp = comparisons(an, cfg)
    grads = gradient_table(data["conflict"], cfg) if data["conflict"].height else pl.DataFrame()
    return {"data": data, "comparisons": comp, "gradients": grads, "explanations": explain(comp, grads, cfg),
            "oracle": auroc(*an.oracle) if an.oracle else None}


def mechanism_stats(m: dict | None) -> dict | None:
    """The section's numbers for stats.json."""
    if m is None:
        return None
    comp = m["comparisons"].with_columns(pl.col("failed").map_elements(describe, return_dtype=pl.String))
    return {"comparisons": comp.to_dicts(), "explanations": m["explanations"],
            "gradients": [{**r, "cos": list(r["cos"])} for r in m["gradients"].to_dicts()] if m["gradients"].height
            else []}


def mechanism_section(m: dict | None, an: Analysis, cfg: ReportConfig, out: Path) -> Section | None:
    """The Mechanism section (None when ``m`` is None: the run has no mechanism data)."""
    if m is None:
        return None
    arms = arm_order(an.runs["arm"].to_list(), cfg)
    comp = m["comparisons"]
    n_pairs = int(comp["n"].min()) if comp.height else 0
    blocks: list[tuple] = [("verdict", paragraph(m["explanations"], n_pairs)), *_comparison_blocks(m, cfg)]
    data = m["data"]
    if data["conflict"].height:
        blocks += [("img", figures.conflict_curves(data["conflict"], arms, out / "mechanism_conflict.png"),
                    "Label vs rationale gradient: cosine and norm ratio |g_label| / |g_rationale| over optimizer "
                    "steps, mean over seeds per arm (first micro-batch of each measured step, all parameters)"),
                   ("table", _gradient_cells(m["gradients"]), f"Per arm, over measured steps of all runs; cosine "
                    f"interval: {cfg.level:.0%} t-interval over measured steps (steps of one run are not independent)."
                    " Label share: label weight x |g_label| over both weighted norms.")]
    else:
        blocks.append(("absent", "No gradient conflict: set train.conflict_every to measure it."))
    blocks += _probe_blocks(data["probes"], arms, m["oracle"], out)
    blocks += _k_blocks(data["k"], an, arms, m["oracle"], out)
    return Section("mechanism", "Mechanism", blocks)


def paragraph(expl: dict[str, dict], n_pairs: int = 2) -> str:
    """Which explanation the run supports and how strongly, in one paragraph; ``n_pairs`` (the fewest paired
    configurations behind a comparison) below 2 adds that one training run per arm cannot tell an effect from
    seed-to-seed variation.

    >>> paragraph({"dilution": {"status": "supported", "evidence": "e1"}, "content": {"status": "not evaluable",
    ...            "evidence": "e2"}, "format": {"status": "not tested", "evidence": ""}})
    'This run supports dilution (e1). Content: not evaluable (a quality gate fails for every arm that tests it, so it says nothing; e2). Format: not tested (none of its arms ran).'
    >>> paragraph({"dilution": {"status": "supported", "evidence": "e1"}}, n_pairs=1).split(". ", 1)[1]
    'How strongly: weakly. Each comparison rests on one training run per arm (one seed), so its interval resamples test subjects only, not training runs, and differences between seeds of one arm can be as large as these; repeat with more seeds (grid.seeds) before reading them as findings.'
    """
    strong = [n for n, e in expl.items() if e["status"] == "supported"]
    head = (f"This run supports {' and '.join(strong)} (" + "; ".join(expl[n]["evidence"] for n in strong) + ")."
            if strong else "This run supports none of the three explanations with the stated certainty.")
    why = {"not evaluable": "a quality gate fails for every arm that tests it, so it says nothing",
           "not tested": "none of its arms ran", "inconclusive": "the intervals cannot tell",
           "not supported": "the intervals speak against it", "partly supported": "only part of its evidence holds"}
    rest = [f"{n.capitalize()}: {e['status']} ({why[e['status']]}" + (f"; {e['evidence']}" if e["evidence"] and
            e["status"] != "not tested" else "") + ")." for n, e in expl.items() if e["status"] != "supported"]
    single = ("How strongly: weakly. Each comparison rests on one training run per arm (one seed), so its interval "
              "resamples test subjects only, not training runs, and differences between seeds of one arm can be as "
              "large as these; repeat with more seeds (grid.seeds) before reading them as findings.")
    return " ".join([head, *rest, *([single] if n_pairs < 2 else [])])


def _comparison_blocks(m: dict, cfg: ReportConfig) -> list[tuple]:
    comp = m["comparisons"]
    if not comp.height:
        return [("absent", "No paired comparisons: neither freeform nor label_only ran beside the mechanism arms.")]
    wide: dict[str, dict] = {}
    for r in comp.iter_rows(named=True):
        w = wide.setdefault(r["arm"], {"arm": r["arm"], "isolates": ISOLATES.get(base_arm(r["arm"]), "–")})
        w[f"vs {r['versus']}: Delta [CI]"] = fmt_ci(r["mean"], r["lo"], r["hi"])
        w[f"vs {r['versus']}: call"] = r["call"]
        w["pairs"] = str(r["n"])
        if r["failed"]:
            w.setdefault("failed gates", describe(r["failed"]))
    table = pl.DataFrame(list(wide.values())).fill_null("–")
    return [("table", table, f"Delta AUROC = arm - comparator, paired on the same model, scale, seed and test "
                             f"subjects; mean over paired configurations, {cfg.level:.0%} interval: "
                             f"{pooled_method(cfg)}. Call: higher/lower when the interval excludes 0, close when it "
                             f"lies within +/- {cfg.mechanism_margin:g}, not evaluable when either side fails a "
                             "quality gate.")]


def _gradient_cells(g: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame({"arm": g["arm"], "runs": g["runs"].cast(pl.String),
                         "measured steps": g["steps"].cast(pl.String),
                         "cosine [CI]": [fmt_ci(*c) for c in g["cos"]], "norm ratio": [fmt(x) for x in g["norm_ratio"]],
                         "label gradient share": [fmt(x) for x in g["label_share"]]})


def _probe_blocks(probes: pl.DataFrame, arms: list[str], oracle: float | None, out: Path) -> list[tuple]:
    if not probes.height:
        return [("absent", "No layer probes: set layer_probes (and train.keep_checkpoints) to probe every layer.")]
    last = probes.filter(pl.col("step") == pl.col("step").max().over("run_id"))
    best = (last.filter(pl.col("measure") == "probe").group_by("arm", "slot", "layer").agg(pl.col("auroc").mean())
            .sort("auroc", descending=True).group_by("arm", "slot", maintain_order=True).first())
    own = last.filter(pl.col("measure") == "p_yes").group_by("arm", "slot").agg(pl.col("auroc").mean().alias("p_yes"))
    table = best.join(own, on=["arm", "slot"], how="left").sort("arm", "slot")
    cells = pl.DataFrame({"arm": table["arm"], "slot": table["slot"], "best layer": table["layer"].cast(pl.String),
                          "probe AUROC": [fmt(x) for x in table["auroc"]],
                          "model P(Yes) AUROC": [fmt(x) for x in table["p_yes"]]})
    return [("img", figures.probe_layers(probes, arms, out / "mechanism_probes.png", oracle),
             "Linear-probe AUROC per layer at the last checkpoint (left: direct slot after the prompt; middle: after "
             "the rationale and answer marker) and the best layer's AUROC over checkpoints (right, direct slot); "
             "mean over seeds; out-of-fold AUROC on the test subjects, chance and oracle lines"),
            ("table", cells, "Best probe layer per arm and slot at the last checkpoint (mean over seeds), beside the "
                             "AUROC of the model's own P(Yes) at that slot.")]


def _k_blocks(k: pl.DataFrame, an: Analysis, arms: list[str], oracle: float | None, out: Path) -> list[tuple]:
    if not k.height:
        return [("absent", "No sampled rationales: set score.n_samples to score K samples per subject.")]
    greedy = an.runs.filter(pl.col("run_id").is_in(k["run_id"].unique().to_list())).group_by("arm").agg(
        pl.col("auroc").mean())
    return [("img", figures.k_curves(k, dict(greedy.iter_rows()), arms, out / "mechanism_k.png", oracle),
             "AUROC of the mean risk over the first K sampled rationales per subject against K (mean over seeds); "
             "crosses: the greedy rationale's AUROC; chance and oracle lines")]


__all__ = ["base_arm", "call", "comparisons", "read_mechanism", "gradient_table", "explain", "mechanism",
           "mechanism_stats", "mechanism_section", "paragraph"]
