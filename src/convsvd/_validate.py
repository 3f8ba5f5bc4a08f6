"""Checks of user options, in one place and one message style.

Every check returns the value in its canonical form or raises
:class:`~convsvd.errors.InputError` with one line::

    {name} {value!r}: expected {what was expected}

``name`` is the option as the user wrote it (``steps``, ``--device``), so the
same check serves the API and the CLI.

>>> integer(3, "steps", minimum=1)
3
>>> integer(0, "steps", minimum=1)
Traceback (most recent call last):
...
convsvd.errors.InputError: steps 0: expected an integer ≥ 1
>>> choice("max", "aggregate", ("mean", "max"))
'max'
"""

from __future__ import annotations

import fnmatch
import numbers
from typing import Any, Sequence, TypeVar, get_args

from convsvd._typing import DTypeName
from convsvd.errors import InputError

T = TypeVar("T")

#: Precisions every computation accepts.
DTYPES: tuple[str, ...] = get_args(DTypeName)


def fail(name: str, value: object, expected: str) -> InputError:
    """The one-line error of every check: ``{name} {value!r}: expected {expected}``."""
    return InputError(f"{name} {value!r}: expected {expected}")


def is_int(value: object) -> bool:
    """True for Python and numpy integers, False for ``bool`` (``True`` is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer within ``[minimum, maximum]`` (either bound optional).

    >>> integer(True, "k", minimum=1)
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: k True: expected an integer ≥ 1
    """
    if minimum is not None and maximum is not None:
        expected = f"an integer in {minimum}–{maximum}"
    elif minimum is not None:
        expected = f"an integer ≥ {minimum}"
    elif maximum is not None:
        expected = f"an integer ≤ {maximum}"
    else:
        expected = "an integer"
    if not is_int(value):
        raise fail(name, value, expected)
    v = int(value)  # type: ignore[call-overload]  # numbers.Integral converts; mypy does not know it
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise fail(name, value, expected)
    return v


def optional_integer(value: object, name: str, *, minimum: int | None = None,
                     maximum: int | None = None) -> int | None:
    """None, or :func:`integer`."""
    return None if value is None else integer(value, name, minimum=minimum, maximum=maximum)


def number(value: object, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A real number in a range; each bound closed unless ``*_open``.

    >>> number(0.0, "lr", low=0, low_open=True)
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: lr 0.0: expected a number > 0
    """
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '≥'} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '≤'} {high:g}")
    expected = "a number" + (" " + " and ".join(parts) if parts else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, value, expected)
    v = float(value)
    if v != v:
        raise fail(name, value, expected)
    if low is not None and (v < low or (low_open and v == low)):
        raise fail(name, value, expected)
    if high is not None and (v > high or (high_open and v == high)):
        raise fail(name, value, expected)
    return v


def share(value: object, name: str) -> float:
    """A share (probability) in ``(0, 1]``.

    >>> share(0.1, "threshold")
    0.1
    """
    return number(value, name, low=0, high=1, low_open=True)


def choice(value: T, name: str, options: Sequence[Any] | Any) -> T:
    """One of ``options``: a sequence, or a ``Literal`` type (its arguments).

    >>> from typing import Literal
    >>> choice("x", "view", Literal["unfold", "slices"])
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: view 'x': expected one of unfold, slices
    """
    allowed = choices(options)
    if value not in allowed:
        raise fail(name, value, f"one of {', '.join(map(str, allowed))}")
    return value


def choices(options: Sequence[Any] | Any) -> tuple[Any, ...]:
    """The values of a ``Literal`` type (``typing.get_args``), or a sequence as a tuple (for argparse).

    >>> from typing import Literal
    >>> choices(Literal["mean", "max"])
    ('mean', 'max')
    """
    args = get_args(options)
    return tuple(args) if args else tuple(options)


def globs(value: object, name: str = "layers") -> tuple[str, ...] | None:
    """Layer-name glob patterns: None, a comma-separated string, or a sequence of strings.

    >>> globs("conv*, fc")
    ('conv*', 'fc')
    """
    if value is None:
        return None
    if isinstance(value, str):
        pats = tuple(p.strip() for p in value.split(",") if p.strip())
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        pats = tuple(p.strip() for p in value if p.strip())
    else:
        raise fail(name, value, "glob patterns of layer names (a comma-separated string or a list of strings)")
    if not pats:
        raise fail(name, value, "at least one glob pattern of layer names")
    for p in pats:
        try:
            fnmatch.translate(p)
        except Exception:  # pragma: no cover - translate accepts any string today
            raise fail(name, p, "a glob pattern") from None
    return pats


def glob_match(name: str, pattern: str) -> bool:
    """Whether a layer name matches a pattern of :func:`globs`: the exact name, or the glob (case-sensitive).

    >>> glob_match("features.3", "features.*"), glob_match("fc[1]", "fc[1]"), glob_match("Conv1", "conv*")
    (True, True, False)
    """
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def dtype(value: object, name: str = "dtype") -> Any:
    """``"float32"``/``"float64"`` or the torch dtype → ``torch.float32``/``torch.float64``; None stays None.

    Half precisions and integers are refused here, so every verb gives the same line.

    >>> dtype("float64")
    torch.float64
    >>> dtype("float16")
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: dtype 'float16': expected float32 or float64
    """
    if value is None:
        return None
    import torch

    if isinstance(value, str) and value in DTYPES:
        return getattr(torch, value)
    if value in (torch.float32, torch.float64):
        return value
    raise fail(name, value if isinstance(value, str) else str(value).replace("torch.", ""),
               "float32 or float64")


def device(value: object, name: str = "device") -> Any:
    """``cpu``, ``cuda`` or ``cuda:N`` (str or ``torch.device``) → ``torch.device``; None stays None.

    Unknown names and CUDA on a machine without it are the same one-line error.

    >>> device("cpu")
    device(type='cpu')
    >>> device("gpu")
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: device 'gpu': expected cpu, cuda or cuda:N
    """
    if value is None:
        return None
    import torch

    expected = "cpu, cuda or cuda:N"
    if isinstance(value, torch.device):
        dev = value
    elif isinstance(value, str):
        text = value.strip().lower()
        kind, _, index = text.partition(":")
        if kind not in ("cpu", "cuda") or (index and (not index.isdigit() or kind == "cpu")):
            raise fail(name, value, expected)
        dev = torch.device(text)
    else:
        raise fail(name, value, expected)
    if dev.type not in ("cpu", "cuda"):
        raise fail(name, str(value), expected)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise fail(name, str(value), "cpu: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise fail(name, str(value), f"a CUDA device index below {torch.cuda.device_count()}")
    return dev


def flag(value: object, name: str) -> bool:
    """A bool (``True``/``False`` only).

    >>> flag(1, "fold_bn")
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: fold_bn 1: expected True or False
    """
    if not isinstance(value, bool):
        raise fail(name, value, "True or False")
    return value


def size(value: object, name: str) -> tuple[int, int] | None:
    """An image side: None, an int ≥ 1 or a pair of them → ``(h, w)``.

    >>> size(8, "size")
    (8, 8)
    """
    if value is None:
        return None
    if is_int(value):
        s = integer(value, name, minimum=1)
        return s, s
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) and int(v) >= 1 for v in value):
        return int(value[0]), int(value[1])
    raise fail(name, value, "a side ≥ 1 or a pair (h, w) of them")
