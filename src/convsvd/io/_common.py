"""Small helpers shared by the file loaders (private)."""

from __future__ import annotations

import re
from typing import Sequence

from convsvd.io.spec import SkippedParam

_MAX_DETAIL = 160


def describe_error(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``, shortened, for one-line errors."""
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    if len(first) > _MAX_DETAIL:
        first = first[: _MAX_DETAIL - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def skipped_summary(skipped: Sequence[SkippedParam], limit: int = 4) -> str:
    """``"; skipped: a (why); b (why) ..."`` for error messages, or ``""``."""
    if not skipped:
        return ""
    head = "; ".join(f"{s.name} ({s.reason})" for s in skipped[:limit])
    more = f" ... (+{len(skipped) - limit} more)" if len(skipped) > limit else ""
    return f"; skipped: {head}{more}"


def name_list(names: Sequence[str], limit: int = 3) -> str:
    """``"a, b, c (+4 more)"``: at most ``limit`` names for an error message."""
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def natural_key(text: str) -> list[str | int]:
    """Sort key that orders ``"layer.2"`` before ``"layer.10"``.

    ``re.split`` with a capturing group alternates text and digit runs, so the
    lists always hold ``str`` at even and ``int`` at odd positions and compare
    without type errors.
    """
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text))]

