"""Code vocabulary for prompts: ICD-10 chapters, measurement names and units, relative timing phrases.

Shared by the renderer (vectorised) and by subject facts (per subject), so prompts, the knowledge teacher
and the checker speak about codes and timings the same way.

>>> icd_chapter("I10"), icd_chapter("H91"), icd_chapter("XYZ")
(8, 7, 22)
>>> CHAPTERS[icd_chapter("G30")]
'Diseases of the nervous system'
>>> split_unit("LDL cholesterol (mmol/L)"), split_unit("Current smoker (self-reported, at visit)")
(('LDL cholesterol', 'mmol/L'), ('Current smoker (self-reported, at visit)', ''))
>>> split_unit("Alcohol intake, UK units per week"), split_unit("Systolic blood pressure, mmHg")
(('Alcohol intake', 'UK units per week'), ('Systolic blood pressure', 'mmHg'))
>>> split_unit("Physical activity (IPAQ)"), split_unit("Townsend index, higher is more deprived")
(('Physical activity (IPAQ)', ''), ('Townsend index, higher is more deprived', ''))
>>> split_unit("Number of APOE e4 alleles (0, 1, 2)")
('Number of APOE e4 alleles (0, 1, 2)', '')
>>> [ago_phrase(d, "assessment") for d in (3, 40, 400, 2600)]
['less than a month before assessment', '1 month before assessment', '1 year before assessment', '7 years before assessment']
>>> format_number(4.599999904632568), format_number(2.0), format_number(None)
('4.6', '2', '')
"""

from __future__ import annotations

import re

import polars as pl

# ICD-10 chapters by the range of 3-character codes they cover (WHO ICD-10 2019).
_CHAPTER_RANGES = (
    ("A00", "B99", "Infectious and parasitic diseases"), ("C00", "D48", "Neoplasms"),
    ("D50", "D89", "Diseases of the blood and immune system"),
    ("E00", "E90", "Endocrine, nutritional and metabolic diseases"),
    ("F00", "F99", "Mental and behavioural disorders"), ("G00", "G99", "Diseases of the nervous system"),
    ("H00", "H59", "Diseases of the eye"), ("H60", "H95", "Diseases of the ear"),
    ("I00", "I99", "Diseases of the circulatory system"), ("J00", "J99", "Diseases of the respiratory system"),
    ("K00", "K93", "Diseases of the digestive system"), ("L00", "L99", "Diseases of the skin"),
    ("M00", "M99", "Diseases of the musculoskeletal system"),
    ("N00", "N99", "Diseases of the genitourinary system"), ("O00", "O99", "Pregnancy and childbirth"),
    ("P00", "P96", "Perinatal conditions"), ("Q00", "Q99", "Congenital malformations"),
    ("R00", "R99", "Symptoms and abnormal findings"), ("S00", "T98", "Injury and poisoning"),
    ("V01", "Y98", "External causes"), ("Z00", "Z99", "Factors influencing health status"),
    ("U00", "U99", "Codes for special purposes"),
)
CHAPTERS = tuple(title for _, _, title in _CHAPTER_RANGES) + ("Other",)
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
_UNIT_RE = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()\s]{1,15})\)\s*$")
_COMMA_UNIT_RE = re.compile(r"^(?P<name>.+),\s+(?P<unit>[^,]{1,30})$")


def icd_chapter(icd: str) -> int:
    """Index into CHAPTERS of a 3-character ICD-10 code (the last index, 'Other', when it is not ICD-10)."""
    key = icd[:3].upper()
    if re.fullmatch(r"[A-Z]\d\d", key):
        for i, (lo, hi, _) in enumerate(_CHAPTER_RANGES):
            if lo <= key <= hi:
                return i
    return len(CHAPTERS) - 1


def split_unit(description: str) -> tuple[str, str]:
    """(name, unit) of a measurement description ending in a unit: '(mmol/L)' or ', mmol/L'.

    A parenthesised unit has no spaces and a lower-case letter, '/' or '%' (not an acronym like IPAQ); a unit
    after the last comma is one short word, or contains '/' or ' per '.
    """
    text = description or ""
    m = _UNIT_RE.match(text)
    if m and re.search(r"[a-z/%]", m["unit"]):
        return m["name"], m["unit"]
    m = _COMMA_UNIT_RE.match(text)
    if m and m["name"].count("(") == m["name"].count(")") and (" " not in m["unit"] and len(m["unit"]) <= 12 or "/" in m["unit"] or " per " in f" {m['unit']} "):
        return m["name"], m["unit"]
    return text, ""


def unit_suffix(unit: str) -> str:
    """How a unit follows a number: '%' sticks to it, other units after a space, none: nothing."""
    return "" if not unit else unit if unit == "%" else " " + unit


def format_number(value: float | None) -> str:
    """A measurement value as written in prompts: integers without decimals, else at most 2 decimals."""
    if value is None:
        return ""
    v = round(float(value), 2)
    return str(int(v)) if v == int(v) else repr(v)


def format_number_expr(value: pl.Expr) -> pl.Expr:
    """Vectorised ``format_number`` (same text for the same value)."""
    v = value.cast(pl.Float64).round(2)
    return pl.when(v.is_null()).then(pl.lit("")).when(v == v.floor()) \
        .then(v.cast(pl.Int64).cast(pl.String)).otherwise(v.cast(pl.String))


def ago_phrase(days: int, anchor: str) -> str:
    """Relative timing of an event ``days`` before the prediction time (whole years, else months)."""
    years, months = int(days // DAYS_PER_YEAR), int(days // DAYS_PER_MONTH)
    if years >= 1:
        return f"{years} year{'s' if years > 1 else ''} before {anchor}"
    if months >= 1:
        return f"{months} month{'s' if months > 1 else ''} before {anchor}"
    return f"less than a month before {anchor}"


def ago_expr(days: pl.Expr, anchor: str) -> pl.Expr:
    """Vectorised ``ago_phrase`` over an integer day-count expression."""
    years = (days / DAYS_PER_YEAR).floor().cast(pl.Int64)
    months = (days / DAYS_PER_MONTH).floor().cast(pl.Int64)
    tail = pl.lit(f" before {anchor}")
    return (pl.when(years > 1).then(pl.concat_str([years.cast(pl.String), pl.lit(" years"), tail]))
            .when(years == 1).then(pl.concat_str([pl.lit("1 year"), tail]))
            .when(months > 1).then(pl.concat_str([months.cast(pl.String), pl.lit(" months"), tail]))
            .when(months == 1).then(pl.concat_str([pl.lit("1 month"), tail]))
            .otherwise(pl.lit(f"less than a month before {anchor}")))


def code_suffix(code: str, prefixes: tuple[str, ...]) -> str:
    """The code without the first matching prefix ('ICD10//I10' -> 'I10').

    >>> code_suffix("ICD10//I10", ("ICD10//",)), code_suffix("X", ("ICD10//",))
    ('I10', 'X')
    """
    for p in prefixes:
        if code.startswith(p):
            return code[len(p):]
    return code


def code_meta(codes: pl.DataFrame, all_codes: list[str], diagnosis_prefixes: tuple[str, ...],
              measurement_prefixes: tuple[str, ...], drop_suffixes: tuple[str, ...] = ()) -> pl.DataFrame:
    """One row per code: name, unit suffix, display order and ICD-10 chapter (codes.parquet + fallbacks).

    Codes missing from codes.parquet get a readable name from the code itself (prefix stripped);
    ``drop_suffixes`` are removed from the end of measurement descriptions before the unit is read.
    """
    desc = dict(zip(codes["code"].to_list(), codes["description"].to_list())) if codes.height else {}
    order = {c: i for i, c in enumerate(codes["code"].to_list())} if codes.height else {}
    rows = []
    for code in sorted(set(all_codes)):
        short = code_suffix(code, diagnosis_prefixes + measurement_prefixes)
        text = desc.get(code) or short.replace("//", " ").replace("_", " ").capitalize()
        is_diag = code.startswith(diagnosis_prefixes)
        for suffix in () if is_diag else drop_suffixes:
            text = text[: -len(suffix)] if suffix and text.endswith(suffix) else text
        name, unit = (text, "") if is_diag else split_unit(text)
        rows.append({"code": code, "short": short, "name": name, "unit_suffix": unit_suffix(unit),
                     "order": order.get(code, len(order)), "chapter": icd_chapter(short) if is_diag else -1})
    schema = {"code": pl.String, "short": pl.String, "name": pl.String, "unit_suffix": pl.String,
              "order": pl.Int64, "chapter": pl.Int64}
    return pl.DataFrame(rows, schema=schema)
