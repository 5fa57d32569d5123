"""Run grid jobs as Ray tasks, on an existing cluster or a private local instance.

Every job becomes one task reserving its ``resources`` (or the config's per-job num_cpus/num_gpus).
Tasks read and write the grid root directly, so on a multi-node cluster the root must be a path every
node sees (a shared filesystem such as NFS or Lustre mounted at the same place). A job asking for more
CPUs or GPUs than the whole cluster has (at the start of ``execute``; no autoscaling) fails at once
instead of waiting forever. Ray's own task retries
are off: the scheduler in ``execute`` retries, exactly as with the local executor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid.jobs import Job, run_job

MAX_IN_FLIGHT = 100_000  # Ray queues tasks by their resources itself; the scheduler need not hold them back


def task_options(job: Job, cfg: ExecutorConfig) -> dict:
    """Ray task options of one job: its own reservations over the config's per-job defaults.

    >>> from rationale_sft.grid.jobs import make_job
    >>> task_options(make_job("m:f", {}, resources={"num_gpus": 1}), ExecutorConfig(num_cpus=2))
    {'num_cpus': 2, 'num_gpus': 1, 'max_retries': 0}
    >>> task_options(make_job("m:f", {}, resources={"memory": 2e9}), ExecutorConfig())["memory"]
    2000000000
    """
    opts = {"num_cpus": job.resources.get("num_cpus", cfg.num_cpus),
            "num_gpus": job.resources.get("num_gpus", cfg.num_gpus), "max_retries": 0}
    if "memory" in job.resources:
        opts["memory"] = int(job.resources["memory"])
    return opts


def infeasible(opts: dict, capacity: dict) -> str:
    """Why a task could never be placed on a cluster of this total capacity ("" when it could).

    >>> infeasible({"num_cpus": 1, "num_gpus": 1}, {"CPU": 2.0})
    'needs 1 GPU but the Ray cluster has 0; start Ray nodes with --num-gpus, or set num_gpus=0 for this job'
    >>> infeasible({"num_cpus": 1, "num_gpus": 0}, {"CPU": 2.0})
    ''
    """
    for key, name, flag in (("num_cpus", "CPU", "num_cpus"), ("num_gpus", "GPU", "num_gpus")):
        need, have = opts.get(key, 0), capacity.get(name, 0)
        if need > have:
            return (f"needs {need:g} {name} but the Ray cluster has {have:g}; start Ray nodes with "
                    f"--{flag.replace('_', '-')}, or set {flag}={have:g} for this job")
    return ""


@contextlib.contextmanager
def ray_submitter(cfg: ExecutorConfig, root: Path) -> Iterator[tuple[Callable[[Job], Future], int]]:
    """Connect to Ray (``cfg.ray_address``, or start a local instance) and yield ``(submit, max in flight)``.

    Ray is shut down afterwards only when this call started the connection.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        kwargs: dict = {"address": cfg.ray_address or None, "logging_level": logging.WARNING}
        if not cfg.ray_address:
            kwargs["include_dashboard"] = False
        ray.init(**kwargs)
    task = ray.remote(run_job)
    capacity = ray.cluster_resources()

    def submit(job: Job) -> Future:
        opts = task_options(job, cfg)
        problem = infeasible(opts, capacity)
        if problem:  # Ray would queue it forever: fail the attempt now, with the reason
            fut: Future = Future()
            fut.set_exception(RuntimeError(f"job {job.id} ({job.fn}) {problem}"))
            return fut
        return task.options(**opts).remote(job, str(root)).future()

    try:
        yield submit, MAX_IN_FLIGHT
    finally:
        if started:
            ray.shutdown()
