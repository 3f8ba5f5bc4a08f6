"""One self-contained HTML report of a model (and a dataset): every part of convsvd, with the numbers beside it.

>>> from convsvd import zoo
>>> from convsvd.report import report
>>> r = report(zoo.load("digits-cnn"), "digits:test", out="report.html", quick=True)  # doctest: +SKIP
>>> r.path, r.data_dir                                                                # doctest: +SKIP
(PosixPath('report.html'), PosixPath('report-data'))
"""

from convsvd.report.analysis import DEFAULTS, QUICK, Options
from convsvd.report.build import ReportResult, demo, report
from convsvd.report.content import Data, Figure, Heading, Note, Section, Table
from convsvd.report.sections import SECTION_TITLES

__all__ = ["DEFAULTS", "QUICK", "SECTION_TITLES", "Data", "Figure", "Heading", "Note", "Options", "ReportResult",
           "Section", "Table", "demo", "report"]
