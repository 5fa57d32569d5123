"""Benchmark of ``cohort synth``: subjects per second and peak memory at several cohort sizes.

Each size runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own. The goal is
1M subjects in <= 60 s and <= 4 GB peak RSS on 2 cores. On a shared machine wall-clock figures are noisy:
compare ratios within one run, and read the CPU seconds (user + sys, including worker processes, and the
interpreter start-up), which depend little on other load. Peak RSS is the largest single process.

    .venv/bin/python benchmarks/bench_synth.py --sizes 100000 1000000 --workers 1 2   (default: workers 1)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from rationale_sft import config
from rationale_sft.cohort.synth import synthesize
from rationale_sft.config.synth import SynthConfig
cfg = config.build(SynthConfig, {"n_subjects": int(sys.argv[1]), "workers": int(sys.argv[2])})
start = time.perf_counter()
summary = synthesize(cfg, sys.argv[3])
seconds = time.perf_counter() - start
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
cpu = sum(u.ru_utime + u.ru_stime for u in usage)
print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_rss_mb": max(u.ru_maxrss / 1024 for u in usage), "n_events": summary["n_events"],
                  "n_distinct_codes": summary["n_distinct_codes"], "incidence_5y": summary["incidence_5y"],
                  "oracle_auroc": summary["oracle_auroc"]}))
"""


def measure(n: int, workers: int) -> dict:
    """Run one synthesis of ``n`` subjects in a subprocess; return its timing and memory figures."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", CHILD, str(n), str(workers), out], check=True,
                              capture_output=True, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"n_subjects": n, "workers": workers, **row, "subjects_per_s": n / row["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    print(f"{'subjects':>10} {'workers':>7} {'seconds':>8} {'CPU s':>7} {'subjects/s':>11} {'peak RSS MB':>11} {'events':>11} "
          f"{'codes':>6} {'inc 5y':>7} {'oracle':>7}")
    for n in args.sizes:
        for workers in args.workers:
            r = measure(n, workers)
            print(f"{n:>10} {workers:>7} {r['seconds']:>8.1f} {r['cpu_s']:>7.1f} {r['subjects_per_s']:>11,.0f} {r['peak_rss_mb']:>11,.0f} "
                  f"{r['n_events']:>11,} {r['n_distinct_codes']:>6} {r['incidence_5y']:>7.4f} {r['oracle_auroc']:>7.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
