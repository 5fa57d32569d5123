"""Progress of a long stage (pretraining, training, generation): a live bar on a terminal, lines in a log.

On a terminal (stderr) a rich bar shows the description, count, rate, elapsed time, time left and the
stage's own fields (e.g. the loss). Elsewhere (a log file, a pipe, a grid worker) one line is printed at
most every ``LOG_EVERY_S`` seconds and when the stage ends, so a log says what runs, how fast and how long
it still takes, without a line per step.
"""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Callable, Iterator

LOG_EVERY_S = 60.0
"Seconds between progress lines when stderr is not a terminal."


@contextlib.contextmanager
def stage(description: str, total: int, *, completed: int = 0, unit: str = "steps",
          every_s: float | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``: ``n`` more of ``total`` ``unit`` done (``completed`` were done before,
    e.g. by a resumed run); ``fields`` (numbers) are shown beside the count. Not on a terminal, a line is
    printed at most every ``every_s`` seconds (default ``LOG_EVERY_S``) and at the end."""
    every_s = LOG_EVERY_S if every_s is None else every_s
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with _bar(console, description, total, completed, unit) as advance:
            yield advance
        return
    start, last, done = time.monotonic(), [time.monotonic()], [completed]

    def advance(n: int = 1, **fields: float) -> None:
        done[0] += n
        now = time.monotonic()
        if now - last[0] >= every_s or done[0] >= total:
            last[0] = now
            print(progress_line(description, done[0], total, unit, now - start, done[0] - completed, fields),
                  file=sys.stderr, flush=True)

    yield advance


def progress_line(description: str, done: int, total: int, unit: str, elapsed: float, run_here: int,
                  fields: dict) -> str:
    """One progress line: ``run_here`` of the ``done`` were done in ``elapsed`` seconds (the rate and ETA).

    >>> progress_line("train freeform", 40, 160, "steps", 65.0, 40, {"loss": 1.23456})
    'train freeform: 40/160 steps (25%), 0.615 steps/s, elapsed 0:01:05, eta 0:03:15, loss 1.235'
    """
    rate = run_here / elapsed if elapsed > 0 else 0.0
    eta = datetime.timedelta(seconds=round((total - done) / rate)) if rate > 0 else "--:--:--"
    text = (f"{description}: {done}/{total} {unit} ({100 * done / max(total, 1):.0f}%), {rate:.3g} {unit}/s, "
            f"elapsed {datetime.timedelta(seconds=round(elapsed))}, eta {eta}")
    return text + "".join(f", {k} {v:.4g}" for k, v in fields.items())


@contextlib.contextmanager
def _bar(console, description: str, total: int, completed: int, unit: str) -> Iterator[Callable[..., None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[shown]}"),
                        console=console, transient=True)
    with progress:
        task = progress.add_task(description, total=total, completed=completed, shown="")

        def advance(n: int = 1, **fields: float) -> None:
            progress.update(task, advance=n, shown=" ".join(f"{k} {v:.4g}" for k, v in fields.items()))

        yield advance
