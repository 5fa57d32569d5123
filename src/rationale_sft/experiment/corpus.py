"""The pretraining corpus of from-scratch bases: other people's histories with label-free rationales.

The subjects come from a second synthetic cohort drawn with another seed, so no pretraining text
belongs to any task split. Each ``base`` text is one subject's prompt, rendered with the task's template
exactly as the fine-tuning prompts are (answer marker included), followed by the knowledge teacher's
label-blind rationale about that subject in one of the grid's rationale styles, then the answer marker
and the answer word of the rationale's own conclusion (" Yes" for likely, " No" for unlikely), exactly as
a rationale arm's target ends: a from-scratch base learns to read a history, to write a grounded rationale
about it and to answer after it, as a real LLM already can, but never sees an outcome. A blind rationale
concludes from the teacher's textbook points model, not from the label. ``reasoning`` texts (history + blind step-by-step reasoning) feed the reasoning-oriented base.
``short`` texts are the same people twice more: with nothing recorded but sex and age, and with their
measurements but no diagnosis; each is the prompt such a record gets and the teacher's blind rationale for it.
They teach, where the signal is dense, what the long texts bury: reading sex, age and the cited values off
the prompt (``pretrain.short_steps``).
Two kinds teach copying a value from the prompt (``pretrain.copy_steps``), which a tiny model does not learn
from the long texts in any affordable number of steps (it writes a typical value instead):
``drill`` texts are copy drills: a sex, an age and a person's measurement lines, all drawn anew (``drill_texts``),
then restated, the age and sex as a rationale states them and the measurements in another order, as a rationale
cites them; only copying can predict a restated fact. Factor drills (``factor_drill_texts``, with the
``recap_factors`` template) are a person's factors line, then each factor named, with its evidence and direction,
and the common factors the record lacks, once per person of the corpus; date drills (``date_drill_texts``) are the
same after a history, with a drawn sex and age and every diagnosis redated, so that only the line gives a cited
year. ``redrawn`` texts are the measured short texts again, on a copy of the cohort whose measurement values are
permuted across people within each measurement: the same prompts and teacher sentences as the rationales, with
values that only the prompt gives.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import polars as pl

from rationale_sft import config as cfglib
from rationale_sft import rundir

STYLES = ("freeform", "stepwise")
CORPUS_VERSION = 11
"""Bumped when the texts build_corpus writes change (2: short texts, 3: short texts with measurements too, 4: the
answer after each rationale, 5: copy drills and redrawn texts, 6: the record's word for sex, "female"/"male", and
drills that restate a sex and an age too, 7: factor drills, which restate them too, 8: the knowledge teacher's
record-worded diagnoses and a weighing that does not list again the factors just discussed, 9: date drills, 10:
diagnoses cited by their year, 11: the factors line split into a risk and a protective line), so a grid never
reuses an older corpus."""
COPY_DRILLS = 2
"Copy drills per pretraining subject with at least two measured values (each with its own values and order)."
COPY_QUESTION = "Question: Restate the sex, the age and every measurement."
FACTOR_QUESTION = "Name each factor in the record, whether it raises or lowers risk, and the common factors it lacks."
DATE_DRILL_OTHERS = 3
"Diagnoses other than the factors that a date drill's history lists beside them (drawn from the person's)."
DATE_DRILL_YEARS = 20
"A date drill's diagnoses are redated to at most this many years before the prediction time."
REDRAWS = 2
"Cohort copies with permuted measurement values, each giving every subject one redrawn text per style."


def build_corpus(out_dir: Path, synth: dict, task: dict, render: dict, seed: int, teacher: dict | None = None) -> dict:
    """Write ``corpus.parquet`` (kind: base | reasoning | short, text) into ``out_dir``; return counts.

    ``teacher`` (a ``TeacherConfig`` dict) sets the rationale styles, ``max_factors`` and ``cite`` of the base texts,
    so the base writes rationales shaped like the ones the rationale arms fine-tune on.
    """
    from rationale_sft.cohort.extract import extract_labels
    from rationale_sft.cohort.synth import synthesize
    from rationale_sft.config.render import RenderConfig
    from rationale_sft.config.synth import SynthConfig
    from rationale_sft.config.task import TaskConfig
    from rationale_sft.config.teacher import TeacherConfig
    from rationale_sft.rationales.facts import facts_for_labels
    from rationale_sft.render.stage import render_examples

    meds = out_dir / "cohort"
    synth_cfg = cfglib.build(SynthConfig, synth)
    rundir.run_stage(meds, lambda d: synthesize(synth_cfg, d), cfg=synth_cfg)
    labels, _ = extract_labels(cfglib.build(TaskConfig, task), meds)
    render_cfg = cfglib.build(RenderConfig, render)
    teacher_cfg = cfglib.build(TeacherConfig, teacher or {})
    prompts = render_examples(meds, labels, render_cfg)["prompt"].to_list()
    styles = [s for s in teacher_cfg.styles if s in STYLES] or list(STYLES)
    facts = facts_for_labels(meds, labels, render_cfg)  # read once, shared by both corpora
    ids = labels["subject_id"].to_list()
    base = rationale_texts(facts, ids, prompts, styles, seed, teacher_cfg.max_factors, joined=" ", cite=teacher_cfg.cite)
    reasoning = rationale_texts(facts, ids, prompts, ["stepwise"], seed, None, joined="\n", cite=teacher_cfg.cite)
    bare = {sid: dataclasses.replace(f, diagnoses=(), measurements=()) for sid, f in facts.items()}
    short = rationale_texts(bare, ids, bare_prompts(labels, render_cfg), styles, seed, teacher_cfg.max_factors,
                            joined=" ", cite=teacher_cfg.cite) \
        + measured_texts(meds, labels, facts, render_cfg, styles, seed, teacher_cfg)
    people = [facts[sid] for sid in dict.fromkeys(ids)]
    drills = drill_texts(people, render_cfg, seed) + factor_drill_texts(people, render_cfg) \
        + date_drill_texts(people, render_cfg, seed)
    redrawn = []
    for r in range(REDRAWS):
        with tempfile.TemporaryDirectory() as tmp:
            cohort = redrawn_cohort(meds, Path(tmp), seed + r)
            redrawn += measured_texts(cohort, labels, facts_for_labels(cohort, labels, render_cfg), render_cfg,
                                      styles, seed + r, teacher_cfg)
    texts = {"base": base + [knowledge_text()], "reasoning": reasoning, "short": short, "drill": drills,
             "redrawn": redrawn}
    table = pl.DataFrame({"kind": [k for k, v in texts.items() for _ in v],
                          "text": [t for v in texts.values() for t in v]})
    rundir.write_parquet(table, out_dir / "corpus.parquet")
    return {"n_subjects": labels.height, "n_texts": table.height, "styles": styles}


def measured_texts(meds: Path, labels: pl.DataFrame, facts: dict, render_cfg, styles: list[str], seed: int,
                   teacher_cfg) -> list[str]:
    """Per label row and style, the prompt of the subject's record with its measurements but no diagnosis
    (``measured_prompts``), then the teacher's blind rationale about those facts (``facts`` of ``meds``)."""
    measured = {sid: dataclasses.replace(f, diagnoses=()) for sid, f in facts.items()}
    return rationale_texts(measured, labels["subject_id"].to_list(), measured_prompts(meds, labels, render_cfg),
                           styles, seed, teacher_cfg.max_factors, joined=" ", cite=teacher_cfg.cite)


def measured_prompts(meds: Path, labels: pl.DataFrame, render_cfg) -> list[str]:
    """Per label row, the prompt its subject would get with its measurements but no diagnosis recorded: the
    renderer's own output for the record without its diagnosis events."""
    from rationale_sft.cohort.meds_io import scan_events
    from rationale_sft.render.stage import read_codes, render_parts

    events = scan_events(meds).filter(
        ~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in render_cfg.diagnosis_prefixes]))
    return render_parts(events, read_codes(meds), labels, render_cfg)["prompt"].to_list()


def bare_prompts(labels: pl.DataFrame, render_cfg) -> list[str]:
    """Per label row, the prompt its subject would get with no measurement and no diagnosis recorded: the
    renderer's own output for a record without events.

    >>> import datetime as dt
    >>> from rationale_sft.config.render import RenderConfig
    >>> labels = pl.DataFrame({"subject_id": [1], "prediction_time": [dt.datetime(2009, 6, 15)], "age": [74.6],
    ...                        "sex": ["F"]})
    >>> print(bare_prompts(labels, RenderConfig(template="recap"))[0])
    Health history recorded up to the assessment on 2009-06-15.
    Sex: female
    Age at assessment: 74 years
    Diagnoses before the assessment (first occurrence, oldest first):
    - none recorded
    About: female, 74 years old at the assessment.
    Question: Will this person be diagnosed with Alzheimer's disease or a related dementia within 5 years? Answer Yes or No.
    Answer:
    """
    from rationale_sft.render.stage import render_parts

    no_events = pl.LazyFrame(schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                     "numeric_value": pl.Float32})
    no_codes = pl.DataFrame(schema={"code": pl.String, "description": pl.String})
    return render_parts(no_events, no_codes, labels, render_cfg)["prompt"].to_list()


def rationale_texts(facts: dict, ids: list[int], prompts: list[str], styles: list[str], seed: int,
                    max_factors: int | None, joined: str, cite: str = "varied") -> list[str]:
    """One text per subject (``ids``, in the order of ``prompts``; ``facts`` by subject id) and style: the
    prompt, then the knowledge teacher's label-blind rationale.

    ``joined=" "`` keeps the prompt's answer marker and continues after it, as a rationale arm's target
    does, and ends as that target ends: the answer marker on a new line and the answer word of the rationale's
    own (label-blind) conclusion. ``joined="\\n"`` drops the marker (plain reasoning text, no answer).
    """
    from rationale_sft.config.train import TrainConfig
    from rationale_sft.rationales.knowledge import load_knowledge, write_rationale
    from rationale_sft.rationales.specs import strip_answer_slot
    from rationale_sft.train.arms import render_tasks
    from rationale_sft.train.data import segment_texts

    kb = load_knowledge()
    out = []
    for sid, prompt in zip(ids, prompts):
        head = prompt if joined == " " else strip_answer_slot(prompt)
        for style in styles:
            written = write_rationale(facts[sid], style, "blind", None, seed, kb, max_factors=max_factors,
                                      cite=cite)
            if joined == " ":  # the style's own arm renders the target: rationale, answer marker, label word
                task = render_tasks(TrainConfig(arm=style), head, written.conclusion == "Yes", written.text)[0]
                out.append(head + "".join(piece for _, piece in segment_texts(head, task.segments)))
            else:
                out.append(f"{head}{joined}{written.text}")
    return out


def redrawn_cohort(meds_dir: Path, out_dir: Path, seed: int) -> Path:
    """A copy of a MEDS cohort in ``out_dir`` whose numeric values are permuted across events within each code
    (each measurement keeps its distribution, a person's value becomes another's); events without a value and
    everything else unchanged.

    >>> import datetime as dt, tempfile
    >>> from rationale_sft.cohort.meds_io import scan_events, write_meds
    >>> t = dt.datetime(2000, 1, 1)
    >>> ev = pl.DataFrame({"subject_id": [1, 1, 2, 2, 3], "time": [t] * 5,
    ...                    "code": ["LDL", "FLAG", "LDL", "FLAG", "LDL"], "numeric_value": [1.0, None, 2.0, None, 3.0]})
    >>> src = write_meds(tempfile.mkdtemp(), ev, pl.DataFrame({"subject_id": [1, 2, 3], "split": ["train"] * 3}))
    >>> out = scan_events(redrawn_cohort(src, Path(tempfile.mkdtemp()), seed=0)).collect()
    >>> sorted(out.filter(pl.col("code") == "LDL")["numeric_value"]), out["numeric_value"].null_count()
    ([1.0, 2.0, 3.0], 2)
    """
    import meds

    from rationale_sft.cohort.meds_io import read_splits, scan_events, write_meds
    from rationale_sft.seeding import rng

    events = scan_events(meds_dir).collect()
    permute = int(rng(seed, "redrawn values").integers(2**31))
    valued = pl.col("numeric_value").is_not_null()
    events = pl.concat([events.filter(valued).with_columns(pl.col("numeric_value").shuffle(permute).over("code")),
                        events.filter(~valued)])
    codes = pl.read_parquet(Path(meds_dir) / meds.code_metadata_filepath)
    return write_meds(out_dir, events, read_splits(meds_dir), codes=codes)


def drill_texts(people: list, render_cfg, seed: int, drills: int = COPY_DRILLS) -> list[str]:
    """``drills`` copy drills per person (``Facts``) with at least two measured values: a sex, an age and the
    person's measurement lines as the prompt renders them, all drawn anew (the sex at random, the age uniform in
    the people's range, each value by ``drill_value``), then the question and, after the answer marker, the
    age and sex as a rationale states them ("70-year-old female") and every measurement as a rationale cites it
    (the record's line), in a shuffled order. The sex is drawn at random so that only reading it pays.

    >>> import datetime as dt
    >>> from rationale_sft.config.render import RenderConfig
    >>> from rationale_sft.rationales.facts import Facts, Measurement
    >>> def person(i, ldl, apoe):
    ...     return Facts(i, dt.datetime(2009, 1, 1), 60.0 + i, "F", measurements=(
    ...         Measurement("UKB//LDL", "LDL", "LDL cholesterol", " mmol/L", ldl),
    ...         Measurement("UKB//APOE", "APOE", "APOE e4 alleles", "", apoe)))
    >>> people = [person(i, ldl, i % 3) for i, ldl in enumerate([3.75, 3.1, 4.02, 2.9, 3.33, 4.6])]
    >>> print(drill_texts(people, RenderConfig(), seed=1, drills=1)[0])  # a 60-year-old woman, LDL 3.75, APOE 0
    Sex: male
    Age at assessment: 63 years
    Measurements at the assessment visit:
    - LDL cholesterol: 6.17 mmol/L
    - APOE e4 alleles: 1
    Question: Restate the sex, the age and every measurement.
    Answer: 63-year-old male; APOE e4 alleles: 1; LDL cholesterol: 6.17 mmol/L.
    """
    from rationale_sft.rationales.knowledge import SEX_WORD, record_line, who
    from rationale_sft.answer import ANSWER_MARKER
    from rationale_sft.render.templates import get_template
    from rationale_sft.render.vocab import format_number
    from rationale_sft.seeding import rng

    template = get_template(render_cfg.template)
    title = template.measurements_title.format(anchor=render_cfg.anchor)
    seen: dict[str, set[float]] = {}
    for person in people:
        for m in person.measurements:
            if m.value is not None:
                seen.setdefault(m.code, set()).add(m.value)
    levels = {code: sorted(values) for code, values in seen.items()}
    ages = [int(p.age) for p in people if p.age is not None] or [70]
    g, out = rng(seed, "copy drills"), []
    for person in people:
        measured = [m for m in person.measurements if m.value is not None]
        if len(measured) < 2:
            continue
        for _ in range(drills):
            sex, age = ("F", "M")[int(g.integers(2))], int(g.integers(min(ages), max(ages) + 1))
            drawn = [dataclasses.replace(m, value=drill_value(g, m.value, levels[m.code])) for m in measured]
            lines = [template.measurement_line.format(name=m.name, value=f"{format_number(m.value)}{m.unit}")
                     for m in drawn]
            restated = "; ".join([who(dataclasses.replace(person, sex=sex, age=float(age))),
                                  *(record_line(drawn[i]) for i in g.permutation(len(drawn)))])
            out.append("\n".join([template.demographics.format(sex=SEX_WORD[sex], age=age, anchor=render_cfg.anchor),
                                  title, *lines, COPY_QUESTION, f"{ANSWER_MARKER} {restated}."]))
    return out


def factor_drill_texts(people: list, render_cfg) -> list[str]:
    """One factor drill per person (``Facts``) whose record shows a knowledge-base factor, for templates with
    factors lines (``recap_factors``; none for others): the template's closing block about the person (sex, age,
    the risk and protective factors lines), ``FACTOR_QUESTION`` and, after the answer marker, each factor of the
    lines in their order, named as a rationale names it, with the record's evidence and its direction, then the
    common factors the record lacks, as a rationale denies them; the age and sex come first, as in a copy drill, so the
    drills that share the copy stage keep teaching to copy them. It is the reading a rationale's citations,
    weighing and denials rest on (which items of the line to cite, what "0" after "APOE e4 alleles" means, which
    common factor is absent), taught where nothing else is in the text.

    >>> import datetime as dt
    >>> from rationale_sft.config.render import RenderConfig
    >>> from rationale_sft.rationales.facts import Facts, Measurement
    >>> person = Facts(1, dt.datetime(2009, 1, 1), 68.4, "F", measurements=(
    ...     Measurement("UKB//LDL", "LDL", "LDL cholesterol", " mmol/L", 3.75),
    ...     Measurement("UKB//APOE_E4_ALLELES", "APOE_E4_ALLELES", "Number of APOE e4 alleles (0, 1, 2)", "", 0.0)))
    >>> print(factor_drill_texts([person], RenderConfig(template="recap_factors"))[0])
    About: female, 68 years old at the assessment.
    Risk factors in the record (strongest first): LDL cholesterol: 3.75 mmol/L.
    Protective factors in the record: Number of APOE e4 alleles (0, 1, 2): 0.
    Question: Name each factor in the record, whether it raises or lowers risk, and the common factors it lacks.
    Answer: 68-year-old female; high LDL cholesterol (LDL cholesterol: 3.75 mmol/L) raises risk; no APOE e4 allele (Number of APOE e4 alleles (0, 1, 2): 0) lowers risk. The record does not mention diabetes, stroke, depression, hearing loss, hypertension or atrial fibrillation.
    >>> factor_drill_texts([person], RenderConfig(template="recap"))
    []
    """
    from rationale_sft.rationales.knowledge import find_evidence, load_knowledge
    from rationale_sft.render.templates import get_template

    block = get_template(render_cfg.template).question_block
    if "{factors}" not in block:
        return []
    kb, out = load_knowledge(), []
    for person in people:
        if find_evidence(person, kb) and person.age is not None:
            out.append(_factor_drill(person, block, render_cfg.anchor, kb))
    return out


def _factor_drill(person, block: str, anchor: str, kb) -> str:
    """A factor drill about ``person`` (at least one knowledge-base factor, an age): the closing ``block`` with the
    factors lines, ``FACTOR_QUESTION``, then after the answer marker the person, each factor named with its evidence
    and direction, and the common factors the record lacks."""
    from rationale_sft.rationales.knowledge import (DIRECTIONS, SEX_WORD, absent_common, factors_fields,
                                                    find_evidence, record_cite, spoken_list, who)

    evidence = find_evidence(person, kb)
    in_lines = [e for d in DIRECTIONS for e in evidence if e.factor.direction == d]  # as the lines list them
    named = "; ".join(f"{e.factor.label} ({record_cite(e)}) {e.factor.direction} risk" for e in in_lines)
    missing = absent_common(evidence, kb)
    lacks = f" The record does not mention {spoken_list(missing)}." if missing else ""
    prompt = block.format(sex=SEX_WORD.get(person.sex or "", "unknown"), age=int(person.age), anchor=anchor,
                          question=FACTOR_QUESTION, **factors_fields(person, kb))
    return f"{prompt} {who(person)}; {named}.{lacks}"


def date_drill_texts(people: list, render_cfg, seed: int, drills: int = COPY_DRILLS,
                     others: int = DATE_DRILL_OTHERS) -> list[str]:
    """``drills`` date drills per person (``Facts``) whose record shows a knowledge-base factor that is a diagnosis,
    for templates with a factors line (``recap_factors``; none for others): a factor drill (``factor_drill_texts``)
    about the person with a sex and an age drawn anew and every diagnosis redated (``redated``), after the
    demographics and a history of the redated factor diagnoses and up to ``others`` of the person's other ones, as
    the prompt lists them. A diagnosis then appears as a history line and as the factors line states it (its year,
    as a rationale cites it), and only copying the year from the line predicts it: the reading a rationale's
    dated citations rest on, which the long texts, where each person's dates are seen once, do not teach a tiny model.

    >>> import datetime as dt
    >>> from rationale_sft.config.render import RenderConfig
    >>> from rationale_sft.rationales.facts import Diagnosis, Facts
    >>> pt = dt.datetime(2009, 6, 15, 23, 59, 59)
    >>> def dx(code, name, year):
    ...     t = dt.datetime(year, 3, 1)
    ...     return Diagnosis(f"ICD10//{code}", code, name, t, (pt - t).days, "")
    >>> person = Facts(1, pt, 68.4, "F", diagnoses=(dx("K50", "Crohn disease", 2001),
    ...                                               dx("I10", "Essential (primary) hypertension", 2003)))
    >>> print(date_drill_texts([person], RenderConfig(template="recap_factors"), seed=0, drills=1)[0])
    Sex: male
    Age at assessment: 68 years
    Diagnoses before the assessment (first occurrence, oldest first):
    - 1995-07 (13 years before assessment): Essential (primary) hypertension
    - 2008-05 (1 year before assessment): Crohn disease
    About: male, 68 years old at the assessment.
    Risk factors in the record (strongest first): Essential (primary) hypertension (1995).
    Protective factors in the record: none.
    Question: Name each factor in the record, whether it raises or lowers risk, and the common factors it lacks.
    Answer: 68-year-old male; hypertension (Essential (primary) hypertension (1995)) raises risk. The record does not mention diabetes, stroke, depression, hearing loss or atrial fibrillation.
    >>> date_drill_texts([person], RenderConfig(template="recap"), seed=0)
    []
    """
    from rationale_sft.rationales.knowledge import SEX_WORD, find_evidence, load_knowledge
    from rationale_sft.render.templates import get_template
    from rationale_sft.seeding import rng

    template = get_template(render_cfg.template)
    if "{factors}" not in template.question_block:
        return []
    kb, anchor = load_knowledge(), render_cfg.anchor
    ages = [int(p.age) for p in people if p.age is not None] or [70]
    youngest, oldest = min(ages), max(ages)
    g, out = rng(seed, "date drills"), []
    for person in people:
        # a factor's diagnosis is one of the person's (find_evidence reads them), so all of these are kept
        factor_codes = {e.diagnosis.code for e in find_evidence(person, kb) if e.diagnosis is not None}
        if not factor_codes:
            continue
        rest = [d for d in person.diagnoses if d.code not in factor_codes]
        for _ in range(drills):
            sex, age = ("F", "M")[int(g.integers(2))], int(g.integers(youngest, oldest + 1))
            kept = factor_codes | {rest[i].code for i in g.permutation(len(rest))[:others]}
            drawn = dataclasses.replace(person, sex=sex, age=age + 0.5, diagnoses=redated(
                [d for d in person.diagnoses if d.code in kept], person.prediction_time, anchor, g))
            lines = [template.history_line.format(date=d.date, ago=d.ago, name=d.name, code=d.short)
                     for d in drawn.diagnoses]
            head = "\n".join([template.demographics.format(sex=SEX_WORD[sex], age=age, anchor=anchor),
                              template.history_title.format(anchor=anchor), *lines])
            out.append(f"{head}\n{_factor_drill(drawn, template.question_block, anchor, kb)}")
    return out


def redated(diagnoses: list, prediction_time, anchor: str, g, max_years: int = DATE_DRILL_YEARS) -> tuple:
    """``diagnoses`` each first recorded at a day drawn anew, uniformly from 1 month to ``max_years`` years before
    ``prediction_time`` (at midnight, as a record's day), with the timing the prompt gives it; oldest first.

    >>> import datetime as dt
    >>> from rationale_sft.rationales.facts import Diagnosis
    >>> from rationale_sft.seeding import rng
    >>> pt = dt.datetime(2009, 6, 15, 23, 59, 59)
    >>> (d,) = redated([Diagnosis("ICD10//I10", "I10", "Hypertension", pt, 0, "")], pt, "assessment", rng(0, "doc"))
    >>> d.date, d.ago, d.days_before == (pt - d.time).days
    ('2009-04', '2 months before assessment', True)
    """
    import datetime as dt

    from rationale_sft.render.vocab import DAYS_PER_MONTH, DAYS_PER_YEAR, ago_phrase

    day = prediction_time.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for d in diagnoses:
        time = day - dt.timedelta(days=int(g.integers(int(DAYS_PER_MONTH) + 1, int(max_years * DAYS_PER_YEAR))))
        days = (prediction_time - time).days
        out.append(dataclasses.replace(d, time=time, days_before=days, ago=ago_phrase(days, anchor)))
    return tuple(sorted(out, key=lambda d: d.time))


def drill_value(g, value: float, levels: list[float]) -> float:
    """A drill's value for a measurement: one of its levels, uniformly, when it has at most 5 (a count, a yes/no
    item), else uniform between 0.4x and 1.8x + 1 the person's ``value``, with as many decimals as the record
    states: wider than the cohort's spread, so that a typical value is a poor guess and copying pays.

    >>> from rationale_sft.seeding import rng
    >>> g = rng(0, "doc")
    >>> drill_value(g, 1.0, [0.0, 1.0, 2.0]) in (0.0, 1.0, 2.0), 1.7 <= drill_value(g, 4.25, [1.0] * 9) <= 8.65
    (True, True)
    >>> str(drill_value(g, 27.0, list(range(20)))).endswith(".0")  # an integer stays an integer
    True
    """
    from rationale_sft.render.vocab import format_number

    if len(levels) <= 5:
        return levels[g.integers(len(levels))]
    low, high = sorted((0.4 * value, 1.8 * value + 1))
    return round(float(g.uniform(low, high)), len(format_number(value).partition(".")[2]))


def knowledge_text() -> str:
    """The knowledge base as plain sentences: every factor's direction, strength, mechanism and source."""
    from rationale_sft.rationales.knowledge import load_knowledge

    kb = load_knowledge()
    lines = []
    for f in kb.factors:
        verb = "raises" if f.direction == "raises" else "lowers"
        lines.append(f"{f.label} {verb} the risk of dementia ({f.strength}; relative risk about "
                     f"{f.relative_risk:g}). {f.mechanism} Source: {kb.sources.get(f.source, f.source).strip()}")
    return "\n".join(lines)
