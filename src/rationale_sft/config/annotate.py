"""Expert-annotation configuration: packet export and rating import.

>>> from rationale_sft.config import build
>>> build(ExportConfig, {"n": 20}).n, build(ImportConfig, {}).method
(20, 'bootstrap')
>>> build(ExportConfig, {"n": 0})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: n must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CRITERIA = ("accuracy", "grounding", "relevance")
"""Rubric criteria, each rated 1 (poor) to 5 (excellent)."""


@dataclass(frozen=True)
class ExportConfig:
    """A blinded annotation packet (``rationale-sft annotate export``)."""

    n: int = 50
    "Number of rationales in the packet (sampled without replacement)."
    seed: int = 0
    "Seed of the sample and of its shuffled order."
    stratify: bool = True
    "Balance the sample over (style, mode, backend, model) groups, as far as each group's size allows."
    title: str = "Rationale review"
    "Heading of the HTML packet."

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class ImportConfig:
    """Rating import and agreement statistics (``rationale-sft annotate import``)."""

    method: Literal["bootstrap", "t"] = "bootstrap"
    "Interval for criterion means: item-level percentile bootstrap, or a t interval over item means."
    n_bootstrap: int = 2000
    "Bootstrap resamples of items."
    level: float = 0.95
    "Confidence level of the intervals."
    seed: int = 0
    "Seed of the bootstrap generator."

    def __post_init__(self) -> None:
        if self.n_bootstrap < 100:
            raise ValueError(f"n_bootstrap must be >= 100, got {self.n_bootstrap}")
        if not 0.5 <= self.level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {self.level}")
