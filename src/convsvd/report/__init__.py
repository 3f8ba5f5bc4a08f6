"""One self-contained HTML report of a model (and a dataset): every part of convsvd, with the numbers beside it.

>>> from convsvd import zoo
>>> from convsvd.report import report
>>> r = report(zoo.load("digits-cnn"), "digits:test", out="report.html", quick=True)  # doctest: +SKIP
>>> r.path, r.data_dir                                                                # doctest: +SKIP
(PosixPath('report.html'), PosixPath('report-data'))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convsvd.report.defaults import DEFAULTS, QUICK

if TYPE_CHECKING:
    from convsvd.report.analysis import Options
    from convsvd.report.build import ReportResult, demo, report
    from convsvd.report.content import Data, Figure, Heading, Note, Section, Table
    from convsvd.report.sections import SECTION_TITLES

__all__ = ["DEFAULTS", "QUICK", "SECTION_TITLES", "Data", "Figure", "Heading", "Note", "Options", "ReportResult",
           "Section", "Table", "demo", "report"]

#: Where each name lives; imported on first use, so that ``convsvd.report.defaults`` (read by the command
#: line's help) does not load torch and matplotlib.
_LAZY = {"Options": "analysis", "ReportResult": "build", "demo": "build", "report": "build", "Data": "content",
         "Figure": "content", "Heading": "content", "Note": "content", "Section": "content", "Table": "content",
         "SECTION_TITLES": "sections"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"convsvd.report.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convsvd.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
