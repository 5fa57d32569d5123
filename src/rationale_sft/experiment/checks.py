"""Checks of a grid's inputs before any job runs: the MEDS dataset, real checkpoints, scales vs the train split.

``check_inputs`` reads only small files (directory listings, ``subject_splits.parquet``, model
``config.json``s); it loads no weights and builds nothing. A scale needs at least as many subjects as the
train split holds; whether the split also has enough cases for ``data.controls_per_case`` is only known
once the labels exist, so the ``labels`` job checks that before any training job can start.
"""

from __future__ import annotations

from pathlib import Path

from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError


def check_inputs(cfg: ExperimentConfig, config_dir: str | Path = ".") -> None:
    """Raise one InputError listing every problem of ``cfg``'s inputs (paths relative to ``config_dir``)."""
    problems: list[str] = []
    n_train, where = _train_split(cfg, Path(config_dir), problems)
    for scale in sorted(cfg.grid.scales):
        if n_train is not None and scale > n_train:
            problems.append(f"grid.scales: scale {scale} is larger than the train split {where}; use scales "
                            f"<= {n_train}" + (" or raise data.synth.n_subjects" if not cfg.data.meds_dir else ""))
            break
    seen: set[str] = set()
    for key, specs in (("grid.models", cfg.grid.models), ("fewshot.models", cfg.fewshot.models)):
        for i, spec in enumerate(specs if key == "grid.models" or cfg.fewshot.enabled else ()):
            if spec.checkpoint and spec.checkpoint not in seen:
                seen.add(spec.checkpoint)
                _checkpoint(spec.checkpoint, f"{key}[{i}]", problems)
    if problems:
        raise InputError("; ".join(problems))


def meds_path(cfg: ExperimentConfig, config_dir: Path) -> Path:
    """``data.meds_dir`` resolved against the grid YAML's directory (as the plan reads it)."""
    path = Path(cfg.data.meds_dir).expanduser()
    return (path if path.is_absolute() else config_dir / path).resolve()


def _train_split(cfg: ExperimentConfig, config_dir: Path, problems: list[str]) -> tuple[int | None, str]:
    """Subjects in the train split and a phrase saying where that number comes from (None if unknown)."""
    if not cfg.data.meds_dir:
        from rationale_sft.cohort.synth import split_cuts

        n = int(split_cuts(cfg.data.synth)[0])
        return n, (f"of the synthetic cohort ({n} = {cfg.data.synth.train_share:g} x "
                   f"{cfg.data.synth.n_subjects} subjects)")
    from rationale_sft.cohort import meds_io

    path = meds_path(cfg, config_dir)
    try:
        meds_io.data_files(path)
        splits = meds_io.read_splits(path)
    except (InputError, OSError) as exc:
        problems.append(f"data.meds_dir: {exc}")
        return None, ""
    n = int((splits["split"] == meds_io.SPLITS[0]).sum())
    return n, f"({n} subjects in {path / 'metadata' / 'subject_splits.parquet'})"


def _checkpoint(name: str, key: str, problems: list[str]) -> None:
    """A real checkpoint must be a model dir with weights, a cached hub id, or an installed alias."""
    from rationale_sft.models import hub

    try:
        if name.lower() in hub.ALIASES:
            hub.gguf_path(name.lower())  # converting it is compute: the base job does that
        else:
            hub.resolve(name)
    except InputError as exc:
        problems.append(f"{key}: {exc}")
