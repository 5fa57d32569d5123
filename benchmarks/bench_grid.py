"""Grid engine overhead: trivial jobs through execute() vs calling the job function directly.

Usage: python benchmarks/bench_grid.py [N_JOBS]. Prints jobs/s and the per-job overhead of the engine
(content ids, completeness checks, result.json, scheduling) for the sequential and process-pool executors,
and the time of a no-op relaunch (every job skipped). Figures on a shared machine are noisy; compare the
ratios within one run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rationale_sft import rundir
from rationale_sft.config.grid import ExecutorConfig
from rationale_sft.grid import execute, make_job

MODULE = Path(__file__).stem


def noop(out_dir: Path, root: Path, i: int) -> dict:
    """The cheapest valid job: one output file, then DONE."""
    rundir.write_json(Path(out_dir) / "value.json", {"i": i})
    rundir.mark_done(out_dir)
    return {"i": i}


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(n: int, repeats: int = 3) -> None:
    jobs = [make_job(f"{MODULE}:noop", {"i": i}, out_dir="runs/{id}") for i in range(n)]
    runs: dict[str, list[float]] = {"direct": [], "seq": [], "rerun": [], "pool": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k in range(repeats):  # interleaved, best of each: load from other processes hits all alike
            runs["direct"].append(seconds(lambda: [noop(tmp / f"direct{k}" / j.out_dir, tmp, j.kwargs["i"])
                                                   for j in jobs]))
            runs["seq"].append(seconds(lambda: execute(jobs, tmp / f"seq{k}", ExecutorConfig(), progress=False)))
            runs["rerun"].append(seconds(lambda: execute(jobs, tmp / f"seq{k}", ExecutorConfig(), progress=False)))
            runs["pool"].append(seconds(lambda: execute(jobs, tmp / f"pool{k}", ExecutorConfig(workers=2),
                                                        progress=False)))
    direct, seq, rerun, pool = (min(runs[key]) for key in ("direct", "seq", "rerun", "pool"))
    print(f"{n} no-op jobs, best of {repeats}")
    print(f"  direct calls          {direct:7.3f} s  {n / direct:8.0f} jobs/s")
    print(f"  execute, sequential   {seq:7.3f} s  {n / seq:8.0f} jobs/s  overhead {(seq - direct) / n * 1e3:6.2f} ms/job"
          f"  ({seq / direct:.2f}x direct)")
    print(f"  execute, 2 processes  {pool:7.3f} s  {n / pool:8.0f} jobs/s  (includes spawning the pool)")
    print(f"  relaunch, all skipped {rerun:7.3f} s  {rerun / n * 1e3:6.2f} ms/job")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
