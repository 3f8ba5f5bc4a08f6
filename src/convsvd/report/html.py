"""Render report sections into one self-contained HTML page.

The page is ``template.html`` with ``style.css`` inlined and every figure embedded
as a base64 PNG, so it reads offline and can be mailed as one file. It needs no
script: the only one sets two attributes on ``<body>`` once the page has loaded
(how many images decoded, and how many did not), which the browser test reads.
Text from result objects (layer names, reasons, file names) is always escaped.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from html import escape
from importlib import resources
from string import Template
from typing import Mapping, Sequence

import numpy as np

from convsvd.report.content import (PICTURE_PX, Block, Figure, Heading, Html, NeuronRow, Note, Section, Table,
                                     mime_type)
from convsvd.viz._common import short_name

__all__ = ["NAME_COLUMNS", "NAME_WIDTH", "Page", "render", "format_value", "layer_name", "package_text"]

#: Table columns that hold layer names: shown shortened to :data:`NAME_WIDTH` characters, in full on hover.
NAME_COLUMNS: frozenset[str] = frozenset({"layer", "name", "deepest_layer", "first", "last"})
#: Longest layer name shown in full in tables and headings (ONNX names such as ``/layer4/layer4.0/conv1/Conv``
#: would take more room than the numbers).
NAME_WIDTH = 24


def layer_name(name: str, width: int = NAME_WIDTH) -> str:
    """A layer name as HTML: escaped, and when longer than ``width`` shortened (keeping its end) inside a
    ``<span>`` whose ``title`` is the full name.

    >>> layer_name("conv1")
    'conv1'
    >>> layer_name("/layer4/layer4.0/conv1/Conv", 16)
    '<span class="name" title="/layer4/layer4.0/conv1/Conv">…conv1/Conv</span>'
    """
    short = short_name(name, width)
    if short == name:
        return escape(name)
    return f'<span class="name" title="{escape(name)}">{escape(short)}</span>'


def _heading_text(h: Heading) -> str:
    return layer_name(h.text) if h.layer else escape(h.text)


def _data_uri(image: bytes) -> str:
    """An embedded image (PNG or JPEG) as a ``data:`` URI."""
    return f"data:{mime_type(image)};base64,{base64.b64encode(image).decode('ascii')}"


def package_text(name: str) -> str:
    """A text file shipped in ``convsvd/report/`` (template, style sheet, methods)."""
    return resources.files("convsvd.report").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Page:
    """What the page shows around the sections.

    Attributes
    ----------
    title, subtitle : str
    facts : sequence of (label, value)
        The summary cards under the title.
    banners : sequence of Note
        Notes shown above every section (e.g. that no data was given).
    data_dir : str
        Name of the folder beside the page that holds the numbers (for the links).
    files : mapping of data key to file names
        Which files each data key was written to.
    footer : str
    """

    title: str
    subtitle: str
    facts: Sequence[tuple[str, str]]
    banners: Sequence[Note]
    data_dir: str
    files: Mapping[str, Sequence[str]]
    footer: str


def format_value(v: object, digits: int = 4) -> tuple[str, str | None]:
    """Display text of a cell and its exact value for ``data-value`` (None for text)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–", None
    if isinstance(v, (bool, np.bool_)):
        return ("yes" if v else "no"), None
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}".replace(",", "\u202f"), str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isinf(f):
            return ("∞" if f > 0 else "−∞"), repr(f)
        text = f"{f:.{digits}g}"
        if "e" in text:
            mant, exp = text.split("e")
            text = f"{mant}×10<sup>{int(exp)}</sup>"
            return text, repr(f)
        return escape(text.replace("-", "−")), repr(f)
    if isinstance(v, (list, tuple, np.ndarray)):
        return escape("×".join(map(str, v))), None
    return escape(str(v)), None


def _links(keys: Sequence[str], page: Page) -> str:
    names = [name for k in keys for name in page.files.get(k, ())]
    if not names:
        return ""
    links = " · ".join(f'<a href="{escape(page.data_dir)}/{escape(n)}">{escape(n)}</a>' for n in names)
    return f'<span class="data-links">numbers: {links}</span>'


def _figure_img(fig: Figure, alt: str) -> str:
    """The ``<img>`` of a figure; title and alt name the layers it shows in full (the image may shorten them)."""
    names = ", ".join(fig.names)
    title = "click to enlarge" + (f" · layers: {names}" if names else "")
    alt = alt + (f" (layers: {names})" if names else "")
    return (f'<img src="{_data_uri(fig.image)}" width="{fig.width}" alt="{escape(alt)}" '
            f'loading="eager" data-min-font-pt="{fig.min_font_pt:.2f}" title="{escape(title)}">')


def _figure(fig: Figure, page: Page) -> str:
    links = _links(fig.data, page)
    return (f'<figure id="fig-{escape(fig.key)}" class="figure">{_figure_img(fig, fig.caption)}'
            f'<figcaption>{escape(fig.caption)}{" " + links if links else ""}</figcaption></figure>')


def _neuron_row(row: NeuronRow, page: Page) -> str:
    """One SVD neuron: its feature visualisations at :data:`PICTURE_PX` CSS pixels, its exemplars beside them."""
    pictures = "".join(
        f'<div class="feature"><img src="{_data_uri(p.png)}" width="{PICTURE_PX}" '
        f'alt="{escape(p.alt)}" title="{escape(p.alt)} (click to enlarge)" loading="eager" data-feature-image>'
        f'<div class="feature-label">{escape(p.label)}</div></div>' for p in row.pictures)
    ex = ""
    if row.exemplars is not None:
        ex = f'<div class="exemplars">{_figure_img(row.exemplars, f"{row.layer} {row.label}: exemplars")}</div>'
    links = _links(row.data, page)
    caption = (f'<figcaption>{escape(row.caption)}{" " + links if links else ""}</figcaption>'
               if row.caption or links else "")
    return (f'<figure id="fig-{escape(row.key)}" class="figure neuron-row">'
            f'<div class="neuron-label">{layer_name(row.layer)} · {escape(row.label)}</div>'
            f'<div class="neuron-images">{pictures}{ex}</div>{caption}</figure>')


def _table(t: Table, page: Page) -> str:
    frame = t.frame.reset_index(drop=True)
    numeric = {c: frame[c].dtype.kind in "iuf" for c in frame.columns}
    head = "".join(f'<th scope="col" class="{"num" if numeric[c] else "text"}" data-column="{escape(str(c))}">'
                   f'{escape(t.labels.get(str(c), str(c)))}</th>' for c in frame.columns)
    rows = []
    for rec in frame.itertuples(index=False, name=None):
        cells = []
        for c, v in zip(frame.columns, rec):
            text, exact = format_value(v, t.digits)
            attr = f' data-value="{exact}"' if exact is not None else ""
            cls = "num" if numeric[c] or exact is not None else "text"
            if str(c) in NAME_COLUMNS and isinstance(v, str):
                text = layer_name(v)
            cells.append(f'<td class="{cls}"{attr}>{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    long = " long" if len(frame) > 20 else ""
    caption = f"<caption>{escape(t.caption)} {_links([t.key], page)}</caption>" if t.caption else ""
    return (f'<div class="table-wrap{long}"><table id="table-{escape(t.key)}" class="data">{caption}'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _note(n: Note) -> str:
    label = {"warning": "Note", "missing": "Not in this report"}.get(n.kind, "")
    prefix = f"<strong>{label}:</strong> " if label else ""
    return f'<p class="note note-{escape(n.kind)}">{prefix}{escape(n.text)}</p>'


def _block(b: Block, page: Page) -> str:
    if isinstance(b, Figure):
        return _figure(b, page)
    if isinstance(b, Table):
        return _table(b, page)
    if isinstance(b, Note):
        return _note(b)
    if isinstance(b, Heading):
        return f'<h3 id="{escape(b.key)}">{_heading_text(b)}</h3>'
    if isinstance(b, NeuronRow):
        return _neuron_row(b, page)
    if isinstance(b, Html):
        return b.markup
    raise TypeError(f"report block of unknown type {type(b).__name__}")  # a programming error, not a user's


def _section(s: Section, page: Page) -> str:
    badge = {"missing": '<span class="badge badge-missing">not available</span>',
             "partial": '<span class="badge badge-partial">partial</span>'}.get(s.status, "")
    intro = f'<p class="intro">{escape(s.intro)}</p>' if s.intro else ""
    body = "\n".join(_block(b, page) for b in s.blocks)
    shown = {k for b in s.blocks if isinstance(b, (Figure, NeuronRow)) for k in b.data}
    data = _links([d.key for d in s.data if d.key not in shown], page)
    more = f'<p class="section-data">{data}</p>' if data else ""
    return (f'<section id="{escape(s.id)}" class="status-{escape(s.status)}">'
            f'<h2>{escape(s.title)} {badge}</h2>{intro}\n{body}\n{more}</section>')


def _toc(sections: Sequence[Section]) -> str:
    items = []
    for s in sections:
        subs = [b for b in s.blocks if isinstance(b, Heading)]
        sub = ("<ol>" + "".join(f'<li><a href="#{escape(h.key)}">{_heading_text(h)}</a></li>' for h in subs) + "</ol>"
               if subs else "")
        mark = ' <span class="toc-missing">(not available)</span>' if s.status == "missing" else ""
        items.append(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a>{mark}{sub}</li>')
    return "<ol>" + "".join(items) + "</ol>"


def _facts(facts: Sequence[tuple[str, str]]) -> str:
    cards = "".join(f'<div class="fact"><div class="fact-label">{escape(k)}</div>'
                    f'<div class="fact-value">{escape(v)}</div></div>' for k, v in facts)
    return f'<div class="facts">{cards}</div>'


def render(sections: Sequence[Section], page: Page) -> str:
    """The whole HTML page as text."""
    banners = "".join(_note(n) for n in page.banners)
    return Template(package_text("template.html")).substitute(
        title=escape(page.title),
        subtitle=escape(page.subtitle),
        style=package_text("style.css"),
        toc=_toc(sections),
        facts=_facts(page.facts),
        banners=banners,
        sections="\n".join(_section(s, page) for s in sections),
        footer=escape(page.footer),
    )

