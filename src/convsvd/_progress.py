"""Progress reporting shared by long computations, on stderr.

On a terminal: a rich bar with the time elapsed and an estimate of the time left.
Elsewhere (a log file, a batch job, a pipe): plain log lines, one at most every
``CONVSVD_PROGRESS_INTERVAL`` seconds (default 10) once the work has run that long,
each with the share done and an estimate of the time left, and a last line when it
ends — short work prints nothing.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

ProgressArg = "bool | None | Callable[[int, int, str], None]"


class Bar(Protocol):
    """What :func:`progress` yields: ``advance(n, what)``."""

    def advance(self, n: int = 1, what: str = "") -> None: ...


class _Null:
    def advance(self, n: int = 1, what: str = "") -> None:  # noqa: D401 - trivial
        pass


class _Callback:
    def __init__(self, fn: Callable[[int, int, str], None], total: int) -> None:
        self.fn, self.total, self.done = fn, total, 0

    def advance(self, n: int = 1, what: str = "") -> None:
        self.done += n
        self.fn(self.done, self.total, what)


class _Rich:
    def __init__(self, bar, task) -> None:
        self.bar, self.task = bar, task

    def advance(self, n: int = 1, what: str = "") -> None:
        self.bar.update(self.task, advance=n, status=what)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("CONVSVD_PROGRESS_INTERVAL", "10")))
    except ValueError:
        return 10.0


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class _Lines:
    """Log lines: ``SVD: 12/40 (30 %), 1m02s elapsed, about 2m25s left · 20000×20000``."""

    def __init__(self, description: str, total: int, interval: float) -> None:
        self.description, self.total, self.interval = description, total, interval
        self.done, self.t0 = 0, time.monotonic()
        self.last = self.t0  # the first line comes after one interval: short work stays silent
        self.printed = False

    def line(self, what: str = "") -> str:
        elapsed = time.monotonic() - self.t0
        if self.total <= 0:  # a total nobody knows in advance
            return f"{self.description}: {self.done} done, {_duration(elapsed)} elapsed" + (f" · {what}" if what else "")
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta = f", about {_duration(left)} left" if self.done and self.done < self.total else ""
        tail = f" · {what}" if what else ""
        return (f"{self.description}: {self.done}/{self.total} ({100 * self.done / self.total:.0f} %), "
                f"{_duration(elapsed)} elapsed{eta}{tail}")

    def advance(self, n: int = 1, what: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or (self.printed and 0 < self.total <= self.done):
            self.last, self.printed = now, True
            print(self.line(what), file=sys.stderr, flush=True)


@contextmanager
def progress(total: int, description: str, enabled: object = None, threshold: int = 8) -> Iterator[Bar]:
    """Yield an object with ``advance(n, what)``.

    ``enabled``: True shows progress, False nothing, None shows it when
    ``total ≥ threshold``; a callable ``fn(done, total, what)`` receives every step
    instead. Shown means a rich bar when stderr is a terminal, log lines otherwise
    (module docstring).

    >>> with progress(3, "demo", enabled=lambda d, t, w: print(d, t, w)) as bar:
    ...     bar.advance(2, "two")
    2 3 two
    """
    if callable(enabled):
        yield _Callback(enabled, total)
        return
    show = enabled if enabled is not None else total >= threshold
    if not show:
        yield _Null()
        return
    if not sys.stderr.isatty():
        yield _Lines(description, total, _interval())
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[status]}"), transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, status="")
        yield _Rich(bar, task)
