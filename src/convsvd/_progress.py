"""Progress reporting shared by long computations (rich, on stderr)."""

from __future__ import annotations

import sys
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
    def __init__(self, bar, task) -> None:  # type: ignore[no-untyped-def]
        self.bar, self.task = bar, task

    def advance(self, n: int = 1, what: str = "") -> None:
        self.bar.update(self.task, advance=n, status=what)


@contextmanager
def progress(total: int, description: str, enabled: object = None, threshold: int = 8) -> Iterator[Bar]:
    """Yield an object with ``advance(n, what)``.

    ``enabled``: True shows a bar, False shows nothing, None shows one when
    ``total ≥ threshold`` and stderr is a terminal; a callable
    ``fn(done, total, what)`` receives every step instead.
    """
    if callable(enabled):
        yield _Callback(enabled, total)
        return
    show = enabled if enabled is not None else (total >= threshold and sys.stderr.isatty())
    if not show:
        yield _Null()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, status="")
        yield _Rich(bar, task)
