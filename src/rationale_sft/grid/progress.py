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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, \
    TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class EtaColumn(ProgressColumn):
    """Time left: mean wall time per resolved job so far times the jobs left (robust for slow jobs)."""

    def render(self, task: Task) -> Text:
        if task.finished or not task.completed or task.total is None or task.elapsed is None:
            return Text("eta --:--:--", style="progress.remaining")
        left = task.elapsed / task.completed * (task.total - task.completed)
        return Text(f"eta {datetime.timedelta(seconds=round(left))}", style="progress.remaining")


def format_counts(counts: dict[str, int], retries: int, left: int) -> str:
    """One-line status of a grid.

    >>> format_counts({"done": 3, "skipped": 2, "failed": 1, "blocked": 4}, retries=2, left=5)
    '3 done, 1 failed, 4 blocked, 2 retried, 5 left (2 already done)'
    """
    return (f"{counts['done']} done, {counts['failed']} failed, {counts['blocked']} blocked, "
            f"{retries} retried, {left} left ({counts['skipped']} already done)")


@contextlib.contextmanager
def bar(total: int, skipped: int, enabled: bool) -> Iterator[Callable[[dict[str, int], bool], None]]:
    """Yield ``update(counts, retried)``; the bar advances as jobs end (done, failed or blocked)."""
    console = Console(stderr=True)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]grid"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), EtaColumn(),
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
    table = Table(title=f"grid {root} ({report.seconds:.1f} s)")
    table.add_column("outcome")
    table.add_column("jobs", justify="right")
    for name, n in report.counts().items():
        table.add_row(name, str(n))
    console.print(table)
    if report.failed:
        failed = Table(title=f"failed jobs (details in {root / 'failures.json'})")
        for col in ("job", "fn", "attempts", "last error", "blocked"):
            failed.add_column(col)
        for f in report.failed:
            failed.add_row(f["job_id"], f["fn"], str(len(f["attempts"])), f["error"][:200], str(len(f["blocked"])))
        console.print(failed)
