"""The experiment report: a pure function of a finished grid run directory.

``write_report(cfg, run_dir)`` reads ``RUN_DIR/results.parquet``, ``index.json`` and the per-run and shared
files they name, and writes ``RUN_DIR/report/``: ``index.html`` (links its PNGs by relative path),
``report.md``, the PNG figures, ``results.parquet`` (per configuration, with bootstrap CIs and paired tests)
and ``stats.json`` (every summary number). Re-running on the same files gives byte-identical output.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

from rationale_sft import config as cfglib
from rationale_sft.config.report import ReportConfig
from rationale_sft.report import budget, history
from rationale_sft.report import diagnostics as diag
from rationale_sft.report import mechanism as mech
from rationale_sft.report import sections as sec
from rationale_sft.report.analysis import Analysis, analyse, pooled_method
from rationale_sft.report.gates import gates_section
from rationale_sft.report.load import grid_name, input_hashes, open_run_dir
from rationale_sft.report.render import to_html, to_markdown
from rationale_sft.rundir import write_json, write_parquet, write_text
from rationale_sft.stats import auroc

TITLE = "Rationale SFT vs label-only SFT: report"


def write_report(cfg: ReportConfig, run_dir: str | Path, require_done: bool = True) -> Path:
    """Write ``RUN_DIR/report/`` and return the path of its ``index.html``.

    ``require_done=False`` is for the grid driver, which writes the root's ``DONE`` after the report. The
    report is built in a hidden sibling directory and swapped in whole, so a failure (a damaged input, a
    full disk, Ctrl-C) leaves the previous report, or none, never a half-written one.
    """
    rd = open_run_dir(run_dir, require_done)
    out = rd.root / "report"
    tmp = Path(tempfile.mkdtemp(prefix=".report.", suffix=".tmp", dir=rd.root))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would make the published report private
        _write(cfg, rd, tmp)
        old = rd.root / ".report.old"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"


def _write(cfg: ReportConfig, rd, out: Path) -> Path:
    an = analyse(rd, cfg)
    sections = [sec.verdict_section(an, cfg), gates_section(an, cfg), sec.main_section(an, cfg, rd),
                sec.delta_section(an, cfg, out), sec.scale_section(an, cfg, rd, out), sec.curves_section(an, cfg, rd, out),
                sec.fewshot_section(an, cfg, out), sec.baselines_section(an, cfg, rd),
                history.history_section(an, cfg, rd, out),
                diag.diagnostics_section(an, cfg, rd, out), diag.errors_section(an, cfg, rd),
                diag.quality_section(rd, cfg), diag.methods_section(an, cfg, rd)]
    m = mech.mechanism(an, cfg, rd)
    if m is not None:  # only a run with mechanism arms or measurements has the section
        sections.insert(sections.index(next(s for s in sections if s.key == "delta")) + 1,
                        mech.mechanism_section(m, an, cfg, out))
    write_parquet(an.runs, out / "results.parquet")
    stats = stats_dict(an, cfg, input_hashes(rd)) | {"history_strata": history.strata_stats(an, cfg, rd),
                                                      "budget": budget.budget_stats(an, cfg, rd)}
    if m is not None:
        stats["mechanism"] = mech.mechanism_stats(m)
    write_json(out / "stats.json", _json_safe(stats))
    name = grid_name(rd)
    title = f"{TITLE} ({name})" if name else TITLE
    write_text(out / "report.md", to_markdown(sections, title))
    return write_text(out / "index.html", to_html(sections, title))


def stats_dict(an: Analysis, cfg: ReportConfig, inputs: dict) -> dict:
    """Every summary number of the report, with the settings that produced it."""
    return {"config": cfglib.to_dict(cfg), "inputs": inputs, "verdict": an.verdict, "gates": an.gates.to_dicts(),
            "arms": an.arms.to_dicts(), "factors": an.factors.to_dicts(),
            "gap_model": {"terms": an.model.to_dicts(), "dropped": an.model_dropped},
            "representative": an.representative, "notes": an.notes,
            "oracle_auroc": auroc(*an.oracle) if an.oracle else None,
            "n_runs": an.runs.height, "methods": {
                "per_run_interval": f"stratified percentile bootstrap, {cfg.n_boot} replicates, seed {cfg.seed}",
                "per_pair_test": "DeLong (Sun & Xu 2014 fast algorithm) and paired stratified bootstrap",
                "across_configurations": f"{pooled_method(cfg)} (t-interval kept as t_lo/t_hi); Wilcoxon "
                                         "signed-rank, sign test, Holm and BH"}}


def _json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


__all__ = ["write_report", "stats_dict"]
