"""Executor settings of the grid engine: where jobs run, how many at once, retries, tracking.

>>> from rationale_sft import config
>>> config.build(ExecutorConfig, {}, ["kind=ray", "ray_address=127.0.0.1:6379"]).kind
'ray'
>>> config.build(ExecutorConfig, {"kind": "slurm"})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: 'kind' must be one of 'local', 'ray', got 'slurm'
>>> config.build(ExecutorConfig, {}, ["workers=0"])
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: workers must be >= 1 (1 runs jobs in this process), got 0
>>> config.build(ExecutorConfig, {"mlflow_uri": "http://localhost:5000"})
Traceback (most recent call last):
...
rationale_sft.config.ConfigError: config: mlflow_uri must start with 'sqlite:///' (a local sqlite file, e.g. sqlite:///runs/mlflow.db), got 'http://localhost:5000'; or leave it empty to log nothing
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ExecutorConfig:
    """How the grid engine runs its jobs."""

    kind: Literal["local", "ray"] = "local"
    "Executor: 'local' (this machine; in-process or a process pool) or 'ray' (a Ray cluster)."
    workers: int = 1
    "Local executor: 1 runs jobs one after another in this process; N > 1 uses a pool of N processes."
    ray_address: str = ""
    "Ray cluster to join ('host:port', 'ray://host:port'); empty starts a private local Ray instance."
    allow_remote_phi: bool = False
    "Ray: allow joining a cluster that is not on a loopback address (job errors and outcomes carry patient data)."
    num_cpus: float = 1.0
    "CPUs Ray reserves for each job unless the job's resources say otherwise."
    num_gpus: float = 0.0
    "GPUs Ray reserves for each job unless the job's resources say otherwise (e.g. 1 for training)."
    retries: int = 1
    "Extra attempts for a failed job before it is reported in failures.json (0: one attempt only)."
    mlflow_uri: str = ""
    "MLflow tracking store, 'sqlite:///path/mlflow.db'; empty logs nothing."
    mlflow_experiment: str = "rationale-sft"
    "MLflow experiment name that receives one run per executed job."

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (1 runs jobs in this process), got {self.workers}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"num_cpus and num_gpus must be >= 0, got {self.num_cpus}, {self.num_gpus}")
        if self.mlflow_uri and not self.mlflow_uri.startswith("sqlite:///"):
            raise ValueError("mlflow_uri must start with 'sqlite:///' (a local sqlite file, e.g. "
                             f"sqlite:///runs/mlflow.db), got {self.mlflow_uri!r}; or leave it empty to log nothing")
