"""Loading prediction tasks: a task YAML (docs/task.md) plus dotted overrides into a TaskConfig."""

from __future__ import annotations

from pathlib import Path

from rationale_sft import config
from rationale_sft.config.task import TaskConfig


def load_task(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TaskConfig:
    """Read a task YAML and apply ``key=value`` overrides; errors name the key and the nearest valid ones.

    >>> load_task(None, ["trigger_code=ADMISSION//CARDIAC", "outcome_prefixes=[DISCHARGE]",
    ...                  "horizon_years=0.01"]).horizon_years
    0.01
    >>> load_task(None, ["trigger_code=A", "outcome_prefixes=[B]", "horizon_years=soon"])
    Traceback (most recent call last):
    ...
    rationale_sft.config.ConfigError: 'horizon_years' must be float, got str 'soon'
    """
    return config.load(TaskConfig, path, overrides)
