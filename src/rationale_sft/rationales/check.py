"""Rationale quality: grounding in the record, future leakage, knowledge accuracy, labels, length, diversity.

Claims are read from free text, so any teacher's rationale can be checked: diagnosis names and ICD-10
codes from ``codes.parquet``, factor and measurement names from the knowledge base, numbers after a
measurement name, "N years/months before" phrases, calendar months (YYYY-MM), age and sex. A claim is
``grounded`` when the record shows it before the prediction time, ``future`` when the record shows it only
at or after the prediction time (a leak of the outcome window), ``ungrounded`` otherwise; a negated
mention of something the record does show is ``contradicted``. A factor mentioned with a direction
("raises", "protective") is checked against the knowledge base's direction.

>>> lex = Lexicon.build(pl.DataFrame({"code": ["ICD10//I10"], "description": ["Essential (primary) hypertension"]}),
...                     load_knowledge())
>>> text = "Essential (primary) hypertension and LDL 4.1."
>>> [(text[s:e], key) for s, e, key in lex.mentions(text)]
[('Essential (primary) hypertension', 'dx:I10'), ('LDL', 'meas:LDL')]
>>> negated("There is no record of diabetes", 22), negated("Diabetes, but no stroke", 0)
(True, False)
>>> distinct_n(["a b a b", "a b c"], 2)
0.6
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from rationale_sft import config, rundir
from rationale_sft.config.render import RenderConfig
from rationale_sft.errors import InputError
from rationale_sft.rationales.facts import Facts, facts_for_labels
from rationale_sft.rationales.knowledge import KnowledgeBase, find_evidence, load_knowledge
from rationale_sft.rationales.specs import parse_reply
from rationale_sft.answer import ANSWER_MARKER
from rationale_sft.render.vocab import DAYS_PER_MONTH, DAYS_PER_YEAR, code_suffix, split_unit

OUTCOME_CODES = ("F00", "F01", "F02", "F03", "G30")
REQUIRED = ("subject_id", "style", "mode", "text", "conclusion")
_WORD = re.compile(r"[a-z0-9][\w'.-]*[\w']|[a-z0-9]")
_NEG = re.compile(r"\b(no|not|without|absent|absence of|none|neither|nor|free of|lacks?|lacking|never)\b")
_CLAUSE = re.compile(r";|:|\bbut\b|\bwhile\b|\bwhereas\b|\balthough\b|\bthough\b|\bdespite\b|\bhowever\b")
_NUM_AFTER = re.compile(r"^[\s:=]*(?:(?:of|at|was|is|about|around)\s+)?(-?\d+(?:\.\d+)?)(?![\d-])")
_TIMING = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten)\s+(year|month)s?\s+"
                     r"(before|prior to|earlier|ago|after (?:the )?(?:assessment|baseline|prediction|index))\b")
_YEAR = re.compile(r"\b(?:in|since|from|during|by)\s+((?:19|20)\d\d)\b(?!-\d)")
_DATE = re.compile(r"\b((?:19|20)\d\d)-(0[1-9]|1[0-2])\b")
_DX_YEAR = re.compile(r"\(((?:19|20)\d\d)\)")
_AGE = re.compile(r"\b(\d{2})[- ]year[- ]old\b|\baged (\d{2})\b|\bage (\d{2})\b|\bat (\d{2}),|\b(\d{2}) years old\b"
                  r"|\b(?:was|is) (\d{2}) at\b|\b(?:woman|man|person|patient) of (\d{2})\b")
_RAISE = re.compile(r"\b(raises?|raising|increases?|increasing|adds? risk|risk factor|elevat\w*|higher risk|"
                    r"times the risk|-fold|worsens?)\b|-fold")
_LOWER = re.compile(r"\b(lowers?|lowering|reduces?|reducing|protective|protects?|decreases?|lower risk|"
                    r"in (?:this person's|their|her|his) favour)\b")
_PAST = re.compile(r"\b(was|were|has been|had been|got|received)\s+(?:later\s+)?diagnosed\b|\bdeveloped\b|\bwent on to\b")
_SEX_WORDS = {"F": frozenset({"woman", "female", "she"}), "M": frozenset({"man", "male", "he"})}
_SEX_WORD = re.compile(r"\b(woman|female|she|man|male|he)\b")
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


@dataclass
class Lexicon:
    """Names that can be claimed about a subject, by first word: diagnoses, factors, measurements."""

    by_first: dict = field(default_factory=dict)
    codes: frozenset = frozenset()

    @classmethod
    def build(cls, codes: pl.DataFrame, kb: KnowledgeBase, cfg: RenderConfig | None = None) -> Lexicon:
        """Names from codes.parquet descriptions and the knowledge base (factor names win collisions).

        Codes are read as the render config reads them: its diagnosis and measurement prefixes, its
        description suffixes, its excluded codes.
        """
        cfg = cfg or RenderConfig()
        names: dict[str, str] = {}
        diag: set[str] = set()
        for code, desc in zip(codes["code"].to_list(), codes["description"].to_list()):
            if not desc or code in cfg.exclude_codes:
                continue
            if code.startswith(cfg.diagnosis_prefixes) and len(desc) >= 4:
                diag.add(code_suffix(code, cfg.diagnosis_prefixes))
                names[desc.lower()] = f"dx:{code_suffix(code, cfg.diagnosis_prefixes)}"
            elif cfg.measurement_prefixes and code.startswith(cfg.measurement_prefixes):
                text = desc
                for s in cfg.description_drop:
                    text = text[: -len(s)] if s and text.endswith(s) else text
                names[split_unit(text)[0].lower()] = f"meas:{code_suffix(code, cfg.measurement_prefixes)}"
        for short, meas_names in kb.measurement_names.items():
            names.update({n.lower(): f"meas:{short}" for n in meas_names})
        for f in kb.factors:
            names.update({n.lower(): f"factor:{f.id}" for n in f.names})
        lex = cls(codes=frozenset(diag))
        for name, key in names.items():
            first = _WORD.match(name)
            if first:
                lex.by_first.setdefault(first.group(), []).append((name, key))
        for cands in lex.by_first.values():
            cands.sort(key=lambda nk: -len(nk[0]))
        return lex

    def mentions(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, key) mentions, longest first; ICD-10 codes written as 'I10' too."""
        low, found = text.lower(), []
        for m in _WORD.finditer(low):
            if m.start() and (low[m.start() - 1].isalnum()):
                continue
            for name, key in self.by_first.get(m.group(), ()):
                end = m.start() + len(name)
                if low.startswith(name, m.start()) and (end == len(low) or not low[end].isalnum()):
                    found.append((m.start(), end, key))
                    break
        found += [(m.start(), m.end(), f"dx:{m.group(1)}") for m in re.finditer(r"\b([A-Z]\d\d)(?:\.\d)?\b", text)
                  if m.group(1) in self.codes]
        out, last = [], -1
        for s, e, k in sorted(found, key=lambda x: (x[0], -x[1])):
            if s >= last:
                out.append((s, e, k))
                last = e
        return out


def negated(sentence: str, start: int, spans: list | tuple = ()) -> bool:
    """Whether a negation cue precedes position ``start`` within its clause (outside other mentions' text).

    >>> negated("Stroke, not specified as haemorrhage, and stroke", 42, [(0, 35, "dx:I64")])
    False
    """
    low = sentence.lower()[:start]
    for s, e, _ in spans:  # a 'not' inside a diagnosis name ('Stroke, not specified ...') negates nothing
        if s < start:
            low = low[:s] + " " * (min(e, start) - s) + low[min(e, start):]
    cuts = [m.end() for m in _CLAUSE.finditer(low)]
    return bool(_NEG.search(low[cuts[-1] if cuts else 0:]))


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of whitespace tokens (lower-cased) across ``texts``."""
    grams = [tuple(t[i:i + n]) for t in (x.lower().split() for x in texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Claim:
    """One checked claim: what was said, its kind, and its status."""

    kind: str
    text: str
    status: str
    detail: str = ""


class SubjectView:
    """A subject's facts indexed for claim checks."""

    def __init__(self, facts: Facts, kb: KnowledgeBase):
        self.facts, self.kb = facts, kb
        self.before = {d.short[:3]: d for d in facts.diagnoses}
        self.later = {d.short[:3]: d for d in facts.later_diagnoses if d.short[:3] not in self.before}
        self.meas = {m.short: m for m in facts.measurements}
        self.factors = {e.factor.id for e in find_evidence(facts, kb)}

    def factor_status(self, factor_id: str) -> str:
        """grounded (the record shows the factor), future (only at/after the prediction time) or ungrounded."""
        if factor_id in self.factors:
            return "grounded"
        f = self.kb.factor(factor_id)
        return "future" if any(c in self.later for c in f.diagnoses) else "ungrounded"

    def dx_status(self, short: str) -> str:
        """grounded, future or ungrounded for a 3-character diagnosis code."""
        return "grounded" if short in self.before else "future" if short in self.later else "ungrounded"

    def direction_of(self, key: str) -> str | None:
        """The knowledge-base direction a mention stands for in this subject (None when unknown)."""
        kind, _, ident = key.partition(":")
        if kind == "factor":
            return self.kb.factor(ident).direction
        for f in self.kb.factors:
            if kind == "dx" and ident in f.diagnoses or kind == "meas" and ident in self.meas and any(
                    r.matches(self.meas[ident]) for r in f.measurements):
                return f.direction
        return None


def check_text(text: str, view: SubjectView, lex: Lexicon) -> tuple[list[Claim], dict]:
    """All claims of one rationale about one subject, and the direction-accuracy counts."""
    claims: list[Claim] = []
    directions = {"checked": 0, "wrong": 0}
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
        ments = lex.mentions(sentence)
        claims += _sentence_claims(sentence, ments, view)
        start = 0
        for clause in sentence.split(";"):  # directions are judged per clause, with the sentence's mentions
            end = start + len(clause)
            _directions(clause, [(s - start, e - start, k) for s, e, k in ments if start <= s < end], view, directions)
            start = end + 1
    return claims, directions


def _sentence_claims(sentence: str, ments: list, view: SubjectView) -> list[Claim]:
    out, f = [], view.facts
    dx_spans = []
    for s, e, key in ments:
        kind, _, ident = key.partition(":")
        span = sentence[s:e]
        if kind == "dx" and ident[:3] in OUTCOME_CODES:
            if _PAST.search(sentence) or _DATE.search(sentence) or _TIMING.search(sentence):
                out.append(Claim("outcome", span, "future" if ident[:3] in view.later else "ungrounded",
                                 "the outcome stated as a fact about this subject"))
            continue
        if negated(sentence, s, ments):
            present = kind == "dx" and ident[:3] in view.before or kind == "factor" and ident in view.factors
            if present:
                out.append(Claim("negation", span, "contradicted", "denied, but the record shows it"))
            continue
        if kind == "dx":
            out.append(Claim("diagnosis", span, view.dx_status(ident[:3])))
            dx_spans.append((s, view.before.get(ident[:3]) or view.later.get(ident[:3])))
        elif kind == "factor":
            out.append(Claim("factor", span, view.factor_status(ident)))
            codes = view.kb.factor(ident).diagnoses
            dx_spans.append((s, next((view.before[c] for c in codes if c in view.before), None)
                             or next((view.later[c] for c in codes if c in view.later), None)))
        else:
            out.append(_measurement_claim(sentence, e, span, ident, view))
    out += _timing_claims(sentence, dx_spans, f)
    out += _demographic_claims(sentence, f)
    return out


def _measurement_claim(sentence: str, end: int, span: str, short: str, view: SubjectView) -> Claim:
    m = view.meas.get(short)
    num = _NUM_AFTER.match(sentence[end:end + 24])
    if m is None:
        return Claim("measurement", span, "ungrounded", "not measured before the prediction time")
    if num is None or m.value is None:
        return Claim("measurement", span, "grounded")
    said = float(num.group(1))
    ok = abs(said - m.value) <= 0.01 * max(1.0, abs(m.value)) + 0.005
    return Claim("measurement", f"{span} {num.group(1)}", "grounded" if ok else "ungrounded",
                 "" if ok else f"record: {m.value:g}")


def _timing_claims(sentence: str, dx_spans: list, f: Facts) -> list[Claim]:
    out = []
    for m in _TIMING.finditer(sentence.lower()):
        n = int(_WORDS.get(m.group(1), m.group(1)) if not m.group(1).isdigit() else m.group(1))
        if m.group(3).startswith("after"):
            out.append(Claim("timing", m.group(0), "future", "describes time after the prediction time"))
            continue
        # the diagnosis a timing belongs to: the nearest one named before it, else the nearest after it
        near = sorted(dx_spans, key=lambda sd: (sd[0] > m.start(), abs(sd[0] - m.start())))
        cands = [d for _, d in near if d is not None][:1] or list(f.diagnoses)
        unit = DAYS_PER_YEAR if m.group(2) == "year" else DAYS_PER_MONTH
        ok = any(abs(n - d.days_before // unit) <= 1 and d.days_before >= 0 for d in cands)
        out.append(Claim("timing", m.group(0), "grounded" if ok else "ungrounded",
                         "" if ok else "no diagnosis at that time before the prediction time"))
    for m in _YEAR.finditer(sentence):
        year = int(m.group(1))
        ok = year == f.prediction_time.year or any(d.time.year == year for d in f.diagnoses)
        out.append(Claim("year", m.group(1), "grounded" if ok else "future" if year > f.prediction_time.year
                         else "ungrounded"))
    for m in _DX_YEAR.finditer(sentence):  # "Essential (primary) hypertension (2001)": the named diagnosis's year
        year = int(m.group(1))
        named = [d for s, d in sorted(dx_spans, key=lambda sd: sd[0], reverse=True) if s < m.start()][:1]
        cands = [d for d in named if d is not None] or ([] if named else list(f.diagnoses))
        ok = any(d.time.year == year and d.days_before >= 0 for d in cands)
        out.append(Claim("year", m.group(0), "grounded" if ok else "future" if year > f.prediction_time.year
                         else "ungrounded", "" if ok else "not the year the diagnosis was first recorded"))
    for m in _DATE.finditer(sentence):
        month = m.group(0)
        ok = any(d.date == month for d in f.diagnoses)
        later = month >= f.prediction_time.strftime("%Y-%m") and not ok
        out.append(Claim("date", month, "grounded" if ok else "future" if later else "ungrounded"))
    return out


def _demographic_claims(sentence: str, f: Facts) -> list[Claim]:
    out = []
    for m in _AGE.finditer(sentence.lower()):
        said = int(next(g for g in m.groups() if g))
        ok = f.age is not None and abs(said - int(f.age)) <= 1
        out.append(Claim("age", m.group(0), "grounded" if ok else "ungrounded", f"record: {f.age and int(f.age)}"))
    words = set(_SEX_WORD.findall(sentence.lower()))
    if words and f.sex in ("F", "M"):
        right = words & _SEX_WORDS[f.sex]
        out += [Claim("sex", sorted(right)[0], "grounded")] if right else []  # one per sentence: no padding
        out += [Claim("sex", w, "ungrounded", f"record: {f.sex}") for w in sorted(words - right)]
    return out


def _directions(clause: str, ments: list, view: SubjectView, counts: dict) -> None:
    low = clause.lower()
    raise_, lower_ = bool(_RAISE.search(low)), bool(_LOWER.search(low))
    if raise_ == lower_:
        return  # no cue, or both: nothing to check
    said = "raises" if raise_ else "lowers"
    dirs = {view.direction_of(k) for s, _, k in ments if not negated(clause, s, ments)} - {None}
    if len(dirs) == 1:
        counts["checked"] += 1
        counts["wrong"] += int(dirs.pop() != said)


def check_rows(rationales: pl.DataFrame, facts: dict[int, Facts], labels: pl.DataFrame, lex: Lexicon,
               kb: KnowledgeBase, count_tokens=None) -> pl.DataFrame:
    """One row per rationale: claim counts by status, direction checks, conclusion and label checks, length."""
    label_of = dict(zip(labels["subject_id"].to_list(), labels["boolean_value"].to_list()))
    views: dict[int, SubjectView] = {}
    rows = []
    for r in rationales.iter_rows(named=True):
        sid = r["subject_id"]
        if sid not in facts:
            raise InputError(f"rationale for subject {sid} has no labelled record; check that --labels and --meds "
                             "are the cohort the rationales were generated for")
        view = views.setdefault(sid, SubjectView(facts[sid], kb))
        claims, dirs = check_text(r["text"], view, lex)
        rows.append(_row(r, claims, dirs, label_of.get(sid), count_tokens))
    return pl.DataFrame(rows, schema=_ROW_SCHEMA)


_ROW_SCHEMA = {"subject_id": pl.Int64, "backend": pl.String, "model": pl.String, "style": pl.String,
               "mode": pl.String, "n_claims": pl.Int64, "n_grounded": pl.Int64, "n_ungrounded": pl.Int64,
               "n_future": pl.Int64, "n_contradicted": pl.Int64, "n_direction_checked": pl.Int64,
               "n_direction_wrong": pl.Int64, "conclusion": pl.String, "conclusion_parsed": pl.String,
               "label": pl.Boolean, "label_consistent": pl.Boolean, "teacher_risk": pl.Float64,
               "answer_marker": pl.Boolean, "n_words": pl.Int64, "n_tokens": pl.Int64,
               "claims": pl.List(pl.String), "problems": pl.List(pl.String)}


def _row(r: dict, claims: list[Claim], dirs: dict, label: bool | None, count_tokens) -> dict:
    status = [c.status for c in claims]
    try:
        parsed = parse_reply(r["text"], r["style"], r["mode"]).conclusion
    except InputError:
        parsed = None
    return {"subject_id": r["subject_id"], "backend": r.get("backend") or "", "model": r.get("model") or "",
            "style": r["style"], "mode": r["mode"], "n_claims": len(claims),
            "n_grounded": status.count("grounded"), "n_ungrounded": status.count("ungrounded"),
            "n_future": status.count("future"), "n_contradicted": status.count("contradicted"),
            "n_direction_checked": dirs["checked"], "n_direction_wrong": dirs["wrong"],
            "conclusion": r["conclusion"], "conclusion_parsed": parsed, "label": label,
            "label_consistent": None if label is None else (r["conclusion"] == "Yes") == bool(label),
            "teacher_risk": r.get("teacher_risk"), "answer_marker": ANSWER_MARKER.lower() in r["text"].lower(),
            "n_words": len(r["text"].split()), "n_tokens": count_tokens(r["text"]) if count_tokens else None,
            "claims": [f"{c.kind}:{c.status}" for c in claims],
            "problems": [f"{c.status} {c.kind}: {c.text!r}" + (f" ({c.detail})" if c.detail else "")
                         for c in claims if c.status != "grounded"]}


def summarise(rows: pl.DataFrame, texts: list[str]) -> dict:
    """Quality figures of one rationale set (rows of ``check_rows`` and their texts)."""
    n_claims = int(rows["n_claims"].sum())
    words = rows["n_words"].to_numpy()
    out = {"n": rows.height, "n_claims": n_claims,
           "grounding_rate": int(rows["n_grounded"].sum()) / n_claims if n_claims else None,
           "ungrounded_claims": int(rows["n_ungrounded"].sum()), "future_claims": int(rows["n_future"].sum()),
           "contradicted_claims": int(rows["n_contradicted"].sum()),
           "fully_grounded_share": float((rows["n_grounded"] == rows["n_claims"]).mean()),
           "direction_checked": int(rows["n_direction_checked"].sum()),
           "direction_accuracy": _ratio(rows["n_direction_checked"].sum() - rows["n_direction_wrong"].sum(),
                                        rows["n_direction_checked"].sum()),
           "conclusion_parse_agreement": float((rows["conclusion"] == rows["conclusion_parsed"]).fill_null(False).mean()),
           "label_agreement": _mean(rows["label_consistent"]),
           "answer_marker_leaks": int(rows["answer_marker"].sum()),
           "words_mean": float(words.mean()), "words_median": float(np.median(words)),
           "words_p90": float(np.percentile(words, 90)),
           **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)}}
    if rows["n_tokens"].null_count() < rows.height:
        toks = rows["n_tokens"].drop_nulls().to_numpy()
        out.update(tokens_mean=float(toks.mean()), tokens_median=float(np.median(toks)),
                   tokens_p90=float(np.percentile(toks, 90)))
    tally = rows.select(pl.col("claims").explode().drop_nulls().value_counts(sort=True)).unnest("claims")
    out["claims_by_kind"] = {k: int(n) for k, n in zip(tally["claims"].to_list(), tally["count"].to_list())}
    out["teacher_auroc"] = _auroc(rows, "label")
    out["risk_conclusion_auroc"] = _auroc(rows.with_columns(said_yes=pl.col("conclusion") == "Yes"), "said_yes")
    return out


def _ratio(num, den) -> float | None:
    return float(num) / float(den) if den else None


def _mean(s: pl.Series) -> float | None:
    s = s.drop_nulls()
    return float(s.cast(pl.Float64).mean()) if s.len() else None


def _auroc(rows: pl.DataFrame, target: str) -> float | None:
    """AUROC of the teacher's risk against a boolean column (the label, or its own conclusion)."""
    ok = rows.filter(pl.col("teacher_risk").is_not_null() & pl.col(target).is_not_null())
    if ok.height == 0 or ok[target].n_unique() < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(ok[target].to_numpy(), ok["teacher_risk"].to_numpy()))


def quality_markdown(groups: list[dict]) -> str:
    """A markdown table of the quality figures, one row per rationale set."""
    cols = [("set", "set"), ("n", "n"), ("grounding", "grounding_rate"), ("ungrounded", "ungrounded_claims"),
            ("future", "future_claims"), ("contradicted", "contradicted_claims"), ("direction acc.", "direction_accuracy"),
            ("label agr.", "label_agreement"), ("AUROC", "teacher_auroc"), ("words mean", "words_mean"),
            ("median", "words_median"), ("p90", "words_p90"), ("distinct-1", "distinct_1"),
            ("distinct-2", "distinct_2"), ("distinct-3", "distinct_3")]
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(g[k]) for _, k in cols) + " |" for g in groups]
    return "# Rationale quality\n\n" + "\n".join(lines) + "\n\n" + _LEGEND


_LEGEND = ("grounding: share of claims about the subject (diagnoses, measurement values, timings, dates, age, "
           "sex) that the record shows before the prediction time; future: claims the record shows only at or "
           "after it; contradicted: negations of recorded facts; direction acc.: cited factors whose direction "
           "agrees with the knowledge base; label agr.: conclusion equals the true label (conditioned mode: "
           "must be 1.0); AUROC: of the teacher's own risk (blind mode) against the label (risk_conclusion_auroc "
           "in quality.json: against its own conclusion, 1.0 when risk and conclusion agree); words: whitespace "
           "tokens; distinct-n: distinct n-grams over all n-grams in the set.\n")


def check_rationales(rationales_df: pl.DataFrame, meds_dir: str | Path, labels: pl.DataFrame | str | Path,
                     out_dir: str | Path, tokenizer: str | None = None, force: bool = False,
                     render_cfg: RenderConfig | None = None) -> dict:
    """Check a rationale set; write quality.json, quality.md and rows.parquet into ``out_dir``; return the figures.

    ``render_cfg`` says how codes are read (diagnosis/measurement prefixes; default: the render defaults).
    """
    from rationale_sft.cohort.meds_io import read_labels
    from rationale_sft.render.stage import check_same_config, read_codes

    missing = [c for c in REQUIRED if c not in rationales_df.columns]
    if missing:
        raise InputError(f"rationales table lacks column(s) {', '.join(missing)}; it needs {', '.join(REQUIRED)} "
                         "(contract section 5)")
    labels = read_labels(labels) if not isinstance(labels, pl.DataFrame) else labels
    out_dir = Path(out_dir)

    def work(run_dir: Path) -> dict:
        kb = load_knowledge()
        subjects = labels.filter(pl.col("subject_id").is_in(rationales_df["subject_id"].unique().to_list()))
        facts = facts_for_labels(meds_dir, subjects, render_cfg, include_later=True)
        rows = check_rows(rationales_df, facts, subjects, Lexicon.build(read_codes(meds_dir), kb, render_cfg), kb,
                          _token_counter(tokenizer))
        quality = _group_quality(rows, rationales_df["text"].to_list())
        rundir.write_parquet(rows, run_dir / "rows.parquet")
        rundir.write_json(run_dir / "quality.json", quality)
        rundir.write_text(run_dir / "quality.md", quality_markdown(quality["groups"]))
        return {"n_rationales": rows.height}

    render_cfg = render_cfg or RenderConfig()
    cfg = {"tokenizer": tokenizer, "render": config.to_dict(render_cfg), "rationales_hash": rundir.hash_text(
        rationales_df.select(REQUIRED).write_csv()), "n_rationales": rationales_df.height}
    check_same_config(out_dir, cfg, force)
    rundir.run_stage(out_dir, work, cfg=cfg, inputs={"meds": meds_dir}, force=force)
    return rundir.read_json(out_dir / "quality.json")


def _group_quality(rows: pl.DataFrame, texts: list[str]) -> dict:
    keyed = rows.with_columns(pl.Series("text", texts), pl.concat_str(
        ["backend", "model", "style", "mode"], separator="/").alias("set"))
    groups = []
    for (name,), part in keyed.group_by(["set"], maintain_order=True):
        first = part.row(0, named=True)
        groups.append({"set": name, **{k: first[k] for k in ("backend", "model", "style", "mode")},
                       **summarise(part, part["text"].to_list())})
    return {"groups": groups, "overall": summarise(rows, texts)}


def _token_counter(tokenizer: str | None):
    if tokenizer is None:
        return None
    from transformers import AutoTokenizer  # heavy: only when asked for

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


__all__ = ["Lexicon", "Claim", "SubjectView", "check_text", "check_rows", "summarise", "check_rationales",
           "quality_markdown", "distinct_n", "negated"]
