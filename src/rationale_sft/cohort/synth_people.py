"""People of the synthetic cohort: demographics, latent health, baseline measurements and diagnoses.

Everything is vectorised over subjects. A subject is a set of same-length arrays in a dict (``People``).
Diagnoses are first occurrences drawn from Poisson processes over the subject's record window
(``records_start`` to ``data_end``) whose intensity rises with age at a per-chapter rate, scales with the
subject's latent body-system factor and health-care use, and (for anchor codes) with measured risk factors.
Death and loss to follow-up (synth_hazard) censor them when the events are assembled (synth).
"""

from __future__ import annotations

import numpy as np

from rationale_sft.cohort.synth_catalog import ANCHORS, FACTORS, Catalog
from rationale_sft.config.synth import SynthConfig

People = dict[str, np.ndarray]
YEAR = 365.25
F = {name: k for k, name in enumerate(FACTORS)}

MEASUREMENTS = ("EDUCATION_YEARS", "TOWNSEND", "APOE_E4_ALLELES", "ALCOHOL_UNITS_WEEK", "BMI", "LDL", "SBP",
                "HBA1C", "MET_MIN_WEEK", "HEARING_DIFFICULTY", "VISION_PROBLEM", "SOCIAL_ISOLATION", "PM25")
"Numeric baseline measurements, written as ``UKB//<name>`` (smoking is a category code instead)."
SMOKING = ("NEVER", "PREVIOUS", "CURRENT")

# Anchor code -> (probability of a first occurrence over 1997-2022 for a reference subject, log-rate rise
# per decade of age, linear predictor of the log rate from measured risk factors and latent health).
ANCHOR_MODEL = {
    "I10": (0.22, 0.6, lambda p: 0.04 * (p["sbp"] - 138) + 0.3 * p["z"][:, F["cardiometabolic"]]
            + 0.05 * (p["bmi"] - 27.4)),
    "E78": (0.20, 0.4, lambda p: 0.8 * (p["ldl"] - 3.56) + 0.3 * p["z"][:, F["cardiometabolic"]]),
    "E11": (0.07, 0.3, lambda p: 2.8 * p["diabetic"] - 1.2 + 0.06 * (p["bmi"] - 27.4)),
    "E66": (0.06, 0.05, lambda p: 0.35 * (p["bmi"] - 30.0)),
    "F32": (0.08, -0.1, lambda p: 0.8 * p["z"][:, F["mental"]] + 0.05 * p["townsend"] + 0.3 * p["female"]),
    "F33": (0.015, -0.1, lambda p: 0.9 * p["z"][:, F["mental"]] + 0.3 * p["female"]),
    "F41": (0.05, -0.1, lambda p: 0.7 * p["z"][:, F["mental"]] + 0.4 * p["female"]),
    "F17": (0.08, -0.2, lambda p: 2.5 * (p["smoking"] == 2) + 1.0 * (p["smoking"] == 1) - 1.5),
    "F10": (0.025, 0.0, lambda p: 0.04 * (p["alcohol"] - 16) + 0.4 * p["z"][:, F["mental"]] + 0.4 * ~p["female"]),
    "J44": (0.04, 0.6, lambda p: 2.0 * (p["smoking"] == 2) + 1.0 * (p["smoking"] == 1) - 1.0
            + 0.5 * p["z"][:, F["respiratory"]]),
    "I25": (0.045, 0.7, lambda p: 0.5 * p["z"][:, F["cardiometabolic"]] + 0.7 * ~p["female"]
            + 0.5 * (p["smoking"] == 2) + 0.02 * (p["sbp"] - 138)),
    "I48": (0.06, 0.9, lambda p: 0.3 * p["z"][:, F["cardiometabolic"]] + 0.4 * ~p["female"] + 0.04 * (p["bmi"] - 27.4)),
    "I63": (0.02, 0.9, lambda p: 0.4 * p["z"][:, F["cardiometabolic"]] + 0.02 * (p["sbp"] - 138)
            + 0.5 * (p["smoking"] == 2)),
    "I64": (0.006, 0.9, lambda p: 0.4 * p["z"][:, F["cardiometabolic"]] + 0.02 * (p["sbp"] - 138)),
    "G47": (0.04, 0.2, lambda p: 0.4 * p["z"][:, F["mental"]] + 0.06 * (p["bmi"] - 27.4)),
    "R41": (0.015, 1.0, lambda p: 0.4 * p["z"][:, F["neurosensory"]] + 0.3 * p["z"][:, F["mental"]]),
    "R26": (0.02, 1.0, lambda p: 0.4 * p["z"][:, F["frailty"]]),
    "R29": (0.02, 1.0, lambda p: 0.4 * p["z"][:, F["frailty"]]),
    "W19": (0.08, 0.6, lambda p: 0.4 * p["z"][:, F["frailty"]] + 0.3 * p["female"]),
    "G20": (0.006, 1.2, lambda p: 0.3 * p["z"][:, F["neurosensory"]] + 0.4 * ~p["female"]),
    "F05": (0.01, 1.3, lambda p: 0.4 * p["z"][:, F["frailty"]]),
    "H90": (0.03, 0.6, lambda p: 1.8 * p["hearing"] - 0.5),
    "H91": (0.05, 0.6, lambda p: 1.8 * p["hearing"] - 0.5),
    "H54": (0.01, 0.6, lambda p: 2.0 * p["vision"] - 0.3),
    "S06": (0.015, 0.0, lambda p: 0.3 * p["z"][:, F["frailty"]] + 0.5 * ~p["female"] + 0.02 * (p["alcohol"] - 16)),
    "R63": (0.03, 0.6, lambda p: 0.4 * p["z"][:, F["frailty"]] + 0.3 * p["z"][:, F["cancer"]]),
}
assert tuple(ANCHOR_MODEL) == ANCHORS
PRODROMAL = (("R41", 0.35), ("W19", 0.15), ("R26", 0.1), ("F05", 0.08), ("G47", 0.08))
"Signs recorded before a dementia diagnosis in the records: code and probability per incident case."
REF_AGE_AT_ASSESSMENT = 57.0
"Age at the assessment of the reference subject the prevalences refer to."


def draw_people(cfg: SynthConfig, n: int, g: np.random.Generator) -> People:
    """Demographics, latent health factors and baseline measurements of ``n`` subjects."""
    p = _demographics(cfg, n, g)
    p.update(_latent_health(p, g))
    p.update(_measurements(p, g))
    return p


def _demographics(cfg: SynthConfig, n: int, g: np.random.Generator) -> People:
    # Beta(1.6, 1.2) skews ages towards the older end, like UK Biobank's recruitment (mean ~57 at 40-70).
    age = cfg.age_min + (cfg.age_max - cfg.age_min) * g.beta(1.6, 1.2, n)
    assess_day = g.integers(cfg.day("assessment_start"), cfg.day("assessment_end") + 1, n)
    birth_day = assess_day - np.round(age * YEAR).astype(np.int64)
    townsend = np.round(np.clip(-5.44 + g.gamma(1.8, 2.3, n), -6.3, 11.0), 2)  # UK Biobank: mean -1.3, SD 3.1
    edu_score = g.normal(size=n) - 0.03 * (age - 57) - 0.35 * (townsend + 1.3) / 3.1
    edu_years = np.choose(np.searchsorted([-0.95, -0.15, 0.13, 0.44], edu_score), [7, 10, 13, 15, 17])
    return {"female": g.random(n) < 0.54, "age": (assess_day - birth_day) / YEAR, "assess_day": assess_day,
            "birth_day": birth_day, "visit_sec": g.integers(8 * 3600 + 1800, 17 * 3600, n),
            "townsend": townsend, "edu_years": edu_years.astype(float),
            "apoe": g.binomial(2, 0.15, n).astype(float)}  # e4 allele frequency ~0.15, Hardy-Weinberg


def _latent_health(p: People, g: np.random.Generator) -> People:
    """Correlated body-system factors (a shared general factor plus specific parts) and health-care use."""
    n, dep = len(p["age"]), (p["townsend"] + 1.3) / 3.1
    male = (~p["female"]).astype(float)
    u = g.random(n)
    smoking = np.where(u < _sigmoid(-2.3 + 0.35 * dep + 0.2 * male - 0.02 * (p["age"] - 57)), 2,
                       np.where(g.random(n) < 0.38 + 0.005 * (p["age"] - 57) + 0.05 * male, 1, 0))
    general = g.normal(size=n)
    z = np.sqrt(0.3) * general[:, None] + np.sqrt(0.7) * g.normal(size=(n, len(FACTORS)))
    z[:, F["cardiometabolic"]] += 0.15 * dep + 0.2 * male
    z[:, F["respiratory"]] += 0.8 * (smoking == 2) + 0.3 * (smoking == 1) + 0.1 * dep
    z[:, F["mental"]] += 0.2 * dep
    z[:, F["cancer"]] += 0.3 * (smoking == 2)
    z[:, F["frailty"]] += 0.2 * dep
    use = 0.35 * general + 0.45 * g.normal(size=n) + 0.1 * dep  # health-care use: more visits, more codes
    return {"smoking": smoking, "z": z, "use": use}


def _measurements(p: People, g: np.random.Generator) -> People:
    """Baseline assessment values with UK Biobank-like means and spreads, tied to latent health."""
    n, age, male = len(p["age"]), p["age"] - 57, (~p["female"]).astype(float)
    zc, dep = p["z"][:, F["cardiometabolic"]], (p["townsend"] + 1.3) / 3.1
    bmi = np.exp(np.log(27.0) + 0.16 * (0.55 * zc + 0.83 * g.normal(size=n)))
    diabetic = g.random(n) < _sigmoid(-3.6 + 1.0 * zc + 0.08 * (bmi - 27.4) + 0.02 * age)
    hba1c = 35.5 + 0.08 * age + 1.2 * zc + 2.8 * g.normal(size=n) + diabetic * g.gamma(2.5, 6.0, n)
    drinker = g.random(n) > 0.08
    alcohol = drinker * np.exp(np.log(8.0) + 0.4 * male + 0.8 * g.normal(size=n))
    isolation = sum(g.random(n) < _sigmoid(base + 0.5 * p["z"][:, F["mental"]] + 0.2 * dep)
                    for base in (-1.5, -2.8, -1.0))
    # values are rounded as written, so every hazard feature is a function of the data a model sees
    return {
        "bmi": np.round(bmi, 1), "diabetic": diabetic, "hba1c": np.round(np.clip(hba1c, 20, 150), 1),
        "alcohol": np.round(alcohol, 1), "sbp": np.round(138 + 0.6 * age + 5 * male + 8 * zc + 16 * g.normal(size=n)),
        "ldl": np.round(np.clip(3.56 + 0.01 * age + 0.3 * zc + 0.8 * g.normal(size=n), 0.5, 10.0), 2),
        "met": np.round(np.exp(np.log(1800) - 0.25 * p["z"][:, F["frailty"]] - 0.02 * (bmi - 27)
                               + 0.9 * g.normal(size=n))),
        "hearing": g.random(n) < _sigmoid(-1.5 + 0.05 * age + 0.3 * male + 0.5 * p["z"][:, F["neurosensory"]]),
        "vision": g.random(n) < _sigmoid(-3.0 + 0.04 * age + 0.5 * p["z"][:, F["neurosensory"]]),
        "isolation": isolation.astype(float),
        "pm25": np.round(np.clip(10.0 + 0.25 * dep + 0.9 * g.normal(size=n), 6.0, 20.0), 2),
    }


def measurement_values(p: People) -> dict[str, np.ndarray]:
    """Value of each ``UKB//<name>`` measurement per subject (already rounded like the source fields)."""
    return {"EDUCATION_YEARS": p["edu_years"], "TOWNSEND": p["townsend"], "APOE_E4_ALLELES": p["apoe"],
            "ALCOHOL_UNITS_WEEK": p["alcohol"], "BMI": p["bmi"], "LDL": p["ldl"], "SBP": p["sbp"],
            "HBA1C": p["hba1c"], "MET_MIN_WEEK": p["met"], "HEARING_DIFFICULTY": p["hearing"].astype(float),
            "VISION_PROBLEM": p["vision"].astype(float), "SOCIAL_ISOLATION": p["isolation"], "PM25": p["pm25"]}


def draw_diagnoses(cfg: SynthConfig, cat: Catalog, p: People, g: np.random.Generator) -> tuple[np.ndarray, ...]:
    """First occurrences over 1997-2022 (before censoring): (subject index, code index, day), one per pair."""
    a0 = (cfg.day("records_start") - p["birth_day"]) / YEAR
    a1 = (cfg.day("data_end") - p["birth_day"]) / YEAR
    parts = [_generic(cat, p, a0, a1, g), _anchors(cat, p, a0, a1, g)]
    subj, code, age = (np.concatenate(x) for x in zip(*parts))
    day = np.clip(p["birth_day"][subj] + np.floor(age * YEAR).astype(np.int64), cfg.day("records_start"),
                  cfg.day("data_end"))
    return first_occurrences(subj, code, day)


def first_occurrences(subj: np.ndarray, code: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep the earliest day of each (subject, code), sorted by subject, code.

    >>> [a.tolist() for a in first_occurrences(np.array([1, 0, 1]), np.array([5, 5, 5]), np.array([9, 3, 4]))]
    [[0, 1], [5, 5], [3, 4]]
    """
    # one packed key (subject | code | days since 1800) sorts by subject, code, then date
    order = np.argsort((subj << 28) | (code << 17) | (day + 62_091), kind="stable")
    subj, code, day = subj[order], code[order], day[order]
    first = np.ones(len(subj), bool)
    first[1:] = (subj[1:] != subj[:-1]) | (code[1:] != code[:-1])
    return subj[first], code[first], day[first]


def prodromal_signs(cat: Catalog, p: People, dx: tuple, t_adrd: np.ndarray, g: np.random.Generator) -> tuple:
    """Add signs recorded in the 0.2-3 years before an incident ADRD onset (only after the prediction time,
    so the 5-year risk is untouched); an earlier first occurrence of the same code wins."""
    case = np.flatnonzero(np.isfinite(t_adrd))
    onset_day = p["assess_day"][case] + np.floor(t_adrd[case] * YEAR).astype(np.int64)
    parts = [dx]
    for name, prob in PRODROMAL:
        hit = g.random(len(case)) < prob
        day = onset_day[hit] - np.round(g.uniform(0.2, 3.0, hit.sum()) * YEAR).astype(np.int64)
        keep = day > p["assess_day"][case[hit]]
        parts.append((case[hit][keep], np.full(keep.sum(), cat.index(name)), day[keep]))
    return first_occurrences(*(np.concatenate(x) for x in zip(*parts)))


def _generic(cat: Catalog, p: People, a0, a1, g) -> tuple[np.ndarray, ...]:
    """Poisson counts per (subject, group), ages within the window, codes by within-group prevalence."""
    n, groups = len(a0), np.arange(len(cat.groups))
    slope = np.array([cat.age_slope[cat.group == k][0] for k in groups])
    factor = np.array([cat.factor[cat.group == k][0] for k in groups])
    sex = (~p["female"]).astype(int)
    per_group = np.stack([np.bincount(cat.group, cat.expected * cat.sex_weight[:, s], len(groups)) for s in (0, 1)])
    # the log-normal multiplier is centred so that the mean over subjects stays at the catalog's expectation
    mult = np.exp(0.5 * p["z"][:, factor] + p["use"][:, None] - 0.5 * (0.25 + 0.45 ** 2 + 0.35 ** 2))
    lam = per_group[sex] * mult * _window(a0[:, None], a1[:, None], slope) / _ref_window(slope)
    cell = np.repeat(np.arange(n * len(groups)), g.poisson(lam).ravel())
    subj, grp = cell // len(groups), cell % len(groups)
    age = _inverse_window(a0[subj], a1[subj], slope[grp], g.random(len(cell)))
    return subj, _pick_codes(cat, grp, sex[subj], g.random(len(cell))), age


def _pick_codes(cat: Catalog, grp: np.ndarray, sex: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of a code within its group, from one cumulative array per sex."""
    order = np.argsort(cat.group, kind="stable")
    out = np.empty(len(grp), np.int64)
    for s in (0, 1):
        w = cat.expected[order] * cat.sex_weight[order, s]
        cum = np.cumsum(w)
        end = np.bincount(cat.group[order], w, len(cat.groups)).cumsum()
        start = end - np.bincount(cat.group[order], w, len(cat.groups))
        rows = sex == s
        x = start[grp[rows]] + u[rows] * (end - start)[grp[rows]]
        out[rows] = order[np.minimum(np.searchsorted(cum, x, side="right"), len(cum) - 1)]
    return out


def _anchors(cat: Catalog, p: People, a0, a1, g) -> tuple[np.ndarray, ...]:
    """First arrival of each anchor code's Poisson process; kept when it falls inside the window."""
    subj, code, age = [], [], []
    for name, (prev, slope, linear) in ANCHOR_MODEL.items():
        total = -np.log1p(-prev) * np.exp(linear(p)) * _window(a0, a1, slope) / _ref_window(slope)
        need = g.exponential(size=len(a0))
        hit = np.flatnonzero(need < total)
        subj.append(hit)
        code.append(np.full(len(hit), cat.index(name)))
        age.append(_inverse_window(a0[hit], a1[hit], slope, need[hit] / total[hit]))
    return np.concatenate(subj), np.concatenate(code), np.concatenate(age)


def _window(a0, a1, slope):
    """Integral of exp(slope * (age - 60) / 10) over ages [a0, a1]."""
    slope = np.where(np.abs(slope) < 1e-6, 1e-6, slope)
    return 10.0 / slope * (np.exp(slope * (a1 - 60) / 10) - np.exp(slope * (a0 - 60) / 10))


def _ref_window(slope):
    """The window integral of the reference subject (age 57 at a mid-2008 assessment)."""
    a0 = REF_AGE_AT_ASSESSMENT - (2008.5 - 1997.25)
    return _window(a0, a0 + (2022.83 - 1997.25), slope)


def _inverse_window(a0, a1, slope, q):
    """Age at which a fraction ``q`` of the window integral is reached (inverse-CDF sampling of ages)."""
    slope = np.where(np.abs(slope) < 1e-6, 1e-6, slope)
    e0, e1 = np.exp(slope * (a0 - 60) / 10), np.exp(slope * (a1 - 60) / 10)
    return 60 + 10.0 / slope * np.log(e0 + q * (e1 - e0))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))
