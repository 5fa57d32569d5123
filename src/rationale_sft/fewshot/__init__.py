"""The few-shot arm: an untrained base model scored with k in-context demonstrations."""

from rationale_sft.fewshot.stage import fewshot

__all__ = ["fewshot"]
