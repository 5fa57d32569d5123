"""Optional MLflow logging of grid jobs: one run per executed job, its kwargs as params, numeric metrics.

Only a local sqlite store is supported (``sqlite:///path/mlflow.db``), written from the driver process
alone, so workers never contend for the database. mlflow is imported only when logging is switched on, and
its usage telemetry is off (``MLFLOW_DISABLE_TELEMETRY=true``) unless the environment already sets that variable.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid.job import Job

BATCH = 100  # MLflow's LogBatch takes at most 100 params and 1000 items per request
MAX_PARAM_CHARS = 6000


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested kwargs as dotted keys (lists are indexed).

    >>> flatten({"train": {"lr": 0.1, "arms": ["label", "rationale"]}, "seed": 1})
    {'train.lr': 0.1, 'train.arms.0': 'label', 'train.arms.1': 'rationale', 'seed': 1}
    """
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """The finite numbers among a job's (flattened) metrics; booleans and text are left out.

    >>> numeric_metrics({"auroc": 0.7, "n": 10, "ok": True, "arm": "label", "nan": float("nan"), "d": {"x": 1}})
    {'auroc': 0.7, 'n': 10.0, 'd.x': 1.0}
    """
    return {k: float(v) for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


@contextlib.contextmanager
def tracker(cfg: ExecutorConfig, root: Path) -> Iterator[Callable[[Job, dict], None] | None]:
    """Yield ``log(job, outcome)`` writing one MLflow run per finished job, or None when logging is off."""
    if not cfg.mlflow_uri:
        yield None
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before the import: mlflow reads it there too
    from mlflow.tracking import MlflowClient  # heavy import: only when asked for

    client = MlflowClient(tracking_uri=cfg.mlflow_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    # Artifacts (none are logged today) go beside the grid, not into the current directory.
    exp_id = experiment.experiment_id if experiment else client.create_experiment(
        cfg.mlflow_experiment, artifact_location=(root / "mlflow-artifacts").as_uri())
    yield lambda job, outcome: log_job(client, exp_id, job, outcome)


def log_job(client: Any, experiment_id: str, job: Job, outcome: dict) -> str:
    """Log one job's outcome as a finished (or failed) MLflow run; return the run id."""
    from mlflow.entities import Metric, Param

    tags = {"job_id": job.id, "fn": job.fn, "out_dir": job.out_dir, "error": outcome["error"][:5000]}
    run = client.create_run(experiment_id, run_name=job.id, tags=tags)
    params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(job.kwargs).items()]
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in numeric_metrics(outcome["metrics"]).items()]
    metrics.append(Metric("job_seconds", float(outcome["seconds"]), now, 0))
    for i in range(0, max(len(params), len(metrics)), BATCH):  # within MLflow's per-request limits
        client.log_batch(run.info.run_id, params=params[i:i + BATCH], metrics=metrics[i:i + BATCH])
    client.set_terminated(run.info.run_id, status="FINISHED" if outcome["ok"] else "FAILED")
    return run.info.run_id
