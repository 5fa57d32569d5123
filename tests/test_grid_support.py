"""Cheap, real job functions for the grid engine tests, and a driver: ``python -m test_grid_support ROOT``.

Every function appends one line to ``ROOT/calls.log`` per call (its side effect, counted by the tests),
writes its outputs, then ``DONE`` through ``rundir.run_stage``. Nothing here is a test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from rationale_sft import rundir
from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import execute, make_job

HERE = "test_grid_support"


def log_call(root: Path, name: str, **fields) -> None:
    """Append one line (small O_APPEND writes are atomic, also from several processes)."""
    with open(root / "calls.log", "a") as fh:
        fh.write(json.dumps({"fn": name, **fields}, sort_keys=True) + "\n")


def calls(root: Path) -> list[dict]:
    path = Path(root) / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def square(out_dir: Path, root: Path, x: int, sleep: float = 0.0) -> dict:
    """Write x*x in two steps (a partial file first) and return it as a metric."""
    log_call(root, "square", x=x, pid=os.getpid())

    def work(d: Path) -> dict:
        rundir.write_text(d / "part.txt", "started\n")
        time.sleep(sleep)
        rundir.write_json(d / "value.json", {"value": x * x})
        return {}

    rundir.run_stage(out_dir, work)
    return {"x": x, "value": x * x, "label": f"sq{x}"}


def add(out_dir: Path, root: Path, inputs: list[str], bias: int, sleep: float = 0.0) -> dict:
    """Sum the values written by the dependencies in ``inputs`` (dirs relative to the root) plus bias."""
    log_call(root, "add", inputs=inputs, bias=bias)
    total = bias + sum(rundir.read_json(root / d / "value.json")["value"] for d in inputs)

    def work(d: Path) -> dict:
        rundir.write_text(d / "part.txt", "started\n")
        time.sleep(sleep)
        rundir.write_json(d / "value.json", {"value": total})
        return {}

    rundir.run_stage(out_dir, work)
    return {"value": total, "n_inputs": len(inputs)}


def flaky(out_dir: Path, root: Path, x: int) -> dict:
    """Fail on the first call (leaving partial output), succeed once its marker file exists."""
    log_call(root, "flaky", x=x)
    marker = root / f"flaky-{x}.marker"
    if not marker.exists():
        marker.write_text("failed once\n")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "part.txt").write_text("partial")
        raise RuntimeError(f"flaky job {x}: first attempt fails")
    rundir.run_stage(out_dir, lambda d: rundir.write_json(d / "value.json", {"value": x}) and None)
    return {"value": x}


def crashing(out_dir: Path, root: Path, x: int) -> dict:
    """SIGKILL its own worker process on the first call (never use it with workers=1), then succeed."""
    log_call(root, "crashing", x=x)
    marker = root / f"crashing-{x}.marker"
    if not marker.exists():
        marker.write_text("killed once\n")
        os.kill(os.getpid(), signal.SIGKILL)
    rundir.run_stage(out_dir, lambda d: rundir.write_json(d / "value.json", {"value": x}) and None)
    return {"value": x}


def fragile(out_dir: Path, root: Path, x: int) -> dict:
    """Fail while ``ROOT/BROKEN`` exists (a cause the user can fix), else write x."""
    log_call(root, "fragile", x=x)
    if (root / "BROKEN").exists():
        raise ValueError(f"fragile job {x}: ROOT/BROKEN exists")
    rundir.run_stage(out_dir, lambda d: rundir.write_json(d / "value.json", {"value": x}) and None)
    return {"value": x}


def forgetful(out_dir: Path, root: Path) -> dict:
    """Write output but never DONE: the engine must not count it as done."""
    log_call(root, "forgetful")
    rundir.write_json(Path(out_dir) / "value.json", {"value": 1})
    return {"value": 1}


def numpy_metrics(out_dir: Path, root: Path, n: int) -> dict:
    """Return numpy values as metrics (what scoring code naturally produces)."""
    import numpy as np

    rundir.run_stage(out_dir, lambda d: None)
    values = np.arange(n)
    return {"mean": values.mean(), "values": values}


def wide(out_dir: Path, root: Path, values: list[float]) -> dict:
    """Many params and many metrics (more than one MLflow request holds)."""
    rundir.run_stage(out_dir, lambda d: None)
    return {"m": {str(i): v for i, v in enumerate(values)}}


def node(out_dir: Path, root: Path, k: int) -> dict:
    """Fail while ``ROOT/fail-<k>`` exists, else write k."""
    log_call(root, "node", k=k)
    if (root / f"fail-{k}").exists():
        raise RuntimeError(f"node {k} told to fail")
    rundir.write_json(Path(out_dir) / "value.json", {"value": k})
    rundir.mark_done(out_dir)  # DONE without a manifest: cheap enough for many hypothesis examples
    return {"k": k}


def threads(out_dir: Path, root: Path) -> dict:
    """Report the thread settings the worker runs with."""
    rundir.run_stage(out_dir, lambda d: None)
    return {"omp": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid()}


def diamond_grid(n_shared: int = 5, n_runs: int = 25, sleep: float = 0.0) -> list:
    """``n_shared`` square jobs and ``n_runs`` add jobs each reading two of them (30 jobs by default)."""
    shared = [make_job(f"{HERE}:square", {"x": i, "sleep": sleep}, out_dir="shared/square-{id}")
              for i in range(n_shared)]
    runs = []
    for k in range(n_runs):
        a, b = shared[k % n_shared], shared[(k * 3 + 1) % n_shared]
        runs.append(make_job(f"{HERE}:add", {"inputs": [a.out_dir, b.out_dir], "bias": k, "sleep": sleep},
                             deps=[a, b], out_dir="runs/{id}"))
    return runs + shared  # dependants first on purpose: execute must order them


def main(argv: list[str]) -> int:
    """Run the diamond grid under ``argv[0]`` with ``argv[1]`` workers and ``argv[2]`` seconds per job."""
    root, workers, sleep = Path(argv[0]), int(argv[1]), float(argv[2])
    report = execute(diamond_grid(sleep=sleep), root, ExecutorConfig(workers=workers), progress=False)
    print(json.dumps(report.counts()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
