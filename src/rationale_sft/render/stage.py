"""The render stage: a MEDS dataset and a labels file in, ``examples.parquet`` (contract section 4) out."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import polars as pl

from rationale_sft import config, rundir
from rationale_sft.cohort.meds_io import read_labels, scan_events
from rationale_sft.config.render import RenderConfig
from rationale_sft.errors import InputError
from rationale_sft.render.assemble import PromptParts, assemble, whitespace_tokens
from rationale_sft.render.frame import render_frame
from rationale_sft.render.templates import get_template, template_hash
from rationale_sft.tables import read_parquet

EXAMPLES = "examples.parquet"
EXAMPLE_COLUMNS = ["subject_id", "prediction_time", "split", "label", "template", "template_version",
                   "template_hash", "prompt", "prompt_hash", "n_history_items", "n_history_dropped", "truncated",
                   "header", "items", "group_ids", "question"]
"""Contract columns, then the prompt parts (``PromptParts.from_row(row, template)`` re-assembles a prompt)."""


def read_codes(meds_dir: str | Path) -> pl.DataFrame:
    """``metadata/codes.parquet`` as (code, description); an empty table when the file is absent."""
    path = Path(meds_dir) / "metadata" / "codes.parquet"
    if not path.is_file():
        return pl.DataFrame(schema={"code": pl.String, "description": pl.String})
    df = read_parquet(path)
    if "code" not in df.columns or "description" not in df.columns:
        raise InputError(f"{path}: needs columns code and description (found {', '.join(df.columns)})")
    return df.select(pl.col("code").cast(pl.String), pl.col("description").cast(pl.String)).unique("code", keep="first",
                                                                                                     maintain_order=True)


def render_parts(events: pl.LazyFrame, codes: pl.DataFrame, labels: pl.DataFrame,
                 cfg: RenderConfig) -> pl.DataFrame:
    """Per labelled subject: subject_id, prediction_time, header, items, group_ids, question, prompt.

    Rows become ``PromptParts.from_row(row, cfg.template)`` for ``assemble`` under a token budget.
    """
    return render_frame(events, codes, labels, cfg, get_template(cfg.template))


def hash_prompts(prompts: list[str]) -> list[str]:
    """Short sha256 of every prompt (the same as ``rundir.hash_text``)."""
    return [hashlib.sha256(p.encode("utf-8")).hexdigest()[:16] for p in prompts]


def token_counter(cfg: RenderConfig) -> Callable[[str], int]:
    """Whitespace words, or the configured Hugging Face tokenizer's token count."""
    if cfg.tokenizer is None:
        return whitespace_tokens
    from transformers import AutoTokenizer  # heavy: only when a tokenizer is configured

    tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def examples_frame(frame: pl.DataFrame, cfg: RenderConfig) -> pl.DataFrame:
    """Contract rows from ``render_parts`` output, truncating over-budget prompts oldest history first."""
    t = get_template(cfg.template)
    prompts, dropped = frame["prompt"].to_list(), [0] * frame.height
    if cfg.max_tokens is not None:
        count = token_counter(cfg)
        for i, row in enumerate(frame.iter_rows(named=True)):
            if count(prompts[i]) > cfg.max_tokens:  # only over-budget rows take the slow path
                try:
                    prompts[i], dropped[i] = assemble(PromptParts.from_row(row, t), cfg.max_tokens, count)
                except InputError as exc:
                    raise InputError(f"subject {row['subject_id']}: {exc}") from None
    return frame.select(
        "subject_id", "prediction_time", "split", pl.col("boolean_value").alias("label"),
        pl.lit(t.name).alias("template"), pl.lit(t.version).alias("template_version"),
        pl.lit(template_hash(t, cfg.question, cfg.anchor)).alias("template_hash"),
        pl.Series("prompt", prompts, dtype=pl.String), pl.Series("prompt_hash", hash_prompts(prompts)),
        "n_history_items", pl.Series("n_history_dropped", dropped, dtype=pl.Int64),
        pl.Series("truncated", [d > 0 for d in dropped], dtype=pl.Boolean), "header", "items", "group_ids", "question")


def render_examples(meds_dir: str | Path, labels: pl.DataFrame, cfg: RenderConfig) -> pl.DataFrame:
    """Every labelled subject's example (contract section 4), in the labels' order."""
    frame = render_parts(scan_events(meds_dir), read_codes(meds_dir), labels, cfg)
    return examples_frame(frame, cfg)


def render(cfg: RenderConfig, meds_dir: str | Path, labels_path: str | Path, out_dir: str | Path,
           force: bool = False) -> Path:
    """The render stage: writes ``out_dir/examples.parquet`` and the run-dir files; skipped when done."""
    out_dir = Path(out_dir)

    def work(run_dir: Path) -> dict:
        labels = read_labels(labels_path)
        absent = subjects_without_events(meds_dir, labels, labels_path)
        examples = render_examples(meds_dir, labels, cfg)
        rundir.write_parquet(examples, run_dir / EXAMPLES)
        return {"n_examples": examples.height, "n_truncated": int(examples["truncated"].sum()),
                "n_subjects_without_events": absent,
                "template_hash": examples["template_hash"][0] if examples.height else None}

    check_same_config(out_dir, cfg, force)
    rundir.run_stage(out_dir, work, cfg=cfg, inputs={"meds": meds_dir, "labels": labels_path},
                     force=force)
    return out_dir / EXAMPLES


def subjects_without_events(meds_dir: str | Path, labels: pl.DataFrame, labels_path: str | Path) -> int:
    """How many labelled subjects have no event at all in ``meds_dir``; refuse when it is most of them.

    Labels extracted from this dataset name only subjects in it; mostly absent subjects mean labels of
    another cohort, which would render an empty ("none recorded") history for each of them.
    """
    ids = labels.select("subject_id").unique()
    present = scan_events(meds_dir).select("subject_id").unique().join(ids.lazy(), on="subject_id").collect()
    absent = ids.join(present, on="subject_id", how="anti").sort("subject_id")
    if absent.height * 2 > ids.height:
        raise InputError(f"{labels_path}: {absent.height} of {ids.height} labelled subjects (e.g. "
                         f"{absent['subject_id'][0]}) have no events in {meds_dir}; are these labels of another "
                         "cohort? Pass the labels extracted from this MEDS dataset (`rationale-sft cohort extract`)")
    return absent.height


def check_same_config(out_dir: Path, cfg, force: bool) -> None:
    """Refuse to reuse a finished directory computed with another config (it would be skipped silently)."""
    stored = out_dir / rundir.CONFIG
    if force or not rundir.is_done(out_dir) or not stored.is_file():
        return
    if stored.read_text() != config.to_yaml(cfg):
        raise InputError(f"{out_dir} already holds a finished run with another config (see {stored}); "
                         "pass --force to overwrite it, or choose another --out")
