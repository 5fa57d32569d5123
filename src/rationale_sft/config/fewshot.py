"""Configuration of the few-shot arm: an untrained model with k in-context demonstrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rationale_sft.answer import ANSWER_MARKER


@dataclass(frozen=True)
class FewshotConfig:
    """How demonstrations are chosen from the training split and shown to the model."""

    k: int = 4
    "Demonstrations per prompt (fewer when they do not fit the context; recorded)."
    selection: Literal["random", "balanced", "nearest"] = "balanced"
    "random; balanced = half Yes, half No; nearest = most similar training histories."
    embedder: Literal["minilm", "tfidf"] = "tfidf"
    "Similarity for 'nearest': all-MiniLM-L6-v2 mean-pooled embeddings or TF-IDF vectors (cosine)."
    with_rationales: bool = False
    "Demonstrations show history + rationale + label (and the model writes a rationale) instead of history + label."
    rationale_style: Literal["freeform", "stepwise"] = "freeform"
    "Rationale style of the demonstrations."
    rationale_mode: Literal["conditioned", "blind"] = "conditioned"
    "Rationale mode of the demonstrations."
    answer_marker: str = ANSWER_MARKER
    "Text that introduces the answer slot after a rationale."
    pool_split: str = "train"
    "Split the demonstrations are drawn from (never the scored subjects)."
    max_len: int = 0
    "Token budget of a few-shot prompt plus generation; 0 = the model's context length."
    seed: int = 0
    "Seed of demonstration selection."
    subset: int = 0
    "Score only this many test subjects (0 = all): a label-stratified draw, the same for every few-shot run."
    subset_seed: int = 0
    "Seed of the subset draw (not varied by the grid's seeds, so few-shot runs stay paired on subjects)."
    system_prompt: str | None = ""
    "System prompt of chat prompts; '' = none (a template's default is kept out); null = the template's choice."
    dtype: Literal["float32", "bfloat16"] = "float32"
    ("Weights dtype while scoring. bfloat16 roughly halves the time of a 100M+ model on a device with native "
     "bf16; elsewhere (an AVX2-only CPU emulates it, several times slower) float32 runs, with a warning; "
     "fewshot.json records the dtype that ran. score.dtype does not apply to few-shot runs.")

    def __post_init__(self) -> None:
        if self.k < 0 or self.max_len < 0 or self.subset < 0:
            raise ValueError(f"'k', 'max_len' and 'subset' must be >= 0, got k={self.k}, max_len={self.max_len}, "
                             f"subset={self.subset}")
