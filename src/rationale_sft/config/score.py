"""Configuration of label-probability scoring: P(Yes)/(P(Yes)+P(No)) at the answer slot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ScoreConfig:
    """How held-out subjects are scored."""

    batch_size: int = 8
    ("Prompts per forward pass or generation batch (results do not depend on it); 0 = auto: 8 on cpu, 64 on "
     "cuda. score.json records the size used.")
    max_new_tokens: int = 128
    "Most rationale tokens generated before the answer marker is appended."
    greedy: bool = True
    "Greedy decoding of rationales; False samples with temperature and top_p."
    temperature: float = 1.0
    "Sampling temperature of sampled rationales (greedy=false, and the n_samples samples)."
    top_p: float = 1.0
    "Nucleus sampling of sampled rationales: keep the most likely tokens up to this probability; 1 = all."
    n_samples: int = 0
    "Generating arms: K rationales sampled per subject besides the main one (samples.parquet, p_yes_k); 0 = off."
    seed: int = 0
    "Seed of the generation generators (sampling only; each sample's is derived from it, subject and sample)."
    mode: Literal["auto", "direct", "generate"] = "auto"
    "direct = read the answer slot right after the prompt; generate = write a rationale first; auto = by arm."
    split: str = "held_out"
    "Which split of examples.parquet to score."
    max_len: int = 0
    "Token budget of prompt + generation; 0 = the training max_len, else the model's context length."
    save_states: bool = False
    "Also save the final hidden state at the answer slot (answer_states.npy) for a linear probe."
    device: str = "auto"
    "Torch device: auto = cuda when available, else cpu."
    dtype: Literal["float32", "bfloat16"] = "float32"
    ("Weights dtype of the score stage (the output layer stays float32). bfloat16 runs only on a device with "
     "native bf16, else float32 with a warning; score.json records the dtype that ran. Few-shot runs use "
     "fewshot.dtype.")

    def __post_init__(self) -> None:
        if self.batch_size < 0 or self.max_new_tokens < 1 or self.max_len < 0:
            raise ValueError(f"'batch_size' must be >= 0 (0 = auto), 'max_new_tokens' >= 1 and 'max_len' >= 0; got "
                             f"{self.batch_size}, {self.max_new_tokens}, {self.max_len}")
        if self.temperature <= 0:
            raise ValueError(f"'temperature' must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"'top_p' must be in (0, 1] (1 = no nucleus cut), got {self.top_p}")
        if self.n_samples < 0:
            raise ValueError(f"'n_samples' must be >= 0 (0 = no sampled rationales), got {self.n_samples}")
