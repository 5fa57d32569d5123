"""Calibrated synthetic UK-Biobank-like cohort written as a MEDS dataset with the exact ADRD risk.

``synthesize(cfg, out_dir)`` draws ``cfg.n_subjects`` people in shards of ``cfg.shard_size`` (each shard has
its own named random generators, so the files depend on the seed and the shard size only), writes
``data/shard_*.parquet``, ``metadata/{codes.parquet,dataset.json,subject_splits.parquet}``,
``truth/risk.parquet`` and ``summary.json``, and returns the summary. The generative process and its
references are in docs/synthetic_cohort.md; the layout is section 1 of docs/contracts.md.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import meds
import numpy as np
import pyarrow as pa

from rationale_sft import __version__, config, rundir
from rationale_sft.cohort import synth_report
from rationale_sft.cohort.synth_catalog import ADRD_CODES, Catalog, build_catalog, description, parent_block
from rationale_sft.cohort.synth_hazard import (HORIZON, Scales, fit_scales, five_year_risk, log_hazards, raw_scores,
                                               sample_outcomes)
from rationale_sft.cohort.synth_people import MEASUREMENTS, SMOKING, YEAR, People, draw_diagnoses, draw_people, \
    measurement_values, prodromal_signs
from rationale_sft.config.synth import SynthConfig
from rationale_sft.seeding import rng

DAY_US = 86_400 * 1_000_000
NULL_TIME = np.iinfo(np.int64).min
EPOCH_1800_S = -5_364_662_400
"1800-01-01 in seconds since 1970: the origin of the packed sort key."
UKB_DESCRIPTIONS = {
    "EDUCATION_YEARS": "Years of full-time education (from the highest qualification)",
    "TOWNSEND": "Townsend deprivation index of the home postcode at recruitment",
    "APOE_E4_ALLELES": "Number of APOE e4 alleles (0, 1, 2)",
    "ALCOHOL_UNITS_WEEK": "Alcohol intake, UK units per week",
    "BMI": "Body mass index, kg/m2", "LDL": "LDL cholesterol, mmol/L", "SBP": "Systolic blood pressure, mmHg",
    "HBA1C": "Glycated haemoglobin (HbA1c), mmol/mol",
    "MET_MIN_WEEK": "Physical activity, MET-minutes per week (IPAQ)",
    "HEARING_DIFFICULTY": "Self-reported hearing difficulty (1 = yes, 0 = no)",
    "VISION_PROBLEM": "Self-reported eye or vision problem (1 = yes, 0 = no)",
    "SOCIAL_ISOLATION": "Social isolation score 0-3 (lives alone, rare visits, no weekly group activity)",
    "PM25": "Annual mean PM2.5 air pollution at the home address, ug/m3",
}


MAX_EVENTS = 100_000_000
"Largest cohort `cohort synth` writes without --allow-large (about 3.8 million subjects at the defaults)."


def estimate_size(cfg: SynthConfig) -> dict[str, int]:
    """Rough size of the cohort before it is drawn: events (data rows) and bytes on disk.

    Measured on this generator: about 19 events per subject (demographics, the baseline assessment's
    measurements, outcomes) plus ``mean_codes`` diagnoses; about 4 bytes per compressed event plus 27 per
    subject for the truth table.

    >>> estimate_size(SynthConfig(n_subjects=20_000))
    {'events': 520000, 'bytes': 2620000}
    """
    events = int(round(cfg.n_subjects * (19 + cfg.mean_codes)))
    return {"events": events, "bytes": 4 * events + 27 * cfg.n_subjects}


def vocabulary(cat: Catalog) -> tuple[str, ...]:
    """Every code the generator writes, in the order that breaks ties between events at the same time."""
    return ("SEX//F", "SEX//M", "MEDS_BIRTH", *(f"ICD10//{c}" for c in cat.codes),
            *(f"UKB//{m}" for m in MEASUREMENTS), *(f"UKB//SMOKING//{s}" for s in SMOKING),
            "UKB//ASSESSMENT", "UKB//LOST_TO_FOLLOWUP", "MEDS_DEATH")


def synthesize(cfg: SynthConfig, out_dir: str | Path) -> dict:
    """Write the synthetic MEDS dataset, its truth table and summary into ``out_dir``; return the summary."""
    out_dir = Path(out_dir)
    cat = build_catalog(cfg.world_seed, cfg.mean_codes, cfg.prevalence_exponent, cfg.n_hidden_codes)
    scales = calibrate(cfg, cat)
    for old in (out_dir / "data").glob("shard_*.parquet"):  # a rerun with fewer shards leaves none behind
        old.unlink()
    results = _run_shards(cfg, cat, scales, out_dir)
    truth = {k: np.concatenate([r[0][k] for r in results]) for k in results[0][0]}
    counts = np.sum([r[1] for r in results], axis=0)
    _write_metadata(cfg, cat, out_dir)
    _write_truth(truth, out_dir)
    summary = synth_report.summarize(cfg, truth, counts, vocabulary(cat), sum(r[2] for r in results))
    rundir.write_json(out_dir / "summary.json", summary)
    return summary


def calibrate(cfg: SynthConfig, cat: Catalog) -> Scales:
    """Hazard scale constants from a separate sample of the same world (independent of the sample seed)."""
    p = draw_people(cfg, cfg.calibration_n, rng(cfg.world_seed, "calibration/people"))
    subj, code, day = draw_diagnoses(cfg, cat, p, rng(cfg.world_seed, "calibration/diagnoses"))
    return fit_scales(raw_scores(cat, p, subj, code, day), cfg)


def _run_shards(cfg: SynthConfig, cat: Catalog, scales: Scales, out_dir: Path) -> list:
    starts = list(range(0, cfg.n_subjects, cfg.shard_size))
    jobs = [(cfg, cat, scales, k, start, min(cfg.shard_size, cfg.n_subjects - start), out_dir)
            for k, start in enumerate(starts)]
    if cfg.workers > 1 and len(jobs) > 1:
        # spawn, not fork: a forked child can inherit a held lock of the parent's arrow/polars thread pools
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(jobs)), mp_context=context) as pool:
            return list(synth_report.progress(pool.map(_shard, *zip(*jobs)), len(jobs), "synthesizing shards"))
    return [_shard(*job) for job in synth_report.progress(jobs, len(jobs), "synthesizing shards")]


def _shard(cfg: SynthConfig, cat: Catalog, scales: Scales, k: int, start: int, n: int, out_dir: Path):
    """Generate and write one shard; return its truth columns, code counts and number of events."""
    p = draw_people(cfg, n, rng(cfg.seed, f"people/{k}"))
    dx = draw_diagnoses(cfg, cat, p, rng(cfg.seed, f"diagnoses/{k}"))
    lh = log_hazards(raw_scores(cat, p, *dx), p, scales, cfg)
    out = _outcomes(cfg, lh, k)
    incident = np.where(out["prevalent"], np.inf, out["t_adrd"])
    dx = prodromal_signs(cat, p, dx, incident, rng(cfg.seed, f"prodromal/{k}"))
    events = _events(cfg, cat, p, dx, out, rng(cfg.seed, f"dates/{k}"))
    table = _table(events, start, vocabulary(cat))
    rundir.write_parquet(table, out_dir / "data" / f"shard_{k:04d}.parquet")
    truth = {"subject_id": start + 1 + np.arange(n), "prediction_time": _pred_us(p), "risk": out["risk"],
             "label": out["label"] & ~out["prevalent"], "prevalent_adrd": out["prevalent"], "age": p["age"],
             "female": p["female"], "died": events["died"],
             **{name: lh[name] for name in ("logh_textbook", "logh_hidden", "textbook_covariates")}}
    return truth, np.bincount(events["code"], minlength=len(vocabulary(cat))), len(table)


def _outcomes(cfg: SynthConfig, lh: dict, k: int) -> dict[str, np.ndarray]:
    """Exact 5-year risk, sampled onset/death/loss times and the planted prevalent cases of shard ``k``."""
    risk = five_year_risk(lh["logh_textbook"] + lh["logh_hidden"], lh["logh_death"], cfg.adrd_age_slope,
                          cfg.death_age_slope)
    out = sample_outcomes(lh, cfg, rng(cfg.seed, f"outcomes/{k}"))
    prevalent = rng(cfg.seed, f"prevalent/{k}").random(len(risk)) < np.minimum(1.0, cfg.prevalent_adrd_ratio * risk)
    return {**out, "risk": risk, "prevalent": prevalent}


def _pred_us(p: People) -> np.ndarray:
    """Prediction time: 23:59:59 of the assessment day."""
    return p["assess_day"] * DAY_US + 86_399 * 1_000_000


def _events(cfg: SynthConfig, cat: Catalog, p: People, dx: tuple, out: dict, g: np.random.Generator) -> dict:
    """All events of a shard as parallel arrays (local subject index, time in us, code index, value)."""
    n, voc = len(p["age"]), {c: i for i, c in enumerate(vocabulary(cat))}
    pred = _pred_us(p)
    at = {k: _after(pred, out[f"t_{k}"]) for k in ("adrd", "death", "ltfu")}
    end = np.minimum.reduce([at["death"], at["ltfu"], np.full(n, (cfg.day("data_end") + 1) * DAY_US - 1_000_000)])
    died, lost = at["death"] <= end, (at["ltfu"] <= end) & (at["ltfu"] < at["death"])
    parts = [_static(p, voc), _baseline(p, voc, pred), _diagnoses(dx, end, voc[f"ICD10//{cat.codes[0]}"]),
             _adrd(cfg, p, out, at["adrd"], end, voc, g),
             (np.flatnonzero(died), at["death"][died], voc["MEDS_DEATH"]),
             (np.flatnonzero(lost), at["ltfu"][lost], voc["UKB//LOST_TO_FOLLOWUP"])]
    return {**_concat(parts), "died": died}


def _concat(parts: list[tuple]) -> dict[str, np.ndarray]:
    """Stack (subjects, times, codes[, values]) parts; scalars broadcast, a missing value is NaN."""
    cols = {"subj": [], "time": [], "code": [], "value": []}
    for part in parts:
        subj = part[0]
        for key, item in zip(cols, (subj, part[1], part[2], part[3] if len(part) > 3 else np.nan)):
            cols[key].append(np.broadcast_to(item, subj.shape))
    return {k: np.concatenate(v) for k, v in cols.items()}


def _after(pred: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Prediction time + years, to the second (int64 us; far future for infinity)."""
    sec = np.floor(np.minimum(years, 500.0) * YEAR * 86_400.0)
    return pred + np.maximum(sec, 1.0).astype(np.int64) * 1_000_000


def _static(p: People, voc: dict) -> tuple:
    n = len(p["age"])
    code = np.where(p["female"], voc["SEX//F"], voc["SEX//M"])
    rows = np.arange(n)
    return (np.concatenate([rows, rows]), np.concatenate([np.full(n, NULL_TIME), p["birth_day"] * DAY_US]),
            np.concatenate([code, np.full(n, voc["MEDS_BIRTH"])]))


def _baseline(p: People, voc: dict, pred: np.ndarray) -> tuple:
    """Assessment-visit measurements at the visit time, then the assessment (prediction time) event."""
    n, visit = len(p["age"]), p["assess_day"] * DAY_US + p["visit_sec"] * 1_000_000
    values = measurement_values(p)
    rows = np.tile(np.arange(n), len(values) + 2)
    time = np.concatenate([np.tile(visit, len(values) + 1), pred])
    smoke = np.array([voc[f"UKB//SMOKING//{s}"] for s in SMOKING])[p["smoking"]]
    code = np.concatenate([np.repeat([voc[f"UKB//{m}"] for m in values], n), smoke, np.full(n, voc["UKB//ASSESSMENT"])])
    value = np.concatenate([*values.values(), np.full(2 * n, np.nan)])
    return rows, time, code, value


def _diagnoses(dx: tuple, end: np.ndarray, offset: int) -> tuple:
    """Diagnoses (midnight of their day) up to the end of follow-up; ``offset`` maps catalog to vocabulary."""
    subj, code, day = dx
    keep = day * DAY_US <= end[subj]
    return subj[keep], day[keep] * DAY_US, code[keep] + offset


def _adrd(cfg: SynthConfig, p: People, out: dict, onset: np.ndarray, end: np.ndarray, voc: dict,
          g: np.random.Generator) -> tuple:
    """ADRD codes: incident onsets after the prediction time and the planted prevalent cases before it."""
    prev = np.flatnonzero(out["prevalent"])
    first = np.maximum(cfg.day("records_start"), p["assess_day"][prev] - int(HORIZON * YEAR))
    prev_day = first + np.floor(g.random(len(prev)) * (p["assess_day"][prev] - first)).astype(np.int64)
    inc = np.flatnonzero((onset <= end) & ~out["prevalent"])
    subjects = np.concatenate([prev, inc])
    return _adrd_codes(subjects, np.concatenate([prev_day * DAY_US, onset[inc]]), out, end, voc)


def _adrd_codes(subjects: np.ndarray, times: np.ndarray, out: dict, end: np.ndarray, voc: dict) -> tuple:
    """Recorded subtype mix: Alzheimer (G30 with F00; a quarter get F03 a year later), vascular, other,
    unspecified."""
    assert set(ADRD_CODES) == {"F00", "F01", "F02", "F03", "G30"}
    kind = np.searchsorted([0.55, 0.75, 0.80], out["subtype_u"][subjects])
    codes = np.array([voc[f"ICD10//{c}"] for c in ("F00", "F01", "F02", "F03")])[kind]
    ad = kind == 0
    later = ad & (out["later_u"][subjects] < 0.25)
    later_time = times[later] + int(YEAR * DAY_US)
    ok = later_time <= end[subjects[later]]
    return (np.concatenate([subjects, subjects[ad], subjects[later][ok]]),
            np.concatenate([times, times[ad], later_time[ok]]),
            np.concatenate([codes, np.full(ad.sum(), voc["ICD10//G30"]), np.full(ok.sum(), voc["ICD10//F03"])]))


def _sort_key(subj: np.ndarray, time: np.ndarray, code: np.ndarray) -> np.ndarray:
    """One uint64 per event ordering by (subject, time, code): 20 | 33 | 11 bits (static time first).

    One argsort of it is ~5x faster than a three-key lexsort; every synthetic time is a whole second.
    """
    sec = np.where(time == NULL_TIME, 0, time // 1_000_000 - EPOCH_1800_S + 1)
    assert subj.max(initial=0) < 2**20 and code.max(initial=0) < 2**11 and 0 <= sec.min(initial=0)
    assert sec.max(initial=0) < 2**33 and (time[time != NULL_TIME] % 1_000_000 == 0).all()
    return (subj.astype(np.uint64) << np.uint64(44)) | (sec.astype(np.uint64) << np.uint64(11)) | code.astype(np.uint64)


def _table(ev: dict, start: int, vocab: tuple[str, ...]) -> pa.Table:
    """Sorted MEDS data table (static events first, ties broken by code order)."""
    order = np.argsort(_sort_key(ev["subj"], ev["time"], ev["code"]))
    time, value = ev["time"][order], ev["value"][order].astype(np.float32)
    return pa.table({
        "subject_id": pa.array(ev["subj"][order] + start + 1, pa.int64()),
        "time": pa.array(time, pa.timestamp("us"), mask=time == NULL_TIME),
        "code": pa.array(vocab, pa.string()).take(pa.array(ev["code"][order], pa.int32())),
        "numeric_value": pa.array(value, pa.float32(), mask=np.isnan(value)),
    }, schema=pa.schema([(name, meds.DataSchema.schema().field(name).type)
                         for name in ("subject_id", "time", "code", "numeric_value")]))


def _write_metadata(cfg: SynthConfig, cat: Catalog, out_dir: Path) -> None:
    codes = vocabulary(cat)
    rundir.write_parquet(pa.table({
        "code": pa.array(codes, pa.string()),
        "description": pa.array([_describe(c) for c in codes], pa.string()),
        "parent_codes": pa.array([[f"ICD10//{parent_block(c[7:])}"] if c.startswith("ICD10//") else []
                                  for c in codes], pa.list_(pa.string())),
    }), out_dir / "metadata" / "codes.parquet")
    rundir.write_json(out_dir / "metadata" / "dataset.json", {
        "dataset_name": "rationale-sft synthetic UK Biobank-like cohort",
        "dataset_version": f"n{cfg.n_subjects}-seed{cfg.seed}-world{cfg.world_seed}-{_content_hash(cfg)}",
        "etl_name": "rationale_sft.cohort.synth", "etl_version": __version__, "meds_version": meds.__version__,
        "created_at": f"{cfg.data_end}T00:00:00+00:00",  # deterministic: the data's own end date
    })
    rundir.write_parquet(_splits(cfg), out_dir / "metadata" / "subject_splits.parquet")


def split_cuts(cfg: SynthConfig) -> np.ndarray:
    """Subjects in the train split, and in train + tuning (the rest is held out).

    >>> split_cuts(SynthConfig(n_subjects=3000)).tolist()
    [2400, 2700]
    """
    return np.round(np.array([cfg.train_share, cfg.train_share + cfg.tuning_share]) * cfg.n_subjects).astype(int)


def _splits(cfg: SynthConfig) -> pa.Table:
    """Seeded train/tuning/held_out assignment with the configured shares."""
    order = rng(cfg.seed, "splits").permutation(cfg.n_subjects)
    cuts = split_cuts(cfg)
    split = np.empty(cfg.n_subjects, object)
    split[order] = np.array(["train", "tuning", "held_out"])[np.searchsorted(cuts, np.arange(cfg.n_subjects), "right")]
    return pa.table({"subject_id": pa.array(np.arange(1, cfg.n_subjects + 1), pa.int64()),
                     "split": pa.array(split.tolist(), pa.string())})


def _describe(code: str) -> str:
    if code.startswith("ICD10//"):
        return description(code[7:])
    if code.startswith("UKB//SMOKING//"):
        return f"Smoking status at the baseline assessment: {code[14:].lower()}"
    if code.startswith("SEX//"):
        return "Sex: " + ("female" if code.endswith("F") else "male")
    fixed = {"MEDS_BIRTH": "Birth", "MEDS_DEATH": "Death", "UKB//ASSESSMENT": "End of the baseline assessment visit",
             "UKB//LOST_TO_FOLLOWUP": "Lost to follow-up"}
    return fixed.get(code) or UKB_DESCRIPTIONS[code[5:]] + " (baseline assessment)"


def _write_truth(truth: dict, out_dir: Path) -> None:
    rundir.write_parquet(pa.table({
        "subject_id": pa.array(truth["subject_id"], pa.int64()),
        "prediction_time": pa.array(truth["prediction_time"], pa.timestamp("us")),
        "risk": pa.array(truth["risk"], pa.float64()), "label": pa.array(truth["label"], pa.bool_()),
        "logh_textbook": pa.array(truth["logh_textbook"], pa.float64()),
        "logh_hidden": pa.array(truth["logh_hidden"], pa.float64()),
        "prevalent_adrd": pa.array(truth["prevalent_adrd"], pa.bool_()),
    }), out_dir / "truth" / "risk.parquet")


def _content_hash(cfg: SynthConfig) -> str:
    """Config hash without ``workers``, which changes how fast the files are written, not what they hold."""
    return config.config_hash({k: v for k, v in config.to_dict(cfg).items() if k != "workers"})
