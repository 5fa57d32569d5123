"""Teacher rationale generation: plan items, serve finished ones from the cache, run a backend on the rest.

``generate(cfg, examples, out_dir, meds=...)`` writes ``OUT/rationales.parquet`` (contract section 5),
``OUT/failures.json`` and the run-stage files. Every item a backend finishes is committed to the shared
cache at once (``rationales.cache``), so an interrupted run resumes where it stopped; the parquet file is
written only at the end, from the cache, in the order of the plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from rationale_sft.config.teacher import TeacherConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.cache import RationaleCache, cache_key
from rationale_sft.rationales.specs import SPEC_VERSION, ParsedRationale, parse_reply, spec_hash
from rationale_sft.rundir import hash_path, portable, run_stage, write_json, write_parquet
from rationale_sft.tables import read_parquet

EXAMPLE_COLUMNS = ("subject_id", "prediction_time", "split", "label", "prompt", "prompt_hash")
OUTPUT_SCHEMA = {
    "subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "prompt_hash": pl.String,
    "split": pl.String, "style": pl.String, "mode": pl.String, "backend": pl.String, "model": pl.String,
    "spec_version": pl.String, "text": pl.String, "conclusion": pl.String, "teacher_risk": pl.Float64,
    "cache_key": pl.String}
console = Console(stderr=True)


@dataclass(frozen=True)
class Item:
    """One rationale to write: an example, a style and a mode, with its cache key."""

    key: str
    subject_id: int
    prediction_time: datetime
    split: str
    label: bool
    prompt: str
    prompt_hash: str
    style: str
    mode: str

    @property
    def teacher_label(self) -> bool | None:
        """The label the teacher is told: the truth (conditioned), its opposite (flipped), nothing (blind)."""
        return {"conditioned": self.label, "flipped": not self.label}.get(self.mode)


@dataclass(frozen=True)
class Outcome:
    """What a backend reports for one item: a parsed rationale, or the error after its attempts."""

    item: Item
    parsed: ParsedRationale | None
    raw: str | None = None
    error: str | None = None
    attempts: int = 1
    n_tokens: int = 0
    seed: int | None = None
    "The sampling seed actually used (None when decoding was greedy or deterministic)."


Emit = Callable[[Outcome], None]


def generate(cfg: TeacherConfig, examples: str | Path, out_dir: str | Path, meds: str | Path | None = None,
             force: bool = False) -> Path:
    """Generate rationales for ``examples`` into ``out_dir`` (skipped when already done); return the parquet."""
    out_dir = Path(out_dir)
    inputs = {"examples": Path(examples), **({"meds": Path(meds)} if meds else {})}
    run_stage(out_dir, lambda d: _work(cfg, Path(examples), d, meds), cfg=cfg, seeds={"seed": cfg.seed},
              inputs=inputs, force=force)
    return out_dir / "rationales.parquet"


def _work(cfg: TeacherConfig, examples: Path, out_dir: Path, meds: str | Path | None) -> dict:
    items = plan_items(cfg, read_examples(examples))
    cache_path = Path(cfg.cache_dir or out_dir / "cache") / "rationales.sqlite"
    with RationaleCache(cache_path) as cache:
        _warn_stale(cache, cache_path)
        cached = cache.get_many([i.key for i in items])
        pending = [i for i in items if i.key not in cached]
        failures, stats = _run_backend(cfg, pending, cache, meds)
        records = cache.get_many([i.key for i in items])
    write_json(out_dir / "failures.json", failures)
    if failures and not cfg.allow_failures:
        raise InputError(f"{len(failures)} of {len(pending)} items failed (see {out_dir / 'failures.json'}, "
                         f"first: {failures[0]['error']}); re-run to retry them, or set allow_failures=true")
    table = rationale_table(cfg, items, records)
    write_parquet(table, out_dir / "rationales.parquet")
    return {"rationales": {"planned": len(items), "from_cache": len(cached), "generated": len(pending) - len(failures),
                           "failed": len(failures), "rows": table.height, "cache": portable(cache_path, out_dir), **stats}}


def read_examples(path: Path) -> pl.DataFrame:
    """Read render's ``examples.parquet``, checking the columns generation needs."""
    if not path.is_file():
        raise InputError(f"examples file not found: {path} (write it with `rationale-sft render`)")
    df = read_parquet(path)
    missing = [c for c in EXAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; examples.parquet needs "
                         f"{', '.join(EXAMPLE_COLUMNS)} (contract section 4)")
    return df


def plan_items(cfg: TeacherConfig, examples: pl.DataFrame) -> list[Item]:
    """One item per example in the configured splits and style; duplicates (same key) are planned once."""
    rows = examples.filter(pl.col("split").is_in(list(cfg.splits)))
    if rows.is_empty():
        found = sorted(examples["split"].unique().to_list())
        raise InputError(f"no examples in splits {list(cfg.splits)}; the file has splits {found} "
                         "(set splits=[...])")
    params = backend_params(cfg)
    items: dict[str, Item] = {}
    for row in rows.iter_rows(named=True):
        for style in cfg.styles:
            key = cache_key(cfg.backend, cfg.model_name, {**params, "spec": spec_hash(style, cfg.mode)}, SPEC_VERSION,
                            row["subject_id"], row["prompt_hash"], style, cfg.mode, row["label"])
            items.setdefault(key, Item(key, row["subject_id"], row["prediction_time"], row["split"],
                                       bool(row["label"]), row["prompt"], row["prompt_hash"], style, cfg.mode))
    return list(items.values())


def backend_params(cfg: TeacherConfig) -> dict:
    """The generation settings that change a backend's output (part of every cache key)."""
    if cfg.backend == "knowledge":  # a changed knowledge base must not reuse old rationales
        from rationale_sft.rationales.knowledge import KNOWLEDGE_BASE, PHRASING_VERSION
        limit = {"max_factors": cfg.max_factors} if cfg.max_factors is not None else {}
        wording = {"cite": cfg.cite} if cfg.cite != "varied" else {}  # old caches stay valid for the default
        return {"seed": cfg.seed, "knowledge_base": hash_path(KNOWLEDGE_BASE), "phrasing": PHRASING_VERSION, **limit,
                **wording}
    sampled = {"seed": cfg.seed} if cfg.temperature > 0 else {}
    return {"temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens, **sampled}


def rationale_table(cfg: TeacherConfig, items: list[Item], records: dict[str, dict]) -> pl.DataFrame:
    """The ``rationales.parquet`` rows of the finished items, in plan order."""
    rows = [{"subject_id": i.subject_id, "prediction_time": i.prediction_time, "prompt_hash": i.prompt_hash,
             "split": i.split, "style": i.style, "mode": i.mode, "backend": cfg.backend, "model": cfg.model_name,
             "spec_version": records[i.key]["spec_version"], "text": records[i.key]["text"],
             "conclusion": records[i.key]["conclusion"], "teacher_risk": records[i.key]["teacher_risk"],
             "cache_key": i.key} for i in items if i.key in records]
    return pl.DataFrame(rows, schema=OUTPUT_SCHEMA)


def parse_item_reply(item: Item, text: str) -> ParsedRationale:
    """Parse a teacher reply for ``item``; when told a label (conditioned, flipped) it must conclude that label."""
    parsed = parse_reply(text, item.style, item.mode)
    told = item.teacher_label
    if told is not None and (parsed.conclusion == "Yes") != told:
        raise InputError(f"{item.mode} teacher concluded {parsed.conclusion!r} for subject {item.subject_id} "
                         f"although it was told the outcome {'Yes' if told else 'No'}")
    return parsed


def _record(cfg: TeacherConfig, out: Outcome) -> dict:
    p = out.parsed
    return {"spec_version": SPEC_VERSION, "text": p.text, "conclusion": p.conclusion,
            "teacher_risk": p.teacher_risk, "raw": out.raw, "backend": cfg.backend, "model": cfg.model_name,
            "subject_id": out.item.subject_id, "style": out.item.style, "mode": out.item.mode,
            "attempts": out.attempts, "n_tokens": out.n_tokens, "seed": out.seed, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _run_backend(cfg: TeacherConfig, pending: list[Item], cache: RationaleCache,
                 meds: str | Path | None) -> tuple[list[dict], dict]:
    failures: list[dict] = []
    if not pending:
        console.print("rationales: every item is in the cache; nothing to generate")
        return failures, {}
    runner = _backend(cfg.backend)
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(cfg.backend, total=len(pending), failed=0, tokens=0)

        def emit(out: Outcome) -> None:
            if out.parsed is not None:
                cache.put(out.item.key, _record(cfg, out))
            else:
                failures.append(_failure(out))
            tokens = progress.tasks[task].fields["tokens"] + out.n_tokens
            progress.update(task, advance=1, failed=len(failures), tokens=tokens)

        stats = runner(cfg, pending, emit, meds=meds) or {}
    seconds = time.perf_counter() - started
    stats = {**stats, "seconds": round(seconds, 3), "items_per_s": round(len(pending) / max(seconds, 1e-9), 3)}
    console.print(f"rationales: {len(pending) - len(failures)} generated, {len(failures)} failed, "
                  f"{stats['items_per_s']} items/s" + (f", {stats['tokens_per_s']} tokens/s"
                                                        if "tokens_per_s" in stats else ""))
    return failures, stats


def _failure(out: Outcome) -> dict:
    i = out.item
    return {"subject_id": i.subject_id, "prompt_hash": i.prompt_hash, "style": i.style, "mode": i.mode,
            "cache_key": i.key, "attempts": out.attempts, "error": out.error, "reply": out.raw, "seed": out.seed}


def _backend(name: str) -> Callable[..., dict | None]:
    # imported on demand: the hf backend pulls in torch, the others must not
    if name == "knowledge":
        from rationale_sft.rationales.backends.knowledge import run
    elif name == "openai":
        from rationale_sft.rationales.backends.openai import run
    else:
        from rationale_sft.rationales.backends.hf import run
    return run


def _warn_stale(cache: RationaleCache, path: Path) -> None:
    stale = {v: n for v, n in cache.spec_versions().items() if v != SPEC_VERSION}
    if stale:
        console.print(f"[yellow]rationales: {sum(stale.values())} cached rationale(s) in {path} were written "
                      f"under spec version(s) {', '.join(sorted(stale))}, not the current {SPEC_VERSION}; "
                      "they are not reused[/yellow]")


class _RateColumn(ProgressColumn):
    """Items per second, and generated tokens per second when the backend counts tokens."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        if not elapsed:
            return Text("-- it/s")
        text = f"{task.completed / elapsed:.1f} it/s"
        if task.fields.get("tokens"):
            text += f" {task.fields['tokens'] / elapsed:.0f} tok/s"
        return Text(text + f" {task.fields.get('failed', 0)} failed")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), _RateColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)
