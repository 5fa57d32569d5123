"""The grid scheduler: run jobs after their dependencies, skip finished ones, retry, report failures.

``execute(jobs, root, cfg)`` is the whole engine. A job whose directory is complete (``DONE`` and
``result.json``) is skipped, so a relaunch after a crash or a fix runs exactly the missing jobs. Before it
is skipped, its files are checked against the sizes its manifest records (and their sha256 with
``verify``, or when a job about to run reads them); a job whose files changed is rebuilt from scratch,
with every job depending on it. Failed attempts are retried up to ``cfg.retries`` times; a job that
still fails is written to ``ROOT/failures.json`` and every job depending on it is reported as blocked,
while independent jobs go on.
Retries live here, not in Ray, so that the local and Ray executors behave the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from rationale_sft import rundir
from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.errors import InputError
from rationale_sft.grid import progress as progresslib
from rationale_sft.grid import tracking
from rationale_sft.grid.job import RESULT, Job, dependants, is_complete, order, run_job

FAILURES = "failures.json"
LOCK = rundir.GRID_LOCK
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
Submit = Callable[[Job], Future]


@dataclasses.dataclass
class ExecutionReport:
    """What one ``execute`` call did; every job given appears in exactly one of the four groups."""

    done: list[str] = dataclasses.field(default_factory=list)
    "Jobs run to completion by this call."
    skipped: list[str] = dataclasses.field(default_factory=list)
    "Jobs already complete before this call (not run again)."
    failed: list[dict] = dataclasses.field(default_factory=list)
    "Jobs that failed on every attempt: the entries written to failures.json."
    blocked: dict[str, str] = dataclasses.field(default_factory=dict)
    "Jobs not run because a job they depend on failed: job id -> id of the failed job."
    rebuilt: dict[str, str] = dataclasses.field(default_factory=dict)
    "Jobs that were complete but whose files had changed (or whose dependency's had): job id -> why."
    metrics: dict[str, dict] = dataclasses.field(default_factory=dict)
    "Metrics returned by the jobs run by this call, by job id."
    retried: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    "Jobs done only after failed attempts: job id -> the error of each failed attempt."
    seconds: float = 0.0
    "Wall time of the call."

    @property
    def ok(self) -> bool:
        """True when every job is complete."""
        return not self.failed and not self.blocked

    def counts(self) -> dict[str, int]:
        """Number of jobs per outcome."""
        return {"done": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed),
                "blocked": len(self.blocked)}


def execute(jobs: Iterable[Job], root: str | Path, cfg: ExecutorConfig = ExecutorConfig(),
            progress: bool = True, verify: bool = False, locked: bool = False) -> ExecutionReport:
    """Run every incomplete job of ``jobs`` under ``root`` (dependencies first) and report the outcome.

    ``verify`` checks the content hashes of every finished job's files, not only their sizes. ``locked``:
    the caller already holds ``root_lock(root)`` (and keeps it while this runs).
    """
    start = time.time()
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    jobs = order(jobs)
    with contextlib.nullcontext() if locked else root_lock(root):
        complete, rebuilt = reusable(jobs, root, verify)
        report = ExecutionReport(skipped=[j.id for j in jobs if j.id in complete], rebuilt=rebuilt)
        _discard(jobs, root, rebuilt)
        _run_incomplete(jobs, root, cfg, progress, report)
        report.seconds = time.time() - start
        _write_failures(root, jobs, report)
    if progress:
        progresslib.summary(report, root)
    return report


def _run_incomplete(jobs: list[Job], root: Path, cfg: ExecutorConfig, progress: bool,
                    report: ExecutionReport) -> None:
    complete = set(report.skipped)
    todo = [j for j in jobs if j.id not in complete]
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tracking.tracker(cfg, root))
        bar = stack.enter_context(progresslib.bar(len(todo), len(complete), progress))
        if todo:
            submit, limit = stack.enter_context(_submitter(cfg, root))
            _schedule(todo, complete, submit, limit, cfg.retries, report,
                      lambda job, outcome, final: _on_finish(job, outcome, final, report, log, bar))


def reusable(jobs: Sequence[Job], root: Path, verify: bool) -> tuple[set[str], dict[str, str]]:
    """Ids of the complete jobs whose files are intact, and ``{job id: why it must be rebuilt}``.

    Sizes are always checked; sha256 with ``verify``, and for every job that a job about to run depends
    on (its files are read now). A rebuilt job takes every complete job depending on it along.
    """
    complete = {j.id for j in jobs if is_complete(root, j)}
    rebuilt: dict[str, str] = {}
    checked: dict[str, bool] = {}  # job id -> whether its hashes were checked (else its sizes)
    changed = True
    while changed:  # a rebuilt job makes its other inputs "read now": check those by hash too
        changed = False
        read_now = {d for j in jobs if j.id not in complete for d in j.deps}
        for job in jobs:  # dependency order: a dependency's verdict comes first
            deep = verify or job.id in read_now
            bad = next((d for d in job.deps if d in rebuilt), None)
            if job.id not in complete or (not bad and job.id in checked and checked[job.id] >= deep):
                continue
            problem = f"it depends on {bad}, which is rebuilt" if bad else check_job(root, job, deep)
            checked[job.id] = deep
            if problem:
                rebuilt[job.id], changed = problem, True
                complete.discard(job.id)
    return complete, rebuilt


def check_job(root: Path, job: Job, hashes: bool) -> str:
    """Why a complete job's directory no longer holds what it wrote ("" when it does)."""
    out = root / job.out_dir
    try:
        rundir.read_json(out / RESULT)["metrics"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{out / RESULT} is unreadable"
    return rundir.verify(out, hashes=hashes)


@contextlib.contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """Hold ``ROOT/.grid.lock`` so that two drivers never run the same jobs into the same directories.

    The lock is the kernel's (flock): it is released when the driver exits, even on kill -9.
    """
    with open(root / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise InputError(f"another grid driver is running on {root} ({fh.read().strip() or 'unknown pid'}); "
                             "wait for it to finish or stop it, then relaunch") from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def local_submitter(workers: int, root: Path) -> contextlib.AbstractContextManager[tuple[Submit, int]]:
    """Run jobs in this process (workers=1) or in a pool of ``workers`` spawned processes."""
    return _inline(root) if workers == 1 else _pool(workers, root)


# --------------------------------------------------------------------------------------------- scheduling
def _schedule(todo: Sequence[Job], complete: set[str], submit: Submit, limit: int, retries: int,
              report: ExecutionReport, on_finish: Callable[[Job, dict, bool], None]) -> None:
    """Submit ready jobs (at most ``limit`` in flight), retry failures, block dependants of failed jobs."""
    by_id = {j.id: j for j in todo}
    waiting = {j.id: {d for d in j.deps if d not in complete} for j in todo}
    children: dict[str, list[str]] = defaultdict(list)
    for job in todo:
        for dep in waiting[job.id]:
            children[dep].append(job.id)
    ready = deque(j for j in todo if not waiting[j.id])
    attempts: dict[str, list[dict]] = defaultdict(list)
    in_flight: dict[Future, tuple[Job, float]] = {}
    while ready or in_flight:
        while ready and len(in_flight) < limit:
            job = ready.popleft()
            in_flight[submit(job)] = (job, time.time())
        finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for fut in finished:
            job, submitted = in_flight.pop(fut)
            outcome = _outcome(fut, submitted)
            if outcome["ok"]:
                _release(job, outcome, children, waiting, by_id, ready, report)
                if attempts[job.id]:
                    report.retried[job.id] = [a["error"] for a in attempts[job.id]]
            else:
                attempts[job.id].append(outcome | {"attempt": len(attempts[job.id]) + 1})
                if len(attempts[job.id]) <= retries:
                    ready.append(job)
                else:
                    _fail(job, attempts[job.id], todo, report)
            on_finish(job, outcome, outcome["ok"] or len(attempts[job.id]) > retries)
    assert len(report.done) + len(report.failed) + len(report.blocked) == len(todo), "job lost by scheduler"


def _release(job: Job, outcome: dict, children: dict, waiting: dict, by_id: dict, ready: deque,
             report: ExecutionReport) -> None:
    report.done.append(job.id)
    report.metrics[job.id] = outcome["metrics"]
    for child in children[job.id]:
        waiting[child].discard(job.id)
        if not waiting[child]:
            ready.append(by_id[child])


def _fail(job: Job, attempts: list[dict], todo: Sequence[Job], report: ExecutionReport) -> None:
    blocked = [d for d in dependants(todo, job.id) if d not in report.blocked]
    report.blocked.update({d: job.id for d in blocked})
    report.failed.append({
        "job_id": job.id, "fn": job.fn, "kwargs": job.kwargs, "out_dir": job.out_dir,
        "attempts": [{"attempt": a["attempt"], "error": a["error"], "seconds": round(a["seconds"], 3)}
                     for a in attempts],
        "error": attempts[-1]["error"], "traceback": attempts[-1]["traceback"], "blocked": blocked,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })


def _outcome(fut: Future, submitted: float) -> dict:
    """The worker's outcome dict, or a failed one when the worker itself died (pool broken, Ray error)."""
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - a crashed worker is a failed attempt like any other
        return {"ok": False, "metrics": {}, "error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(traceback.format_exception(exc)), "seconds": time.time() - submitted}


def _on_finish(job: Job, outcome: dict, final: bool, report: ExecutionReport, log: Callable | None,
               bar: Callable) -> None:
    bar(report.counts(), not final, job, outcome)
    if log is not None and final:
        log(job, outcome)


def _discard(jobs: Sequence[Job], root: Path, rebuilt: dict[str, str]) -> None:
    """Say why each changed job is rebuilt (one line naming the file), then remove its directory: a
    rebuild starts from nothing, not from resumable partial output that may be the damaged part."""
    along = 0
    for job in (j for j in jobs if j.id in rebuilt):
        if any(d in rebuilt for d in job.deps):
            along += 1
        else:
            print(f"rebuilding job {job.id} ({job.fn}): {rebuilt[job.id]}", file=sys.stderr, flush=True)
        shutil.rmtree(root / job.out_dir, ignore_errors=True)
    if along:
        print(f"rebuilding {along} more job(s) that depend on them", file=sys.stderr, flush=True)


def _write_failures(root: Path, jobs: Sequence[Job], report: ExecutionReport) -> None:
    """Merge this call's failures into failures.json: drop jobs now complete (run here or found complete
    on disk), keep other grids' entries."""
    path = root / FAILURES
    old = rundir.read_json(path) if path.is_file() else []
    resolved = set(report.done) | set(report.skipped) | {f["job_id"] for f in report.failed}
    entries = sorted([e for e in old if e["job_id"] not in resolved and not _complete_dir(root, e.get("out_dir"))]
                     + report.failed, key=lambda e: e["job_id"])
    if entries:
        rundir.write_json(path, entries)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- executors
def _submitter(cfg: ExecutorConfig, root: Path) -> contextlib.AbstractContextManager[tuple[Submit, int]]:
    if cfg.kind == "ray":
        from rationale_sft.grid.ray_executor import ray_submitter  # ray is optional: import it only here

        return ray_submitter(cfg, root)
    return local_submitter(cfg.workers, root)


@contextlib.contextmanager
def _inline(root: Path) -> Iterator[tuple[Submit, int]]:
    def submit(job: Job) -> Future:
        fut: Future = Future()
        fut.set_result(run_job(job, str(root)))
        return fut

    yield submit, 1


@contextlib.contextmanager
def _pool(workers: int, root: Path) -> Iterator[tuple[Submit, int]]:
    # spawn: workers start clean (no forked locks, threads or CUDA state), as on a cluster
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                   initargs=(threads, os.getpid()))

    pools = [new_pool()]

    def submit(job: Job) -> Future:
        try:
            return pools[-1].submit(run_job, job, str(root))
        except BrokenProcessPool:  # a worker died (killed, out of memory): start a fresh pool
            pools[-1].shutdown(wait=False, cancel_futures=True)
            pools.append(new_pool())
            return pools[-1].submit(run_job, job, str(root))

    try:
        yield submit, workers
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _complete_dir(root: Path, out_dir: str | None) -> bool:
    return bool(out_dir) and rundir.is_done(root / out_dir) and (root / out_dir / RESULT).is_file()


def init_worker(threads: int, parent: int) -> None:
    """Pool worker start-up: die with the driver, and share the cores among workers."""
    die_with_parent(parent)
    limit_threads(threads)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), so that a driver killed with
    kill -9 leaves no worker running on in a grid whose lock is gone; exit now if it is already dead."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the driver died before prctl took effect
        os._exit(1)


def limit_threads(n: int) -> None:
    """Pool worker start-up: share the cores among workers (torch and BLAS read these at import) unless
    the user already chose thread counts."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(n))
