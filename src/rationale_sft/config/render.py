"""Config of the render stage: which template, which codes are diagnoses or measurements, token budget.

>>> from rationale_sft import config
>>> cfg = config.build(RenderConfig, {}, ["template=by_system"])
>>> cfg.template, cfg.diagnosis_prefixes
('by_system', ('ICD10//',))
>>> config.build(RenderConfig, {}, ["template=list"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'template' must be one of 'chronological', 'by_system', 'recap', 'recap_factors', got 'list'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RenderConfig:
    """How a subject's history before the prediction time becomes a prompt."""

    template: Literal["chronological", "by_system", "recap", "recap_factors"] = "chronological"
    """Prompt layout: a chronological list of diagnoses, diagnoses grouped by ICD-10 chapter, chronological
    with sex and age restated in the question block, or that plus a line listing the record's knowledge-base
    risk and protective factors, strongest first."""
    question: str = ("Will this person be diagnosed with Alzheimer's disease or a related dementia within "
                     "5 years? Answer Yes or No.")
    "The question asked at the end of every prompt (the answer marker follows it)."
    anchor: str = "assessment"
    "Word for the prediction time in relative timings ('7 years before assessment')."
    diagnosis_prefixes: tuple[str, ...] = ("ICD10//",)
    "Codes starting with one of these are diagnoses: listed by first occurrence with their names."
    measurement_prefixes: tuple[str, ...] = ("UKB//",)
    "Codes starting with one of these are measurements: the last value before the prediction time."
    exclude_codes: tuple[str, ...] = ("UKB//ASSESSMENT", "UKB//LOST_TO_FOLLOWUP")
    "Codes never shown (trigger and censoring events)."
    description_drop: tuple[str, ...] = (" (baseline assessment)",)
    "Text removed from the end of measurement descriptions before the name and unit are read."
    show_codes: bool = False
    "Append the code to each diagnosis name, e.g. 'Essential (primary) hypertension [I10]'."
    max_tokens: int | None = None
    "Token budget of a prompt (null = none); the oldest history items are dropped first to fit."
    tokenizer: str | None = None
    "Hugging Face tokenizer directory counting tokens for max_tokens (null = whitespace-separated words)."

    def __post_init__(self) -> None:
        if not self.diagnosis_prefixes or any(not p for p in self.diagnosis_prefixes):
            raise ValueError("diagnosis_prefixes must list at least one non-empty code prefix (e.g. [ICD10//])")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0 or null, got {self.max_tokens}")
        if not self.question.strip():
            raise ValueError("question must not be empty")
