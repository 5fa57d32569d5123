"""Read a finished grid run directory: results.parquet, index.json and the per-run and shared files it names.

Only ``DONE``, ``results.parquet`` and its required columns are mandatory; every other input is optional and
its absence is reported by the section that needs it. Paths in ``results.parquet`` and ``index.json`` are
relative to the run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rationale_sft.errors import InputError
from rationale_sft.rundir import hash_path
from rationale_sft.tables import read_parquet

REQUIRED = ("run_id", "arm", "seed", "status", "run_path")
BASELINE_MODELS = ("age_sex_lr", "lr", "lightgbm", "oracle")
FEWSHOT_PREFIX = "fewshot"


@dataclass
class RunDir:
    """The inputs of one report: the results table and where everything else lives."""

    root: Path
    results: pl.DataFrame
    index: dict
    failures: list = field(default_factory=list)

    def path(self, rel: str) -> Path:
        """Resolve a path relative to the run directory."""
        return (self.root / rel).resolve()

    def ok(self) -> pl.DataFrame:
        """Finished configurations only (status ``ok``), in a stable order."""
        return self.results.filter(pl.col("status") == "ok").sort("run_id")


def open_run_dir(run_dir: str | Path, require_done: bool = True) -> RunDir:
    """Check the run directory is a finished grid run (``DONE``, unless not ``require_done``); read its tables.

    >>> open_run_dir("/nonexistent/run")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: /nonexistent/run/results.parquet not found: RUN_DIR must be a finished grid run directory (written by `rationale-sft run`)
    """
    root = Path(run_dir)
    results_path = root / "results.parquet"
    if not results_path.is_file():
        raise InputError(f"{results_path} not found: RUN_DIR must be a finished grid run directory "
                         "(written by `rationale-sft run`)")
    if require_done and not (root / "DONE").is_file():
        raise InputError(f"{root / 'DONE'} not found: the grid run has not finished; resume it with "
                         "`rationale-sft run` and report when it is done")
    results = read_parquet(results_path)
    missing = [c for c in REQUIRED if c not in results.columns]
    if missing:
        raise InputError(f"{results_path} lacks column(s) {', '.join(missing)}; it has {', '.join(results.columns)} "
                         "(see docs/contracts.md section 8)")
    if not results.filter(pl.col("status") == "ok").height:
        statuses = ", ".join(sorted({str(s) for s in results["status"].to_list()})) or "none"
        raise InputError(f"{results_path} has no run with status 'ok' (statuses present: {statuses}); "
                         "finish or resume the grid before reporting")
    index = _read_json(root / "index.json", {})
    failures = _read_json(root / "failures.json", [])
    return RunDir(root, results, index, failures if isinstance(failures, list) else [failures])


def _read_json(path: Path, default):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); rewrite it or re-run the grid") from None


def read_scores(rd: RunDir, row: dict) -> pl.DataFrame | None:
    """A run's scores.parquet (subject_id, label, p_yes, ...), or None when it is missing."""
    path = rd.path(row["run_path"]) / "scores.parquet"
    if not path.is_file():
        return None
    scores = read_parquet(path)
    for col in ("subject_id", "label", "p_yes"):
        if col not in scores.columns:
            raise InputError(f"{path} lacks column {col!r}; scores.parquet needs subject_id, label, p_yes "
                             "(docs/contracts.md section 7)")
    return scores.sort("subject_id")


def read_train_log(rd: RunDir, row: dict) -> pl.DataFrame | None:
    """A run's train_log.parquet, or None (few-shot runs have none)."""
    path = rd.path(row["run_path"]) / "train_log.parquet"
    return read_parquet(path).sort("step") if path.is_file() else None


def index_path(rd: RunDir, key: str, names: tuple[str, ...] = ()) -> Path | None:
    """The file named by ``index.json[key]``; a directory resolves to the first of ``names`` inside it."""
    rel = rd.index.get(key)
    if not isinstance(rel, str):
        return None
    path = rd.path(rel)
    if path.is_dir():
        path = next((path / n for n in names if (path / n).is_file()), path / (names[0] if names else ""))
    return path if path.is_file() else None


def read_labels(rd: RunDir) -> pl.DataFrame | None:
    """The labelled cohort (subject_id, age, sex, ...) named by ``index.json["labels"]``, or None."""
    path = index_path(rd, "labels", ("LABELS.parquet", "labels.parquet"))
    return read_parquet(path) if path else None


def read_examples(rd: RunDir) -> pl.DataFrame | None:
    """Rendered examples (n_history_items, truncated) named by ``index.json["examples"]``, or None."""
    path = index_path(rd, "examples", ("examples.parquet",))
    return read_parquet(path) if path else None


def read_rationales(rd: RunDir) -> pl.DataFrame | None:
    """Teacher rationales named by ``index.json["rationales"]``, or None."""
    path = index_path(rd, "rationales", ("rationales.parquet",))
    return read_parquet(path) if path else None


def read_baselines(rd: RunDir) -> dict[str, dict[str, pl.DataFrame]]:
    """``{scale: {model: predictions}}`` from ``index.json["baselines"]`` (missing files are skipped)."""
    out: dict[str, dict[str, pl.DataFrame]] = {}
    entries = rd.index.get("baselines") or {}
    if isinstance(entries, str):
        entries = {"all": entries}
    for scale in sorted(entries, key=_scale_key):
        base = rd.path(entries[scale]) / "predictions"
        preds = {m: read_parquet(base / f"{m}.parquet") for m in BASELINE_MODELS
                 if (base / f"{m}.parquet").is_file()}
        if preds:
            out[str(scale)] = preds
    return out


def read_quality(rd: RunDir) -> dict[str, dict]:
    """Rationale quality reports: ``{name: parsed quality.json}`` from ``index.json["rationale_quality"]``."""
    entry = rd.index.get("rationale_quality")
    entries = entry if isinstance(entry, dict) else ({"rationales": entry} if isinstance(entry, str) else {})
    out = {}
    for name in sorted(entries):
        path = rd.path(entries[name])
        path = path / "quality.json" if path.is_dir() else path
        if path.is_file():
            out[name] = _read_json(path, {})
    return out


def grid_config(rd: RunDir) -> dict:
    """The resolved experiment config ``RUN_DIR/config.yaml`` as a dict (empty when absent or unreadable)."""
    import yaml

    path = rd.root / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def grid_name(rd: RunDir) -> str | None:
    """The experiment name from ``RUN_DIR/config.yaml`` (None when absent or unreadable)."""
    data = grid_config(rd)
    return str(data["name"]) if data.get("name") else None


def read_budget(rd: RunDir, row: dict) -> dict:
    """A run's optimizer steps and trained tokens: ``train_steps``/``train_tokens`` of results.parquet when
    present, else ``steps`` of its train.json and the target tokens summed over its train_log.parquet; each
    None when unknown (few-shot runs train nothing)."""
    steps, tokens = row.get("train_steps"), row.get("train_tokens")
    if steps is None:
        path = rd.path(row["run_path"]) / "train.json"
        steps = _read_json(path, {}).get("steps") if path.is_file() else None
    if tokens is None:
        log = read_train_log(rd, row)
        tokens = int(log["n_target_tokens"].sum()) if log is not None and "n_target_tokens" in log.columns else None
    return {"steps": None if steps is None else int(steps), "tokens": None if tokens is None else int(tokens),
            "tokens_source": "train_tokens" if row.get("train_tokens") is not None else "target tokens (train_log)"}


def input_hashes(rd: RunDir) -> dict[str, str]:
    """Content hashes of the top-level inputs, so a report names exactly what it summarised."""
    files = ["config.yaml", "results.parquet", "index.json", "failures.json"]
    return {f: hash_path(rd.root / f) for f in files if (rd.root / f).is_file()}


def _scale_key(scale: str) -> tuple:
    return (0, float(scale), "") if str(scale).replace(".", "", 1).isdigit() else (1, 0.0, str(scale))
