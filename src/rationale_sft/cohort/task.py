"""Loading prediction tasks: a task YAML (docs/task.md) or an ACES task config plus dotted overrides into a
TaskConfig."""

from __future__ import annotations

from pathlib import Path

from rationale_sft import config
from rationale_sft.config.task import TaskConfig


def load_task(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TaskConfig:
    """Read a task YAML (or an ACES config, translated by ``cohort.aces``) and apply ``key=value`` overrides;
    errors name the key and the nearest valid ones.

    >>> load_task(None, ["trigger_code=ADMISSION//CARDIAC", "outcome_prefixes=[DISCHARGE]",
    ...                  "horizon_years=0.01"]).horizon_years
    0.01
    >>> load_task(None, ["trigger_code=A", "outcome_prefixes=[B]", "horizon_years=soon"])
    Traceback (most recent call last):
    ...
    rationale_sft.config.ConfigError: 'horizon_years' must be float, got str 'soon'
    """
    from rationale_sft.cohort import aces

    data = config.read_yaml(path) if path else {}
    if aces.is_aces(data):
        data = aces.translate(data, path)
    return config.build(TaskConfig, data, overrides)
