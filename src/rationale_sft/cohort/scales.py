"""Nested data scales: label-stratified training subsets, each smaller one inside every larger one.

Only the train split is subsampled; tuning and held-out subjects never appear, so the test set is the
same at every scale and seed. Cases and controls are each shuffled once with the ``data_subset``
generator and every subset takes a prefix of both orders, which makes the subsets nested by
construction.

>>> import polars as pl
>>> labels = pl.DataFrame({"subject_id": range(10), "boolean_value": [True, False] * 5,
...                        "split": ["train"] * 8 + ["held_out"] * 2})
>>> sub = nested_subsets(labels, [2, 4], seed=0)
>>> sub.group_by("scale").len().sort("scale").rows()
[(2, 2), (4, 4)]
>>> set(sub.filter(pl.col("scale") == 2)["subject_id"]) <= set(sub.filter(pl.col("scale") == 4)["subject_id"])
True
>>> nested_subsets(labels, [9], seed=0)
Traceback (most recent call last):
...
rationale_sft.errors.InputError: scale 9 needs 5 cases and 4 controls but the train split has 4 cases and 4 controls; use sizes <= 8
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from rationale_sft.errors import InputError
from rationale_sft.seeding import rng


def n_cases_for(size: int, case_fraction: float) -> int:
    """Cases in a subset of ``size`` (round half up, so the count never falls as the size grows).

    >>> [n_cases_for(n, 0.25) for n in (1, 2, 3, 4, 10)]
    [0, 1, 1, 1, 3]
    """
    return int(size * case_fraction + 0.5)


def case_fraction(n_pos: int, n: int, case_ratio: float | None) -> float:
    """Share of cases in every subset: the train prevalence, or 1/(1+r) for ``case_ratio`` r controls per case.

    >>> case_fraction(10, 100, None), case_fraction(10, 100, 3.0)
    (0.1, 0.25)
    >>> case_fraction(10, 100, 0)
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: case_ratio must be > 0 controls per case (e.g. 3 for 1:3), got 0
    """
    if case_ratio is None:
        return n_pos / n
    if not case_ratio > 0:
        raise InputError(f"case_ratio must be > 0 controls per case (e.g. 3 for 1:3), got {case_ratio}")
    return 1.0 / (1.0 + case_ratio)


def nested_subsets(labels: pl.DataFrame, sizes: Sequence[int], seed: int,
                   case_ratio: float | None = None) -> pl.DataFrame:
    """Nested, label-stratified train subsets: DataFrame(subject_id Int64, scale Int64), one row per membership.

    ``case_ratio`` is the number of controls per case (3.0 means 1:3); None keeps the train prevalence.
    """
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] <= 0:
        raise InputError(f"scales must be positive subject counts (e.g. 500,1000,2000), got {list(sizes)}")
    train = labels.filter(pl.col("split") == "train").sort("subject_id")
    cases = train.filter(pl.col("boolean_value"))["subject_id"].to_numpy()
    controls = train.filter(~pl.col("boolean_value"))["subject_id"].to_numpy()
    if train.height == 0:
        raise InputError("no train-split subjects to subsample; check the labels' split column")
    frac = case_fraction(len(cases), train.height, case_ratio)
    gen = rng(seed, "data_subset")
    cases, controls = gen.permutation(cases), gen.permutation(controls)
    rows = []
    for size in sizes:
        k = n_cases_for(size, frac)
        if k > len(cases) or size - k > len(controls):
            limit = _max_size(len(cases), len(controls), frac)
            raise InputError(f"scale {size} needs {k} cases and {size - k} controls but the train split has "
                             f"{len(cases)} cases and {len(controls)} controls; use sizes <= {limit}")
        ids = list(cases[:k]) + list(controls[:size - k])
        rows.append(pl.DataFrame({"subject_id": ids, "scale": [size] * size},
                                 schema={"subject_id": pl.Int64, "scale": pl.Int64}))
    return pl.concat(rows).sort("scale", "subject_id")


def _max_size(n_cases: int, n_controls: int, frac: float) -> int:
    size = n_cases + n_controls
    while size > 0 and (n_cases_for(size, frac) > n_cases or size - n_cases_for(size, frac) > n_controls):
        size -= 1
    return size
