"""Report sections on why arms differ: loss curves, label-token share, readouts, matched errors, rationale quality."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft.config.report import ReportConfig
from rationale_sft.report import figures
from rationale_sft.report.analysis import Analysis, arm_order
from rationale_sft.report.load import RunDir, input_hashes, read_examples, read_labels, read_quality, read_train_log
from rationale_sft.report.render import Section, fmt


def diagnostics_section(an: Analysis, cfg: ReportConfig, rd: RunDir, out: Path) -> Section:
    """Loss curves, label-token share, direct vs after-rationale AUROC, conclusion-yes rate, linear probe."""
    blocks: list[tuple] = []
    rep = an.representative
    logs = {}
    for arm in arm_order(list(rep.get("runs", {})), cfg):
        row = an.runs.filter(pl.col("run_id") == rep["runs"][arm])
        log = read_train_log(rd, row.row(0, named=True)) if row.height else None
        if log is not None and "label_loss" in log.columns:
            logs[arm] = log
    if logs:
        blocks.append(("img", figures.loss_curves(logs, list(logs), out / "loss_curves.png"),
                       "Label-token and rationale-token loss per arm, representative configuration"))
    else:
        blocks.append(("absent", "No train_log.parquet with label_loss for the representative configuration."))
    blocks.append(("table", readout_table(an, rd, cfg), "Per arm, mean over configurations: label-token share of "
                   "the loss (from train_log.parquet), AUROC after the rationale (p_yes) and at the direct answer "
                   "slot right after the prompt (p_direct), how often the generated text concludes Yes, the "
                   "observed prevalence, the generated length, and the share of generated factor statements "
                   "whose direction (raises or lowers risk) agrees with the knowledge base for that subject "
                   "(reported, not a gate)."))
    if "auroc_probe" in an.runs.columns and an.runs["auroc_probe"].null_count() < an.runs.height:
        probe = an.runs.group_by("arm").agg(pl.col("auroc_probe").mean()).sort("arm")
        blocks.append(("table", probe.with_columns(pl.col("auroc_probe").map_elements(fmt, return_dtype=pl.String)),
                       "Linear-probe AUROC (results.parquet column auroc_probe), mean per arm."))
    else:
        blocks.append(("absent", "No linear-probe AUROC in results.parquet (column auroc_probe): not shown."))
    return Section("diagnostics", "Diagnostics", blocks)


def readout_table(an: Analysis, rd: RunDir, cfg: ReportConfig) -> pl.DataFrame:
    """Label-token share, AUROC direct vs after rationale, conclusion-yes rate and prevalence per arm."""
    shares = {}
    for row in an.runs.iter_rows(named=True):
        log = read_train_log(rd, row)
        if log is not None and "label_token_share" in log.columns:
            shares.setdefault(row["arm"], []).append(float(log["label_token_share"].mean()))
    rows = []
    for arm in arm_order(an.runs["arm"].to_list(), cfg):
        sub = an.runs.filter(pl.col("arm") == arm)
        rows.append({"arm": arm, "label-token share": fmt(np.mean(shares[arm]), 4) if arm in shares else "–",
                     "AUROC after rationale": fmt(sub["auroc"].mean()),
                     "AUROC direct": fmt(sub["auroc_direct"].cast(pl.Float64).mean()),
                     "conclusion Yes rate": fmt(sub["conclusion_yes_rate"].cast(pl.Float64).mean()),
                     "prevalence": fmt(float((sub["n_pos"] / sub["n_test"]).mean())),
                     "generated tokens": fmt(sub["mean_generated_tokens"].cast(pl.Float64).mean(), 1),
                     "factor directions right": fmt(sub["gen_direction_accuracy"].cast(pl.Float64).mean())
                     if "gen_direction_accuracy" in sub.columns else "–"})
    return pl.DataFrame(rows)


def top_k_correct(y: np.ndarray, s: np.ndarray, subject_id: np.ndarray) -> np.ndarray:
    """Correct calls when the top ``n_pos`` scores are called positive (ties broken by subject id).

    >>> top_k_correct(np.array([1, 0, 0, 1]), np.array([.9, .5, .5, .1]), np.arange(4)).tolist()
    [True, False, True, False]
    """
    order = np.lexsort((subject_id, -s))
    called = np.zeros(y.size, bool)
    called[order[: int(np.sum(y))]] = True
    return called == np.asarray(y, bool)


def errors_section(an: Analysis, cfg: ReportConfig, rd: RunDir) -> Section:
    """Subjects the reference arm ranks correctly and a rationale arm wrongly, on the same configuration."""
    if "run_id_ref" not in an.runs.columns:
        return Section("errors", "Matched error analysis", [("absent", "No paired configurations.")])
    counts, per_subject = _error_counts(an)
    if not counts:
        return Section("errors", "Matched error analysis", [("absent", "No paired configurations.")])
    table = pl.DataFrame([{"arm": a, **{k: str(v) for k, v in c.items()}} for a, c in sorted(counts.items())])
    blocks: list[tuple] = [("p", "Each run calls its top-n_pos scores positive (n_pos = observed cases), so both "
                                 "arms make the same number of positive calls; counts are summed over paired "
                                 "configurations."),
                           ("table", table, "Subject-level agreement of paired runs (reference vs arm).")]
    blocks += _describe_subjects(per_subject, rd, cfg)
    return Section("errors", "Matched error analysis", blocks)


def _error_counts(an: Analysis) -> tuple[dict, dict]:
    counts: dict[str, dict] = {}
    per_subject: dict[str, dict[int, list[int]]] = {}
    for row in an.runs.filter(pl.col("run_id_ref").is_not_null()).iter_rows(named=True):
        j = an.scores[row["run_id"]].select("subject_id", "label", "p_yes").join(
            an.scores[row["run_id_ref"]].select("subject_id", pl.col("p_yes").alias("p_ref")), on="subject_id")
        ids, y = j["subject_id"].to_numpy(), j["label"].cast(pl.Boolean).to_numpy()
        arm_ok, ref_ok = top_k_correct(y, j["p_yes"].to_numpy(), ids), top_k_correct(y, j["p_ref"].to_numpy(), ids)
        c = counts.setdefault(row["arm"], {"pairs": 0, "both right": 0, "reference right, arm wrong": 0,
                                           "reference wrong, arm right": 0, "both wrong": 0})
        c["pairs"] += 1
        for name, m in (("both right", ref_ok & arm_ok), ("reference right, arm wrong", ref_ok & ~arm_ok),
                        ("reference wrong, arm right", ~ref_ok & arm_ok), ("both wrong", ~ref_ok & ~arm_ok)):
            c[name] += int(m.sum())
        subj = per_subject.setdefault(row["arm"], {})
        for sid, lost in zip(ids.tolist(), (ref_ok & ~arm_ok).tolist()):
            subj.setdefault(sid, []).append(int(lost))
    return counts, per_subject


def _describe_subjects(per_subject: dict, rd: RunDir, cfg: ReportConfig) -> list[tuple]:
    labels, examples = read_labels(rd), read_examples(rd)
    if labels is None:
        return [("absent", "No labelled cohort in index.json ('labels'): the subjects lost by the rationale arms "
                           "are counted but not described.")]
    info = labels.select("subject_id", *[c for c in ("boolean_value", "age", "sex") if c in labels.columns])
    if examples is not None and "n_history_items" in examples.columns:
        info = info.join(examples.select("subject_id", "n_history_items").unique("subject_id", keep="first"),
                         on="subject_id", how="left")
    rows = []
    for arm in sorted(per_subject):
        lost = [s for s, v in per_subject[arm].items() if np.mean(v) >= 0.5]
        all_ids = list(per_subject[arm])
        for name, ids in (("lost in >= half the pairs", lost), ("all test subjects", all_ids)):
            rows.append({"arm": arm, "subjects": name, **_profile(info.filter(pl.col("subject_id").is_in(ids)))})
    return _item_blocks(per_subject, examples) + [
        ("table", pl.DataFrame(rows), "Who the rationale arms lose: subjects the reference ranks correctly and "
                                          "the arm wrongly in at least half of the paired configurations, against all "
                                          "test subjects (cases, age, sex and history length where the tables "
                                          "give them).")]


DATED_ITEM = re.compile(r"^\s*-\s*\d{4}(?:-\d{2}){0,2}\b[^:]*:\s*(.+?)\s*$")


def history_items(prompt: str) -> set[str]:
    """Dated history items of a rendered prompt (lines ``- <date> ...: <item>``), without their dates.

    >>> sorted(history_items("Sex: female\\n- 1997-08 (10 years before): Senile cataract\\n- BMI: 31"))
    ['Senile cataract']
    """
    return {m.group(1) for line in prompt.splitlines() if (m := DATED_ITEM.match(line))}


def _item_blocks(per_subject: dict, examples: pl.DataFrame | None, top: int = 8) -> list[tuple]:
    """History items over-represented among the subjects an arm loses, against all test subjects."""
    if examples is None or "prompt" not in examples.columns:
        return [("absent", "No rendered prompts in index.json ('examples'): history contents not shown.")]
    prompts = dict(examples.select("subject_id", "prompt").unique("subject_id", keep="first").iter_rows())
    rows = []
    for arm in sorted(per_subject):
        lost = [s for s, v in per_subject[arm].items() if np.mean(v) >= 0.5 and s in prompts]
        every = [s for s in per_subject[arm] if s in prompts]
        share_lost, share_all = _item_shares(lost, prompts), _item_shares(every, prompts)
        lift = sorted(((share_lost[i] - share_all[i], i) for i in share_lost if share_lost[i] * len(lost) >= 2),
                      key=lambda x: (-x[0], x[1]))
        rows += [{"arm": arm, "history item": i, "share of lost subjects": fmt(share_lost[i]),
                  "share of all test subjects": fmt(share_all[i]), "lost subjects": str(len(lost))}
                 for _, i in lift[:top]]
    if not rows:
        return [("absent", "No dated history items shared by two or more lost subjects.")]
    return [("table", pl.DataFrame(rows), f"What the lost subjects' histories contain: the {top} dated items most "
                                          "over-represented among them (present in at least two), per arm.")]


def _item_shares(ids: list[int], prompts: dict) -> dict[str, float]:
    counts: dict[str, int] = {}
    for sid in ids:
        for item in history_items(prompts[sid]):
            counts[item] = counts.get(item, 0) + 1
    return {k: v / len(ids) for k, v in counts.items()} if ids else {}


def _profile(df: pl.DataFrame) -> dict:
    out = {"n": str(df.height)}
    if "boolean_value" in df.columns:
        out["cases"] = fmt(df["boolean_value"].cast(pl.Float64).mean())
    if "age" in df.columns:
        out["mean age"] = fmt(df["age"].cast(pl.Float64).mean(), 1)
    if "sex" in df.columns:
        out["female"] = fmt((df["sex"] == "F").cast(pl.Float64).mean())
    if "n_history_items" in df.columns:
        out["history items"] = fmt(df["n_history_items"].cast(pl.Float64).mean(), 1)
    return out


def quality_section(rd: RunDir, cfg: ReportConfig) -> Section:
    """Rationale quality figures from the quality.json files named in index.json, flattened."""
    reports = read_quality(rd)
    if not reports:
        return Section("quality", "Rationale quality", [("absent", "No rationale quality report in index.json "
                                                                   "('rationale_quality'): section absent.")])
    columns: dict[str, dict[str, str]] = {}
    for name, data in reports.items():
        for col, values in quality_columns(data).items():
            columns[f"{name}: {col}" if len(reports) > 1 else col] = values
    keys = list(dict.fromkeys(k for values in columns.values() for k in values))
    table = pl.DataFrame({"metric": keys, **{c: [v.get(k, "–") for k in keys] for c, v in columns.items()}})
    return Section("quality", "Rationale quality", [
        ("table", table.head(cfg.max_rows * 3), "Rationale quality report(s) from `rationales check`: overall "
                                                "and per rationale set; nested keys joined with dots.")])


def quality_columns(data: dict) -> dict[str, dict[str, str]]:
    """A quality report as columns: ``overall`` plus one per entry of ``groups`` (named by set/style).

    >>> quality_columns({"overall": {"n": 3}, "groups": [{"style": "freeform", "n": 2}], "version": 1})
    {'overall': {'n': '3', 'version': '1'}, 'freeform': {'n': '2', 'style': 'freeform'}}
    """
    rest = dict(data) if isinstance(data, dict) else {"value": data}
    groups = rest.pop("groups") if isinstance(rest.get("groups"), list) else []
    overall = rest.pop("overall") if isinstance(rest.get("overall"), dict) else {}
    columns = {"overall": dict(flatten(overall) + flatten(rest))}
    for i, group in enumerate(groups):
        name = str(group.get("set") or group.get("style") or f"group {i}") if isinstance(group, dict) else f"group {i}"
        columns[name] = dict(flatten(group, ""))
    return columns


def flatten(data, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of nested JSON as (dotted key, text) pairs; lists are summarised by length.

    >>> flatten({"a": {"b": 0.51234, "c": [1, 2]}, "n": 3})
    [('a.b', '0.5123'), ('a.c', 'list of 2'), ('n', '3')]
    """
    out = []
    if isinstance(data, dict):
        for k in sorted(data, key=str):
            out += flatten(data[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list):
        out.append((prefix, f"list of {len(data)}"))
    elif isinstance(data, float):
        out.append((prefix, f"{data:.4g}"))
    else:
        out.append((prefix, json.dumps(data) if not isinstance(data, str) else data))
    return out


def methods_section(an: Analysis, cfg: ReportConfig, rd: RunDir) -> Section:
    """How every number was computed, with seeds and input hashes."""
    hashes = input_hashes(rd)
    return Section("methods", "Methods and inputs", [
        ("p", f"Per-run AUROC (midrank), AUPRC (average precision), Brier score and ECE are recomputed from each "
              f"run's scores.parquet; intervals: label-stratified percentile bootstrap over subjects ({cfg.n_boot} "
              f"replicates, {cfg.level:.0%}, seed {cfg.seed}). Paired arm-vs-reference comparisons on the same "
              "subjects: DeLong test (fast midrank algorithm of Sun & Xu 2014) and paired bootstrap. Across "
              "configurations: Delta AUROC paired by family, size, model, base, scale and seed; means over "
              "configurations with a two-level percentile bootstrap (each replicate draws the test subjects once, "
              "within label and cohort, for every configuration, then draws configurations with replacement, and "
              f"recomputes every AUROC; {cfg.n_boot} replicates, seed {cfg.seed}); Wilcoxon signed-rank and sign "
              "tests; Holm and Benjamini-Hochberg adjustment; OLS with cluster-robust (CR1) standard errors "
              "clustered on the reference run."),
        ("table", pl.DataFrame({"input": list(hashes), "sha256 (16 hex)": list(hashes.values())}),
         "Inputs of this report (the report is a pure function of the run directory's files).")])
