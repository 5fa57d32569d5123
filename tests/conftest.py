"""Shared pytest settings: keep torch and BLAS to the machine's two cores, headless plotting."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
