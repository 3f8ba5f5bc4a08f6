"""Read a convsvd report back with the standard library's HTML parser (for the report tests)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class ParsedTable:
    columns: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, str | None]]] = field(default_factory=list)  # (text, data-value)

    def column(self, name: str) -> list[tuple[str, str | None]]:
        j = self.columns.index(name)
        return [row[j] for row in self.rows]

    def values(self, name: str) -> list[float]:
        """The exact numbers of a column (its cells' ``data-value``)."""
        return [float(v) for _, v in self.column(name)]  # type: ignore[arg-type]

    def texts(self, name: str) -> list[str]:
        return [t for t, _ in self.column(name)]


@dataclass
class ParsedSection:
    id: str
    classes: str
    title: str = ""
    images: list[str] = field(default_factory=list)  # src attributes
    tables: list[str] = field(default_factory=list)  # table ids
    text: list[str] = field(default_factory=list)


@dataclass
class ParsedReport:
    sections: dict[str, ParsedSection] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    tables: dict[str, ParsedTable] = field(default_factory=dict)
    toc: list[str] = field(default_factory=list)  # href targets
    links: list[str] = field(default_factory=list)  # every href
    sources: list[str] = field(default_factory=list)  # every src (img, script)
    banner: list[str] = field(default_factory=list)

    def section_text(self, sid: str) -> str:
        return " ".join("".join(self.sections[sid].text).split())


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = ParsedReport()
        self.section: ParsedSection | None = None
        self.table: ParsedTable | None = None
        self.cell: list[str] | None = None
        self.cell_value: str | None = None
        self.in_h2 = self.in_toc = self.in_header = False
        self.header_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "href" in a:
            self.out.links.append(a["href"] or "")
            if self.in_toc:
                self.out.toc.append((a["href"] or "").lstrip("#"))
        if "src" in a:
            self.out.sources.append(a["src"] or "")
        if tag == "nav" and a.get("id") == "toc":
            self.in_toc = True
        elif tag == "header" and a.get("id") == "top":
            self.in_header = True
        elif tag == "section":
            self.section = ParsedSection(a.get("id") or "", a.get("class") or "")
            self.out.sections[self.section.id] = self.section
            self.out.order.append(self.section.id)
        elif tag == "h2" and self.section is not None:
            self.in_h2 = True
        elif tag == "img" and self.section is not None:
            self.section.images.append(a.get("src") or "")
        elif tag == "table":
            self.table = ParsedTable()
            tid = (a.get("id") or "").removeprefix("table-")
            self.out.tables[tid] = self.table
            if self.section is not None:
                self.section.tables.append(tid)
        elif tag == "th" and self.table is not None:
            self.table.columns.append(a.get("data-column") or "")
        elif tag == "tr" and self.table is not None:
            self.row: list[tuple[str, str | None]] = []
        elif tag == "td" and self.table is not None:
            self.cell, self.cell_value = [], a.get("data-value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self.in_toc = False
        elif tag == "header":
            self.in_header = False
        elif tag == "section":
            self.section = None
        elif tag == "h2":
            self.in_h2 = False
        elif tag == "table":
            self.table = None
        elif tag == "td" and self.cell is not None:
            self.row.append(("".join(self.cell).strip(), self.cell_value))
            self.cell = None
        elif tag == "tr" and self.table is not None and self.row:
            self.table.rows.append(self.row)

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        if self.section is not None:
            self.section.text.append(data)
            if self.in_h2:
                self.section.title += data
        if self.in_header:
            self.out.banner.append(data)


def parse_report(path: Path) -> ParsedReport:
    p = _Parser()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p.out


def decode_png(src: str) -> np.ndarray:
    """An embedded ``data:image/png;base64,…`` image as an RGB array (raises when it is not a valid PNG)."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    im = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)))
    im.verify()  # a truncated or corrupt PNG raises here
    im = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):])))
    return np.asarray(im.convert("RGB"))
