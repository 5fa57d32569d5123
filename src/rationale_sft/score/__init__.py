"""Label-probability scoring: P(Yes)/(P(Yes)+P(No)) at the answer slot, with and without generated rationales."""

from rationale_sft.score.stage import score

__all__ = ["score"]
