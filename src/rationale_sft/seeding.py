"""Seeds: one master seed, and a separate, named random generator for every purpose.

>>> a = rng(7, "data_subset").integers(0, 1000, 3)
>>> b = rng(7, "data_subset").integers(0, 1000, 3)
>>> bool((a == b).all()), bool((a == rng(7, "data_order").integers(0, 1000, 3)).all())
(True, False)
"""

from __future__ import annotations

import hashlib

import numpy as np


def purpose_id(purpose: str) -> int:
    """A stable 32-bit integer for a purpose name (independent of Python's hash randomisation)."""
    return int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "little")


def derive_seed(seed: int, purpose: str) -> int:
    """A child seed for ``purpose``: record it, hand it to libraries that take an int (torch, lightgbm)."""
    return int(np.random.SeedSequence([int(seed), purpose_id(purpose)]).generate_state(1)[0])


def rng(seed: int, purpose: str) -> np.random.Generator:
    """A numpy generator for one purpose: ``np.random.default_rng([seed, purpose_id])``."""
    return np.random.default_rng([int(seed), purpose_id(purpose)])
