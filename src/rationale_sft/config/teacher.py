"""Teacher configuration: which backend writes rationales, for which examples, and how it is called.

>>> from rationale_sft.config import build
>>> cfg = build(TeacherConfig, {}, ["backend=openai", "model=m", "styles=[stepwise]", "rps=2"])
>>> cfg.backend, cfg.styles, cfg.rps, cfg.mode
('openai', ('stepwise',), 2.0, 'conditioned')
>>> build(TeacherConfig, {}, ["styles=[essay]"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'styles[0]' must be one of 'freeform', 'stepwise', got 'essay'
>>> build(TeacherConfig, {}, ["concurrency=0"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: concurrency must be >= 1, got 0
>>> build(TeacherConfig, {"backend": "hf"})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: backend 'hf' needs model=... (openai: the served model name; hf: a model dir or alias such as smollm2-135m-instruct)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class TeacherConfig:
    """How teacher rationales are generated (``rationale-sft rationales generate``)."""

    backend: Literal["knowledge", "openai", "hf"] = "knowledge"
    "Teacher: 'knowledge' (offline rule-based writer), 'openai' (any OpenAI-compatible server), 'hf' (local model)."
    model: str | None = None
    "Model: the served model name (openai); a local dir or alias such as smollm2-135m-instruct (hf); unused (knowledge)."
    styles: tuple[Literal["freeform", "stepwise"], ...] = ("freeform", "stepwise")
    "Rationale styles to generate, one rationale per example and style."
    mode: Literal["conditioned", "blind", "flipped"] = "conditioned"
    "'conditioned': told the true label; 'blind': reaches its own; 'flipped': told the opposite label (a control)."
    splits: tuple[str, ...] = ("train",)
    "Splits of examples.parquet to generate rationales for."
    cache_dir: Path | None = None
    "Cache directory shared between runs and backends (None: OUT/cache)."
    allow_failures: bool = False
    "Finish (marking the stage done) even when some items failed; failures are listed in failures.json."
    seed: int = 0
    "Master seed: knowledge-writer variation, sampling and retry jitter derive from it."
    max_factors: int | None = None
    "knowledge: most risk factors cited per rationale, strongest first (null: 5 free-form, 6 step-by-step)."
    cite: Literal["varied", "record"] = "varied"
    ("knowledge: a measurement or diagnosis by its usual name in varied phrasings, or as the record's line states "
     "it (record: 'LDL cholesterol: 4.07 mmol/L', 'Essential (primary) hypertension (2001-11, 6 years before "
     "assessment)').")
    max_new_tokens: int = 256
    "Maximum generated tokens per rationale (openai: max_tokens; hf: max_new_tokens)."
    temperature: float = 0.0
    "Sampling temperature; 0 means greedy decoding."
    base_url: str = "http://127.0.0.1:8000/v1"
    "openai: base URL of the server (the client posts to BASE_URL/chat/completions)."
    api_key_env: str | None = None
    "openai: name of the environment variable holding the API key (None: send no key)."
    allow_remote_phi: bool = False
    "openai: allow sending patient text to a non-loopback host (only for a server you are permitted to use)."
    concurrency: int = 4
    "openai: requests in flight at once."
    timeout_s: float = 60.0
    "openai: seconds before one request times out."
    max_retries: int = 4
    "openai: retries per item after a timeout, connection error, 429/5xx or an invalid reply."
    backoff_s: float = 0.5
    "openai: first retry delay in seconds; doubles on each retry, with +-50% random jitter."
    rps: float = 0.0
    "openai: at most this many requests per second over all threads (0: no limit)."
    max_reply_bytes: int = 524_288
    "openai: largest reply accepted, in bytes; a larger one fails its item without being read in full."
    batch_size: int = 8
    "hf: prompts generated together (left-padded)."
    device: str = "cpu"
    "hf: torch device ('cpu', 'cuda', 'cuda:1', ...)."
    cpu_threads: int = 0
    "hf: torch CPU threads (0: torch's default; 1 is often fastest on a machine shared with other jobs)."

    @property
    def model_name(self) -> str:
        """The model recorded with every rationale (the knowledge writer is 'knowledge')."""
        return self.model or "knowledge"

    def __post_init__(self) -> None:
        for name in ("concurrency", "batch_size", "max_new_tokens", "max_reply_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("timeout_s", "rps", "backoff_s", "temperature", "max_retries", "cpu_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.backend != "knowledge" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs model=... (openai: the served model name; hf: a "
                             "model dir or alias such as smollm2-135m-instruct)")
        if not self.styles:
            raise ValueError("styles must name at least one style (freeform, stepwise)")
        if self.max_factors is not None and self.max_factors < 1:
            raise ValueError(f"max_factors must be >= 1 or null, got {self.max_factors}")
        if not self.splits:
            raise ValueError("splits must name at least one split (train, tuning, held_out)")
