"""Terminal feedback for the grid: a live bar with outcome counts and ETA, and a final summary table.

Both go to stderr so that stdout stays free for results; the live bar is shown only on a terminal.
"""

from __future__ import annotations

import contextlib
import datetime
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
def bar(total: int, skipped: int, enabled: bool) -> Iterator[Callable[[dict[str, int], bool], None]]:
    """Yield ``update(counts, retried)``; the bar advances as jobs end (done, failed or blocked)."""
    console = Console(stderr=True)
    progress = Progress(SpinnerColumn(), BarColumn(bar_width=16), TextColumn("{task.fields[status]}"),
                        TimeElapsedColumn(), EtaColumn(),
                        console=console, disable=not (enabled and console.is_terminal), transient=False)
    zero = {"done": 0, "skipped": skipped, "failed": 0, "blocked": 0}
    task = progress.add_task("grid", total=total, status=format_counts(zero, 0, total))
    retried = [0]

    def update(counts: dict[str, int], retry: bool) -> None:
        retried[0] += retry
        resolved = counts["done"] + counts["failed"] + counts["blocked"]
        progress.update(task, completed=resolved, status=format_counts(counts, retried[0], total - resolved))

    with progress:
        yield update


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
