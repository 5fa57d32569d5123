"""Feedback for the grid: a live bar with outcome counts and ETA, and a final summary table.

Both go to stderr so that stdout stays free for results. On a terminal the bar is live; elsewhere (a log
file, a pipe) one line is printed as each job ends, with the same counts, elapsed time and ETA.
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, \
    TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class EtaColumn(ProgressColumn):
    """Time left: mean wall time per resolved job so far times the jobs left (robust for slow jobs)."""

    def render(self, task: Task) -> Text:
        if not task.completed or task.total is None or task.elapsed is None:
            return Text("eta --:--:--", style="progress.remaining")
        left = 0.0 if task.finished else task.elapsed / task.completed * (task.total - task.completed)
        return Text(f"eta {datetime.timedelta(seconds=round(left))}", style="progress.remaining")


def format_counts(counts: dict[str, int], retries: int, left: int) -> str:
    """Short one-line status of a grid (fits an 80-column terminal beside the bar and times).

    >>> format_counts({"done": 3, "skipped": 2, "failed": 1, "blocked": 4}, retries=0, left=5)
    '3 done, 1 failed, 4 blocked, 5 left'
    >>> format_counts({"done": 3, "skipped": 2, "failed": 0, "blocked": 0}, retries=2, left=0)
    '3 done, 0 failed, 0 blocked, 0 left, 2 retried'
    """
    text = f"{counts['done']} done, {counts['failed']} failed, {counts['blocked']} blocked, {left} left"
    return text + (f", {retries} retried" if retries else "")


@contextlib.contextmanager
def bar(total: int, skipped: int, enabled: bool) -> Iterator[Callable[..., None]]:
    """Yield ``update(counts, retried, job=None, outcome=None)``; the bar advances as jobs end (done, failed or
    blocked). Not on a terminal, each ending ``job`` (with its ``outcome``: ok, seconds) prints one line."""
    console = Console(stderr=True)
    live = enabled and console.is_terminal
    progress = Progress(SpinnerColumn(), BarColumn(bar_width=16), TextColumn("{task.fields[status]}"),
                        TimeElapsedColumn(), EtaColumn(),
                        console=console, disable=not live, transient=False)
    zero = {"done": 0, "skipped": skipped, "failed": 0, "blocked": 0}
    task = progress.add_task("grid", total=total, status=format_counts(zero, 0, total))
    retried = [0]
    start = time.monotonic()

    def update(counts: dict[str, int], retry: bool, job: Any = None, outcome: dict | None = None) -> None:
        retried[0] += retry
        resolved = counts["done"] + counts["failed"] + counts["blocked"]
        status = format_counts(counts, retried[0], total - resolved)
        progress.update(task, completed=resolved, status=status)
        if enabled and not live and job is not None:
            print(job_line(job.name, outcome or {}, retry, resolved, total, status, time.monotonic() - start),
                  file=sys.stderr, flush=True)

    with progress:
        yield update


def job_line(name: str, outcome: dict, retry: bool, resolved: int, total: int, status: str, elapsed: float) -> str:
    """One line for a job that ended, for logs: what ended, how, the grid's counts, elapsed time and ETA.

    >>> job_line("sft freeform gpt2-xs scale 600 seed 0", {"ok": True, "seconds": 271.4}, False, 3, 12,
    ...          "3 done, 0 failed, 0 blocked, 9 left", 900.0)
    '[3/12] done sft freeform gpt2-xs scale 600 seed 0 in 0:04:31 | 3 done, 0 failed, 0 blocked, 9 left | elapsed 0:15:00, eta 0:45:00'
    """
    what = "done" if outcome.get("ok") else ("failed, will retry" if retry else "failed")
    eta = datetime.timedelta(seconds=round(elapsed / resolved * (total - resolved))) if resolved else "--:--:--"
    return (f"[{resolved}/{total}] {what} {name} in {datetime.timedelta(seconds=round(outcome.get('seconds', 0)))} "
            f"| {status} | elapsed {datetime.timedelta(seconds=round(elapsed))}, eta {eta}")


def summary(report: Any, root: Path) -> None:
    """Print the outcome counts and every failed job with its last error."""
    console = Console(stderr=True)
    table = Table(title=f"grid finished in {report.seconds:.1f} s")
    table.add_column("outcome")
    table.add_column("jobs", justify="right")
    for name, n in report.counts().items():
        table.add_row(name, str(n))
    console.print(table)
    console.print(f"grid root: {root}", soft_wrap=True, markup=False, highlight=False)
    for job_id, errors in report.retried.items():
        console.print(f"retried {job_id}: done after {len(errors)} failed attempt(s), last error: {errors[-1]}",
                      soft_wrap=True, markup=False, highlight=False, style="yellow")
    for f in report.failed:
        console.print(f"FAILED {f['job_id']} {f['fn']} after {len(f['attempts'])} attempt(s), "
                      f"{len(f['blocked'])} dependant(s) blocked: {f['error']}", soft_wrap=True, markup=False,
                      highlight=False, style="red")
    if report.failed:
        console.print(f"details: {root / 'failures.json'}", soft_wrap=True, markup=False, highlight=False)
