"""Where the grid's artifacts lie: file names inside the shared jobs' directories, and the paths the job
functions (``experiment.jobs``) and the run stages (``experiment.run``) read them from."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from rationale_sft import rundir

LABELS, USED, SUBSETS, TEST = "labels.parquet", "labels_used.parquet", "subsets.parquet", "test.parquet"
CORPUS = "corpus.parquet"


def grid_path(root: str | Path, rel: str) -> Path:
    """``rel`` (a job directory as the plan stores it) inside the grid ``root``; an absolute path as it is."""
    path = Path(rel)
    return path if path.is_absolute() else Path(root) / path


def base_dir(root: str, base_job_dir: str) -> Path:
    """The model directory a ``base`` job resolved (stored relative to the job's directory inside the grid)."""
    job_dir = grid_path(root, base_job_dir)
    return rundir.stored_path(rundir.read_json(job_dir / "base.json")["path"], job_dir)


def subset_ids(labels_dir: Path, scale: int, seed: int) -> list[int]:
    """Subject ids of the training subset of ``scale`` subjects drawn with ``seed``."""
    subsets = pl.read_parquet(labels_dir / SUBSETS)
    return subsets.filter((pl.col("scale") == scale) & (pl.col("seed") == seed))["subject_id"].sort().to_list()
