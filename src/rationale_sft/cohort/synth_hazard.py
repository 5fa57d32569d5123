"""The ADRD and death hazards of the synthetic cohort, the exact 5-year risk, and outcome sampling.

After the assessment (t = years since the prediction time) a subject has two Gompertz hazards fixed by
their history before the prediction time:

    ADRD:  h_A(t) = exp(logh_textbook + logh_hidden + b_A * t)
    death: h_D(t) = exp(logh_death + b_D * t)     (multiplied by death_hr_after_adrd after ADRD onset)

``logh_textbook`` = baseline level + age + sex + the textbook covariate score (Lancet Commission 2024
factors, APOE e4, prodromal signs); ``logh_hidden`` = weak weights on a few hundred ordinary codes plus
visit patterns. The covariate parts are standardised on a calibration sample of the same world so that
var(textbook covariates) = (1 - hidden_share) * covariate_sd**2 and var(hidden) = hidden_share *
covariate_sd**2, and centred so that the mean hazard at each age equals the baseline curve.

``risk`` = P(first ADRD onset in (0, 5] years and before death) = integral_0^5 h_A S_A S_D dt, by
Gauss-Legendre quadrature (error < 1e-12). Labels are drawn from exactly this process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rationale_sft.cohort.synth_catalog import ADRD_CODES, Catalog
from rationale_sft.cohort.synth_people import People
from rationale_sft.config.synth import SynthConfig

HORIZON = 5.0
"Outcome window in years after the prediction time."

# Textbook factor -> (hazard ratio, source). Relative risks of the Lancet Commission 2024 (Livingston et
# al., Lancet 404:572-628) for the 14 modifiable factors; APOE and prodromal signs from cohort studies.
TEXTBOOK = {
    "apoe_e4_one": (2.7, "APOE e4 heterozygote, all-cause dementia (UK Biobank, Lourida et al. 2019)"),
    "apoe_e4_two": (8.0, "APOE e4 homozygote, all-cause dementia (UK Biobank, Lourida et al. 2019)"),
    "less_education": (1.6, "education <= 10 years (Lancet 2024)"),
    "hearing_loss": (1.37, "self-reported hearing difficulty or H90/H91 (Lancet 2024)"),
    "high_ldl": (1.27, "LDL > 3 mmol/L (Lancet 2024)"),
    "depression": (2.2, "F32/F33 (Lancet 2024)"),
    "tbi": (1.66, "S06 intracranial injury (Lancet 2024)"),
    "inactivity": (1.17, "< 600 MET-min/week (Lancet 2024)"),
    "diabetes": (1.73, "E11 or HbA1c >= 48 mmol/mol (Lancet 2024)"),
    "smoking": (1.3, "current smoker (Lancet 2024)"),
    "hypertension": (1.2, "I10 or SBP >= 140 mmHg (Lancet 2024)"),
    "obesity": (1.3, "BMI >= 30 or E66 (Lancet 2024)"),
    "alcohol": (1.2, "> 21 units/week or F10 (Lancet 2024)"),
    "social_isolation": (1.6, "isolation score >= 2 of 3 (Lancet 2024)"),
    "air_pollution": (1.1, "per ug/m3 PM2.5 above 10 (Lancet 2024)"),
    "vision_loss": (1.47, "self-reported vision problem or H54 (Lancet 2024)"),
    "memory_complaints": (3.0, "R41, prodromal cognitive symptoms"),
    "delirium": (2.5, "F05 (delirium and later dementia)"),
    "parkinson": (3.0, "G20 (Parkinson disease dementia)"),
    "stroke": (2.0, "I63/I64 (post-stroke dementia)"),
    "falls": (1.5, "W19 or R29, prodromal"),
    "gait": (1.4, "R26, prodromal gait disturbance"),
    "sleep": (1.3, "G47, sleep disorders"),
    "anxiety": (1.3, "F41, prodromal anxiety"),
    "weight_loss": (1.4, "R63, prodromal weight loss"),
    "atrial_fibrillation": (1.4, "I48"),
}
# Prodromal and comorbidity codes behind the textbook features.
FEATURE_CODES = {"hearing_loss": ("H90", "H91"), "depression": ("F32", "F33"), "tbi": ("S06",),
                 "diabetes": ("E11",), "hypertension": ("I10",), "obesity": ("E66",), "alcohol": ("F10",),
                 "vision_loss": ("H54",), "memory_complaints": ("R41",), "delirium": ("F05",),
                 "parkinson": ("G20",), "stroke": ("I63", "I64"), "falls": ("W19", "R29"), "gait": ("R26",),
                 "sleep": ("G47",), "anxiety": ("F41",), "weight_loss": ("R63",), "atrial_fibrillation": ("I48",)}
VISIT_WINDOW_DAYS = 730
"Visit pattern: distinct diagnoses first recorded in the 2 years up to the assessment day."
GL_NODES, GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


@dataclass(frozen=True)
class Scales:
    """Constants fixed on the calibration sample: they make the hazard a function of one subject only."""

    textbook_mean: float
    textbook_sd: float
    code_mean: float
    code_sd: float
    visit_mean: float
    visit_sd: float
    hidden_mean: float
    hidden_sd: float
    offset: float
    "Minus log of the mean hazard multiplier of the covariates (keeps the age curve calibrated)."
    death_offset: float


def raw_scores(cat: Catalog, p: People, subj: np.ndarray, code: np.ndarray, day: np.ndarray) -> dict:
    """Unscaled scores from the history before the prediction time (diagnoses dated up to the visit day)."""
    n = len(p["age"])
    pre = day <= p["assess_day"][subj]
    s, c, d = subj[pre], code[pre], day[pre]
    has = {k: _has(cat, n, s, c, codes) for k, codes in FEATURE_CODES.items()}
    features = textbook_features(p, has)
    beta = np.array([np.log(TEXTBOOK[k][0]) for k in features])
    not_adrd = ~np.isin(c, [cat.index(x) for x in ADRD_CODES])
    recent = not_adrd & (d > p["assess_day"][s] - VISIT_WINDOW_DAYS)
    n_pre = np.bincount(s[not_adrd], minlength=n)
    cancer = np.bincount(s, _is_cancer(cat)[c], n) > 0
    return {"textbook": np.column_stack(list(features.values())) @ beta,
            "code": np.bincount(s, cat.hidden_weight[c], n),
            "visit": np.log1p(np.bincount(s[recent], minlength=n)),
            "death": _death_score(p, has["diabetes"], cancer, n_pre)}


def textbook_features(p: People, has: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """0/1 (or per-unit) textbook features of each subject, named as in ``TEXTBOOK``."""
    f = {"apoe_e4_one": p["apoe"] == 1, "apoe_e4_two": p["apoe"] == 2, "less_education": p["edu_years"] <= 10,
         "hearing_loss": p["hearing"] | has["hearing_loss"], "high_ldl": p["ldl"] > 3.0,
         "depression": has["depression"], "tbi": has["tbi"], "inactivity": p["met"] < 600,
         "diabetes": has["diabetes"] | (p["hba1c"] >= 48), "smoking": p["smoking"] == 2,
         "hypertension": has["hypertension"] | (p["sbp"] >= 140), "obesity": has["obesity"] | (p["bmi"] >= 30),
         "alcohol": has["alcohol"] | (p["alcohol"] > 21), "social_isolation": p["isolation"] >= 2,
         "air_pollution": np.maximum(p["pm25"] - 10.0, 0.0), "vision_loss": p["vision"] | has["vision_loss"]}
    f.update({k: has[k] for k in TEXTBOOK if k not in f})
    return {k: np.asarray(v, float) for k, v in f.items()}


def _is_cancer(cat: Catalog) -> np.ndarray:
    return np.array([code.startswith("C") for code in cat.codes])


def _has(cat: Catalog, n: int, s: np.ndarray, c: np.ndarray, codes: tuple[str, ...]) -> np.ndarray:
    hit = np.isin(c, [cat.index(x) for x in codes])
    return np.bincount(s[hit], minlength=n) > 0


def _death_score(p: People, diabetes, cancer, n_pre) -> np.ndarray:
    """Death log-hazard covariates (observed before the prediction time only, so the risk is too)."""
    return (0.4 * ~p["female"] + 0.7 * (p["smoking"] == 2) + 0.25 * (p["smoking"] == 1) + 0.5 * diabetes
            + 0.5 * (p["hba1c"] >= 48) + 0.04 * p["townsend"] + 0.6 * cancer
            + 0.15 * np.log1p(n_pre))


def fit_scales(raw: dict, cfg: SynthConfig) -> Scales:
    """Standardisation and centring constants from a calibration sample's raw scores."""
    sd = {k: float(np.std(raw[k])) or 1.0 for k in ("textbook", "code", "visit")}
    mean = {k: float(np.mean(raw[k])) for k in ("textbook", "code", "visit")}
    pre = Scales(mean["textbook"], sd["textbook"], mean["code"], sd["code"], mean["visit"], sd["visit"],
                 0.0, 1.0, 0.0, 0.0)
    hidden = _hidden_score(raw, pre, cfg)
    pre = Scales(**{**pre.__dict__, "hidden_mean": float(np.mean(hidden)), "hidden_sd": float(np.std(hidden)) or 1.0})
    tb, hid = covariate_parts(raw, pre, cfg)
    return Scales(**{**pre.__dict__, "offset": -float(np.log(np.mean(np.exp(tb + hid)))),
                     "death_offset": -float(np.log(np.mean(np.exp(raw["death"]))))})


def _hidden_score(raw: dict, sc: Scales, cfg: SynthConfig) -> np.ndarray:
    """Weighted codes and visit counts, each standardised and soft-clipped, mixed by visit_share."""
    v = cfg.visit_share
    return (np.sqrt(1 - v) * soft_clip((raw["code"] - sc.code_mean) / sc.code_sd)
            + np.sqrt(v) * soft_clip((raw["visit"] - sc.visit_mean) / sc.visit_sd))


def covariate_parts(raw: dict, sc: Scales, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Scaled textbook-covariate and hidden log-hazard parts (variance split set by hidden_share)."""
    h = cfg.hidden_share
    tb = (raw["textbook"] - sc.textbook_mean) / sc.textbook_sd * np.sqrt(1 - h) * cfg.covariate_sd
    hidden = (_hidden_score(raw, sc, cfg) - sc.hidden_mean) / sc.hidden_sd
    return tb, hidden * np.sqrt(h) * cfg.covariate_sd


def soft_clip(x: np.ndarray, bound: float = 3.0) -> np.ndarray:
    """``bound * tanh(x / bound)``: linear in the bulk, so a few people with many weighted codes stay plausible.

    >>> soft_clip(np.array([0.1, 10.0])).round(3).tolist()
    [0.1, 2.992]
    """
    return bound * np.tanh(x / bound)


def log_hazards(raw: dict, p: People, sc: Scales, cfg: SynthConfig) -> dict[str, np.ndarray]:
    """logh_textbook, logh_hidden (ADRD at t = 0) and logh_death (death at t = 0)."""
    tb, hidden = covariate_parts(raw, sc, cfg)
    base = np.log(cfg.adrd_rate_at_70) + cfg.adrd_age_slope * (p["age"] - 70) + cfg.adrd_female_log_hr * (
        p["female"] - 0.54)
    death = np.log(cfg.death_rate_at_60) + cfg.death_age_slope * (p["age"] - 60) + raw["death"] + sc.death_offset
    return {"logh_textbook": base + tb + sc.offset, "logh_hidden": hidden, "logh_death": death,
            "textbook_covariates": tb}


def five_year_risk(log_a: np.ndarray, log_d: np.ndarray, slope_a: float, slope_d: float) -> np.ndarray:
    """P(ADRD onset within HORIZON years and before death) for Gompertz hazards, by quadrature.

    >>> r = five_year_risk(np.log([0.01]), np.log([1e-12]), 1e-9, 1e-9)  # constant hazard, no death
    >>> bool(abs(r[0] - (1 - np.exp(-0.05))) < 1e-9)
    True
    """
    t = (GL_NODES + 1.0) * HORIZON / 2.0
    ca, cd = np.exp(log_a)[:, None], np.exp(log_d)[:, None]
    surv = np.exp(-ca * np.expm1(slope_a * t) / slope_a - cd * np.expm1(slope_d * t) / slope_d)
    return (ca * np.exp(slope_a * t) * surv) @ GL_WEIGHTS * HORIZON / 2.0


def gompertz_time(log_c: np.ndarray, slope: float, need: np.ndarray) -> np.ndarray:
    """Time at which the Gompertz cumulative hazard from t = 0 reaches ``need`` (inverse sampling).

    >>> round(float(gompertz_time(np.log([0.1]), 1e-9, np.array([0.5]))[0]), 6)  # constant hazard 0.1
    5.0
    """
    return np.log1p(slope * need / np.exp(log_c)) / slope


def sample_outcomes(lh: dict, cfg: SynthConfig, g: np.random.Generator) -> dict[str, np.ndarray]:
    """ADRD onset, death and loss-to-follow-up times (years after the prediction time) and the label."""
    n = len(lh["logh_death"])
    log_a = lh["logh_textbook"] + lh["logh_hidden"]
    t_adrd = gompertz_time(log_a, cfg.adrd_age_slope, g.exponential(size=n))
    t_death = gompertz_time(lh["logh_death"], cfg.death_age_slope, g.exponential(size=n))
    after = t_adrd < t_death
    # after onset the death hazard is multiplied: continue the cumulative hazard from the onset time
    cum_at_onset = np.exp(lh["logh_death"]) * np.expm1(cfg.death_age_slope * t_adrd) / cfg.death_age_slope
    extra = g.exponential(size=n) / cfg.death_hr_after_adrd
    t_death = np.where(after, gompertz_time(lh["logh_death"], cfg.death_age_slope, cum_at_onset + extra), t_death)
    return {"t_adrd": np.where(after, t_adrd, np.inf), "t_death": t_death,
            "t_ltfu": g.exponential(1.0 / cfg.ltfu_rate, n) if cfg.ltfu_rate > 0 else np.full(n, np.inf),
            "label": after & (t_adrd <= HORIZON), "subtype_u": g.random(n), "later_u": g.random(n)}
