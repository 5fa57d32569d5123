"""rationale-sft: does supervising a language model with rationales help or hurt disease prediction?"""

__version__ = "0.1.0"
