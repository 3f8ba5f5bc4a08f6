"""Progress within one long computation (one layer's operator view): a bar or log lines with an ETA.

On a terminal the bar is a task of the running rich progress display when there is
one (rich allows one live display at a time), else a display of its own. Elsewhere
(a log file, a pipe, a batch job) it prints a line to stderr at most every
``every`` seconds and at the end: ``what: done/total blocks, elapsed, ETA``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from convsvd._progress import _Rich

Tick = Callable[[int, int], None]


def _log_lines(what: str, every: float) -> Tick:
    start = time.perf_counter()
    last = [start]

    def tick(done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - last[0] < every:
            return
        last[0] = now
        elapsed = now - start
        eta = elapsed / done * (total - done) if done else float("nan")
        print(f"{what}: {done}/{total} blocks, {elapsed:.1f} s, ETA {eta:.1f} s", file=sys.stderr, flush=True)

    return tick


@contextmanager
def meter(what: str, total: int, outer: object = None, *, every: float = 10.0) -> Iterator[Tick]:
    """Yield ``tick(done, total)`` showing the progress of ``total`` blocks.

    Parameters
    ----------
    what : str
        What is computed (the bar's description, the log line's start).
    total : int
        Blocks in all.
    outer : object, optional
        The enclosing progress object of :func:`convsvd._progress.progress`; when it is
        a rich display the bar becomes one of its tasks.
    every : float, default 10
        Seconds between two log lines.
    """
    if not sys.stderr.isatty():
        yield _log_lines(what, every)
        return
    if isinstance(outer, _Rich):
        bar = outer.bar
        task = bar.add_task(what, total=total, status="")
        try:
            yield lambda done, _total: bar.update(task, completed=done)
        finally:
            bar.remove_task(task)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=True) as display:
        task = display.add_task(what, total=total)
        yield lambda done, _total: display.update(task, completed=done)
