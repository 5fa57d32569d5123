"""Run grid jobs as Ray tasks, on an existing cluster or a private local instance.

Every job becomes one task reserving its ``resources`` (or the config's per-job num_cpus/num_gpus).
Tasks read and write the grid root directly, so on a multi-node cluster the root must be a path every
node sees (a shared filesystem such as NFS or Lustre mounted at the same place). A job asking for more
CPUs or GPUs than the whole cluster has (at the start of ``execute``; no autoscaling) fails at once
instead of waiting forever. Ray's own task retries
are off: the scheduler in ``execute`` retries, exactly as with the local executor.

Job errors and outcomes travel through Ray and carry subject ids and dates, so Ray, like the teacher, is
loopback-only unless ``executor.allow_remote_phi`` is set: the address is resolved once, checked, and Ray
is given the checked address rather than the name. Ray's usage statistics are switched off
(``RAY_USAGE_STATS_ENABLED=0``) unless the environment already sets that variable.

>>> join_address(ExecutorConfig()), join_address(ExecutorConfig(ray_address="127.0.0.1:6379"))
('local', '127.0.0.1:6379')
>>> join_address(ExecutorConfig(ray_address="10.0.0.7:6379", allow_remote_phi=True))
'10.0.0.7:6379'
>>> join_address(ExecutorConfig(ray_address="10.0.0.7:6379"))
Traceback (most recent call last):
...
rationale_sft.errors.InputError: executor.ray_address '10.0.0.7:6379' is not a loopback address (127.0.0.0/8, ::1, localhost); job errors and outcomes sent through Ray carry subject ids and dates, so a remote cluster needs executor.allow_remote_phi=true: set it only for a cluster you are permitted to send patient data to
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from urllib.parse import urlsplit

from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.errors import InputError
from rationale_sft.grid.job import Job, run_job
from rationale_sft.privacy import LOOPBACK, checked_addresses

MAX_IN_FLIGHT = 100_000  # Ray queues tasks by their resources itself; the scheduler need not hold them back


def task_options(job: Job, cfg: ExecutorConfig) -> dict:
    """Ray task options of one job: its own reservations over the config's per-job defaults.

    >>> from rationale_sft.grid.job import make_job
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
    address = join_address(cfg)  # before importing ray: a refused address never gets near a connection
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # read by ray.init and the processes it starts
    import ray

    started = not ray.is_initialized()
    if started:
        kwargs: dict = {"address": address, "logging_level": logging.WARNING}
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


def join_address(cfg: ExecutorConfig) -> str:
    """The address ``ray.init`` gets: 'local' (a private instance, whatever RAY_ADDRESS says) when none is
    set, the address as given with the remote opt-in, otherwise the checked loopback address of its host."""
    if not cfg.ray_address:
        return "local"
    if cfg.allow_remote_phi:
        return cfg.ray_address
    if cfg.ray_address == "auto":
        raise InputError("executor.ray_address 'auto' joins whatever cluster RAY_ADDRESS or the last `ray start` "
                         "points to, which may be remote; give the head's loopback address (e.g. 127.0.0.1:6379), "
                         f"or {_OPT_IN}")
    scheme, host, port = _split(cfg.ray_address)
    addresses = checked_addresses(host, port, False, lambda bad: _refusal(cfg.ray_address, host, bad))
    ip = min(addresses, key=lambda a: ":" in a)  # IPv4 first: Ray heads listen there ('localhost' gives ::1 first)
    ip = f"[{ip}]" if ":" in ip else ip
    return f"{scheme}{ip}{f':{port}' if port else ''}"


def _split(address: str) -> tuple[str, str, int | None]:
    """('ray://' or '', host, port) of a Ray address.

    >>> _split("ray://[::1]:10001"), _split("head:6379")
    (('ray://', '::1', 10001), ('', 'head', 6379))
    """
    scheme, sep, rest = address.rpartition("://")
    try:
        parts = urlsplit(f"//{rest}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host:
        raise InputError(f"executor.ray_address {address!r} must be HOST:PORT (e.g. 127.0.0.1:6379), "
                         "ray://HOST:PORT, or empty for a private local instance")
    return scheme + sep, host, port


def _refusal(address: str, host: str, remote: list[str]) -> str:
    resolved = "" if remote == [host] else f" (it resolves to {', '.join(remote)})"
    return f"executor.ray_address {address!r} is not a {LOOPBACK}{resolved}; {_OPT_IN}"


_OPT_IN = ("job errors and outcomes sent through Ray carry subject ids and dates, so a remote cluster needs "
           "executor.allow_remote_phi=true: set it only for a cluster you are permitted to send patient data to")
