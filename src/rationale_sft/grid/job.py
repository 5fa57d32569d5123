"""Grid jobs: content-addressed units of work with dependencies, and the worker-side call of one job.

A job is a dotted function path, JSON keyword arguments and the ids of the jobs it depends on; its id is a
hash of those three, so declaring the same work twice yields one job and relaunching a grid is
idempotent. A job writes into ``ROOT/<out_dir>`` and is complete when that directory holds ``DONE``
(written by the job function itself, last, e.g. with ``rundir.run_stage``) and ``result.json`` (the
metrics the function returned, written by the engine).

>>> a = make_job("math:sqrt", {"x": 4}, out_dir="shared/sqrt-{id}")
>>> b = make_job("math:sqrt", {"x": 4}, out_dir="shared/sqrt-{id}")
>>> a == b, a.out_dir == f"shared/sqrt-{a.id}"
(True, True)
>>> c = make_job("math:sqrt", {"x": 4}, deps=[a])
>>> c.deps == (a.id,), c.id != a.id, c.out_dir == f"jobs/{c.id}"
(True, True, True)
>>> make_job("math:sqrt", {"x": {1, 2}})
Traceback (most recent call last):
...
rationale_sft.errors.InputError: job math:sqrt: kwargs must be JSON-serialisable (str, number, bool, null, list, dict); got set for key 'x'
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rationale_sft import rundir
from rationale_sft.errors import InputError

RESULT = "result.json"
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
RESERVED_KWARGS = ("out_dir", "root")


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(out_dir=ROOT/out_dir, root=ROOT, **kwargs)`` after every job in ``deps``."""

    id: str
    "Content hash of (fn, kwargs, deps); see ``job_id``."
    fn: str
    "Dotted path 'package.module:function', importable in every worker."
    kwargs: dict
    "JSON-serialisable keyword arguments (tuples arrive as lists)."
    deps: tuple[str, ...] = ()
    "Ids of the jobs whose outputs this one reads."
    out_dir: str = ""
    "Output directory, relative to the grid root."
    resources: dict = dataclasses.field(default_factory=dict)
    "Per-job reservations for Ray: num_cpus, num_gpus, memory (bytes)."
    label: str = ""
    "What a person calls the job in progress lines (not part of its id); empty: its function and out_dir."

    @property
    def function(self) -> str:
        """The job function's name, without its module (``'m:f'`` -> ``'f'``)."""
        return self.fn.rsplit(":", 1)[-1]

    @property
    def name(self) -> str:
        """The job as progress lines and messages show it.

        >>> make_job("m:f", {"x": 1}, label="train freeform").name, make_job("m:f", {"x": 1}, out_dir="runs/a").name
        ('train freeform', 'f runs/a')
        """
        return self.label or f"{self.function} {self.out_dir}"


def job_id(fn: str, kwargs: dict, deps: Iterable[str] = ()) -> str:
    """Content hash of a job: the same function, arguments and dependencies give the same id.

    >>> job_id("m:f", {"a": 1, "b": [1, 2]}) == job_id("m:f", {"b": [1, 2], "a": 1})
    True
    >>> job_id("m:f", {"a": 1}) == job_id("m:f", {"a": 1}, ["0123"])
    False
    """
    canon = json.dumps({"fn": fn, "kwargs": kwargs, "deps": sorted(deps)}, sort_keys=True,
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def make_job(fn: str | Callable, kwargs: dict | None = None, deps: Sequence[Job | str] = (), *,
             out_dir: str = "jobs/{id}", resources: dict | None = None, label: str = "") -> Job:
    """Declare a job; ``out_dir`` may contain ``{id}`` (e.g. ``"runs/{id}"``, ``"shared/render-{id}"``); ``label``
    names it in progress lines.

    ``fn`` is the job function itself or its dotted path ``'package.module:function'``. A function is stored
    by that path (the same id either way) and its keyword arguments are checked against its signature now,
    so a plan whose arguments do not match the function fails when it is declared, not when the job runs:

    >>> def square(out_dir, root, x): ...
    >>> make_job(square, {"x": 2}).id == make_job("rationale_sft.grid.job:square", {"x": 2}).id
    True
    >>> make_job(square, {"x": 2, "y": 3})
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: job rationale_sft.grid.job:square: its arguments do not match the function (got an unexpected keyword argument 'y'); it takes: x
    """
    if callable(fn):
        fn = _bound(fn, kwargs or {})
    _check_fn(fn)
    kwargs = _json_roundtrip(fn, kwargs or {})
    dep_ids = tuple(d.id if isinstance(d, Job) else str(d) for d in deps)
    _check_resources(fn, resources or {})
    jid = job_id(fn, kwargs, dep_ids)
    rel = out_dir.format(id=jid)
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not rel.strip("/."):
        raise InputError(f"job {fn}: out_dir {rel!r} must be a non-empty path inside the grid root, "
                         "e.g. 'runs/{id}'")
    return Job(jid, fn, kwargs, dep_ids, rel, dict(resources or {}), label)


def order(jobs: Iterable[Job]) -> list[Job]:
    """Jobs deduplicated by id, in an order where every job follows its dependencies (stable otherwise).

    >>> a = make_job("m:f", {"x": 1}); b = make_job("m:f", {"x": 2}, deps=[a])
    >>> [j.id for j in order([b, a, b])] == [a.id, b.id]
    True
    >>> order([b])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: job ... (m:f) depends on ... which is not among the jobs given; pass every dependency to execute()
    """
    by_id = _dedupe(jobs)
    out: list[Job] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = placed
    for jid in by_id:
        _visit(jid, by_id, state, out)
    return out


def dependants(jobs: Sequence[Job], root_id: str) -> list[str]:
    """Ids of every job depending on ``root_id``, directly or through others; ``jobs`` in dependency order.

    >>> a = make_job("m:f", {"x": 1}); b = make_job("m:f", {}, deps=[a]); c = make_job("m:g", {}, deps=[b])
    >>> dependants([a, b, c], a.id) == [b.id, c.id], dependants([a, b, c], c.id)
    (True, [])
    """
    hit = {root_id}
    for job in jobs:
        if any(d in hit for d in job.deps):
            hit.add(job.id)
    return [j.id for j in jobs if j.id in hit and j.id != root_id]


def is_complete(root: str | Path, job: Job) -> bool:
    """True when the job's directory holds both ``DONE`` and ``result.json``."""
    out = Path(root) / job.out_dir
    return rundir.is_done(out) and (out / RESULT).is_file()


def job_states(root: str | Path, jobs: Iterable[Job]) -> dict[str, list[str]]:
    """What ``execute`` would do now: job ids that are ``complete`` (skipped), ``partial`` (a directory
    without DONE or result.json: run again from scratch) and ``missing`` (never started).
    """
    out: dict[str, list[str]] = {"complete": [], "partial": [], "missing": []}
    for job in order(jobs):
        state = "complete" if is_complete(root, job) else "partial" if (Path(root) / job.out_dir).exists() \
            else "missing"
        out[state].append(job.id)
    return out


def collect(root: str | Path, jobs: Iterable[Job]) -> list[dict]:
    """One row per complete job (``job_id``, ``fn``, ``out_dir`` and its returned metrics), in the order given.

    Only complete directories count, so after a crash the table holds each finished job exactly once and
    nothing from partial output.
    """
    rows = []
    for job in _dedupe(jobs).values():
        if is_complete(root, job):
            result = rundir.read_json(Path(root) / job.out_dir / RESULT)
            rows.append({"job_id": job.id, "fn": job.fn, "out_dir": job.out_dir, **result["metrics"]})
    return rows


def run_job(job: Job, root: str) -> dict:
    """Worker side of one attempt: call the job function and record its result; never raises.

    Returns ``{"ok", "metrics", "error", "traceback", "seconds"}``. The attempt fails when the function
    raises, returns something other than a dict or None, or returns without writing ``DONE``.
    """
    start = time.time()
    out = Path(root) / job.out_dir
    try:
        (out / RESULT).unlink(missing_ok=True)
        (out / rundir.DONE).unlink(missing_ok=True)  # DONE without result.json: a crash between the two
        metrics = _call(job.fn, job.kwargs, out, Path(root))
        rundir.write_json(out / RESULT, {"job_id": job.id, "fn": job.fn, "kwargs": job.kwargs, "metrics": metrics})
        return {"ok": True, "metrics": metrics, "error": "", "traceback": "", "seconds": time.time() - start}
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a recorded attempt
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"ok": False, "metrics": {}, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(), "seconds": time.time() - start}


def resolve(fn: str) -> Any:
    """Import ``'package.module:function'`` and return the function."""
    module, _, name = fn.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------------- internals
def _call(fn: str, kwargs: dict, out: Path, root: Path) -> dict:
    result = resolve(fn)(out_dir=out, root=root, **kwargs)
    if result is not None and not isinstance(result, dict):
        raise TypeError(f"job function {fn} returned {type(result).__name__}; return a dict of metrics or None")
    if not rundir.is_done(out):
        raise RuntimeError(f"job function {fn} returned without writing {out / rundir.DONE}; write outputs "
                           "then DONE (e.g. with rationale_sft.rundir.run_stage)")
    return plain_metrics(fn, result or {})


def plain_metrics(fn: str, metrics: dict) -> dict:
    """Metrics as plain JSON values: numpy scalars and arrays become Python numbers and lists; NaN stays.

    >>> import numpy as np
    >>> plain_metrics("m:f", {"auroc": np.float32(0.5), "n": np.int64(3), "v": np.arange(2), "x": float("nan")})
    {'auroc': 0.5, 'n': 3, 'v': [0, 1], 'x': nan}
    >>> plain_metrics("m:f", {"model": object()})
    Traceback (most recent call last):
    ...
    TypeError: job function m:f returned metrics that are not JSON-serialisable (object); return numbers, strings, lists or dicts
    """
    def plain(obj: Any) -> Any:
        for attr in ("tolist", "item"):  # numpy arrays / scalars, torch tensors
            if hasattr(obj, attr):
                return getattr(obj, attr)()
        raise TypeError(f"job function {fn} returned metrics that are not JSON-serialisable "
                        f"({type(obj).__name__}); return numbers, strings, lists or dicts")

    return json.loads(json.dumps(metrics, default=plain))


def job_path(fn: Callable) -> str:
    """The dotted path ``'package.module:function'`` by which workers import a job function."""
    return f"{fn.__module__}:{fn.__qualname__}"


def _bound(fn: Callable, kwargs: dict) -> str:
    """``fn``'s dotted path, after checking that it accepts ``out_dir``, ``root`` and ``kwargs``."""
    path = job_path(fn)
    signature = inspect.signature(fn)
    try:
        signature.bind(**{k: None for k in RESERVED_KWARGS}, **kwargs)
    except TypeError as exc:
        params = ", ".join(p for p in signature.parameters if p not in RESERVED_KWARGS)
        raise InputError(f"job {path}: its arguments do not match the function ({exc}); it takes: {params}") from None
    return path


def _check_fn(fn: str) -> None:
    module, sep, name = fn.partition(":")
    if not sep or not module or not name:
        raise InputError(f"job function {fn!r} must be a dotted path 'package.module:function'")


def _check_resources(fn: str, resources: dict) -> None:
    for key, value in resources.items():
        if key not in RESOURCE_KEYS:
            raise InputError(f"job {fn}: unknown resource {key!r}; allowed: {', '.join(RESOURCE_KEYS)}")
        if not isinstance(value, (int, float)) or value < 0:
            raise InputError(f"job {fn}: resource {key!r} must be a number >= 0, got {value!r}")


def _json_roundtrip(fn: str, obj: dict) -> dict:
    bad = set(RESERVED_KWARGS) & set(obj)
    if bad:
        raise InputError(f"job {fn}: kwargs may not use the reserved names {sorted(bad)} (the engine passes them)")
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError):
        key, typ = _first_bad(obj)
        raise InputError(f"job {fn}: kwargs must be JSON-serialisable (str, number, bool, null, list, dict); "
                         f"got {typ} for key {key!r}") from None


def _first_bad(obj: Any, key: str = "") -> tuple[str, str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _first_bad(v, f"{key}.{k}" if key else str(k))
            if found[0]:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = _first_bad(v, f"{key}[{i}]")
            if found[0]:
                return found
    elif isinstance(obj, float) and obj != obj:
        return key or "?", "NaN"
    elif not isinstance(obj, (str, int, float, bool, type(None))):
        return key or "?", type(obj).__name__
    return "", ""


def _dedupe(jobs: Iterable[Job]) -> dict[str, Job]:
    by_id: dict[str, Job] = {}
    by_dir: dict[str, str] = {}
    for job in jobs:
        if job.id in by_id and by_id[job.id].out_dir != job.out_dir:
            raise InputError(f"job {job.id} ({job.fn}) declared twice with different out_dir "
                             f"({by_id[job.id].out_dir!r} vs {job.out_dir!r}); one job has one directory")
        if by_dir.setdefault(job.out_dir, job.id) != job.id:
            raise InputError(f"jobs {by_dir[job.out_dir]} and {job.id} ({job.fn}) share out_dir {job.out_dir!r}; "
                             "put '{id}' in out_dir so that different work gets different directories")
        by_id.setdefault(job.id, job)
    return by_id


def _visit(jid: str, by_id: dict[str, Job], state: dict[str, int], out: list[Job]) -> None:
    # Iterative depth-first placement: deep dependency chains must not hit the recursion limit.
    stack = [(jid, iter(by_id[jid].deps))]
    if state.get(jid):
        return
    state[jid] = 1
    while stack:
        cur, deps = stack[-1]
        dep = next(deps, None)
        if dep is None:
            stack.pop()
            state[cur] = 2
            out.append(by_id[cur])
        elif dep not in by_id:
            raise InputError(f"job {cur} ({by_id[cur].fn}) depends on {dep} which is not among the jobs given; "
                             "pass every dependency to execute()")
        elif state.get(dep) == 1:
            raise InputError(f"jobs form a cycle through {dep} and {cur}; a job cannot depend on its own output")
        elif not state.get(dep):
            state[dep] = 1
            stack.append((dep, iter(by_id[dep].deps)))
