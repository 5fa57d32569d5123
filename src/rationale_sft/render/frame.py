"""Vectorised rendering: every subject's prompt parts and full prompt in a few polars passes.

No Python loop runs per event or per subject: events are joined to the prediction times, filtered to
``time < prediction_time``, reduced to first diagnosis occurrences and last measurement values, turned
into lines with string expressions and joined per subject with ``group_by``.
"""

from __future__ import annotations

import polars as pl

from rationale_sft.config.render import RenderConfig
from rationale_sft.errors import InputError
from rationale_sft.render.history import KEYS, HistoryFrame, history_frame
from rationale_sft.render.templates import Template, check_template, fmt_expr
from rationale_sft.render.vocab import CHAPTERS, ago_expr, format_number_expr

_SEX = {"F": "female", "M": "male"}


def history_events(events: pl.LazyFrame, labels: pl.DataFrame, cfg: RenderConfig) -> pl.LazyFrame:
    """Timed events strictly before each subject's prediction time, excluded codes removed (the factors
    line reads age and sex from them)."""
    keys = labels.lazy().select(KEYS)
    return (events.join(keys, on="subject_id", how="inner")
            .filter(pl.col("time").is_not_null() & (pl.col("time") < pl.col("prediction_time"))
                    & ~pl.col("code").is_in(list(cfg.exclude_codes))))


def render_frame(events: pl.LazyFrame, codes: pl.DataFrame, labels: pl.DataFrame, cfg: RenderConfig,
                 t: Template) -> pl.DataFrame:
    """Per labelled subject: header, items (oldest first), group_ids, question and the full prompt."""
    check_template(t)
    frame = history_frame(events, codes, labels.select(KEYS), cfg)
    diag = _diagnoses(frame.diagnoses, cfg, t)
    meas = _measurements(frame.measurements, t)
    out = (labels.join(meas, on=KEYS, how="left").join(diag, on=KEYS, how="left")
           .with_columns(pl.col("n_history_items").fill_null(0),
                         pl.col("items").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                         pl.col("group_ids").fill_null(pl.lit([], dtype=pl.List(pl.Int64)))))
    sex, age = _demographics()
    factor_cols = []
    if "{factors}" in t.question_block:  # every labelled subject gets a row, 'none' without a factor
        factors = _factors(events, frame, labels, cfg)
        out = out.join(factors, on=KEYS, how="left")
        factor_cols = [c for c in factors.columns if c not in KEYS]
    question = fmt_expr(t.question_block, question=cfg.question, sex=sex, age=age, anchor=cfg.anchor,
                        **{c: pl.col(c) for c in factor_cols})
    return out.with_columns(header=_header(cfg, t), question=question) \
        .with_columns(prompt=pl.concat_str([
            pl.col("header"), pl.lit("\n"),
            pl.when(pl.col("n_history_items") > 0).then(pl.col("history_text")).otherwise(pl.lit(t.empty_history)),
            pl.lit("\n"), pl.col("question")])).drop("history_text", "meas_block", *factor_cols)


def _diagnoses(first: pl.DataFrame, cfg: RenderConfig, t: Template) -> pl.DataFrame:
    """First occurrences (the history frame's) -> lines; per subject: chronological items and the displayed history."""
    name = pl.concat_str([pl.col("name"), pl.lit(" ["), pl.col("short"), pl.lit("]")]) if cfg.show_codes \
        else pl.col("name")
    days = (pl.col("prediction_time") - pl.col("time")).dt.total_days()
    first = first.with_columns(line=fmt_expr(t.history_line, date=pl.col("time").dt.strftime("%Y-%m"),
                                             ago=ago_expr(days, cfg.anchor), name=name, code=pl.col("short")))
    chrono = first.sort([*KEYS, "time", "code"])
    items = chrono.group_by(KEYS, maintain_order=True).agg(
        items=pl.col("line"), group_ids=pl.col("chapter"), n_history_items=pl.len().cast(pl.Int64))
    if not t.group_title:
        return items.with_columns(history_text=pl.col("items").list.join("\n"))
    grouped = first.sort([*KEYS, "chapter", "time", "code"]).with_columns(
        new_group=(pl.col("chapter") != pl.col("chapter").shift(1)).over(KEYS).fill_null(True))
    heading = fmt_expr(t.group_title, group=pl.col("chapter").replace_strict(
        list(range(len(CHAPTERS))), list(CHAPTERS), default="Other", return_dtype=pl.String))
    grouped = grouped.with_columns(line=pl.when("new_group").then(pl.concat_str([heading, pl.lit("\n"), pl.col("line")]))
                                   .otherwise(pl.col("line")))
    text = grouped.group_by(KEYS, maintain_order=True).agg(history_text=pl.col("line").str.join("\n"))
    return items.join(text, on=KEYS)


def _measurements(last: pl.DataFrame, t: Template) -> pl.DataFrame:
    """Last values (the history frame's, in codes.parquet order) -> one line each, joined per subject."""
    value = pl.concat_str([format_number_expr(pl.col("numeric_value")), pl.col("unit_suffix")])
    line = pl.when(pl.col("numeric_value").is_null()).then(fmt_expr(t.flag_line, name=pl.col("name"))) \
        .otherwise(fmt_expr(t.measurement_line, name=pl.col("name"), value=value))
    return last.with_columns(line=line).group_by(KEYS, maintain_order=True).agg(
        meas_block=pl.col("line").str.join("\n"))


def _factors(events: pl.LazyFrame, frame: HistoryFrame, labels: pl.DataFrame, cfg: RenderConfig) -> pl.DataFrame:
    """Per labelled subject, the knowledge-base factors its history shows (``knowledge.factors_fields``): those that
    raise risk (``factors``) and those that lower it (``protective``)."""
    from rationale_sft.rationales.facts import facts_from_frame, people
    from rationale_sft.rationales.knowledge import FACTOR_FIELDS, factors_fields, load_knowledge

    if labels["subject_id"].n_unique() != labels.height:
        raise InputError("the recap_factors template needs one prediction time per subject; "
                         f"{labels.height - labels['subject_id'].n_unique()} subjects have more")
    facts = facts_from_frame(frame, people(history_events(events, labels, cfg).collect(), labels.select(KEYS)),
                             cfg.anchor)
    kb = load_knowledge()
    keys = labels.select(KEYS)
    none = dict.fromkeys(FACTOR_FIELDS, "none")
    fields = [factors_fields(facts[s], kb) if s in facts else none for s in keys["subject_id"].to_list()]
    return keys.with_columns(**{f: pl.Series([x[f] for x in fields], dtype=pl.String) for f in FACTOR_FIELDS})


def _demographics() -> tuple[pl.Expr, pl.Expr]:
    """Sex and age as the prompt writes them ('female', '74'; 'unknown' when missing)."""
    sex = pl.col("sex").replace_strict(list(_SEX), list(_SEX.values()), default="unknown", return_dtype=pl.String) \
        .fill_null("unknown")
    return sex, pl.col("age").floor().cast(pl.Int64).cast(pl.String).fill_null("unknown")


def _header(cfg: RenderConfig, t: Template) -> pl.Expr:
    """Intro, demographics, measurements (when any) and the history title, as one string expression."""
    sex, age = _demographics()
    meas = pl.when(pl.col("meas_block").is_not_null()).then(pl.concat_str([
        pl.lit("\n"), fmt_expr(t.measurements_title, anchor=cfg.anchor), pl.lit("\n"), pl.col("meas_block")])) \
        .otherwise(pl.lit(""))
    return pl.concat_str([
        fmt_expr(t.intro, anchor=cfg.anchor, date=pl.col("prediction_time").dt.strftime("%Y-%m-%d")), pl.lit("\n"),
        fmt_expr(t.demographics, sex=sex, age=age, anchor=cfg.anchor), meas, pl.lit("\n"),
        fmt_expr(t.history_title, anchor=cfg.anchor)])
