"""What a report holds, independent of how it is rendered: sections of figures, tables and notes.

A :class:`Section` is built from result objects (by :mod:`convsvd.report.sections`)
and rendered to HTML by :mod:`convsvd.report.html`. Every figure names the data
files that hold its numbers; every table is itself written as data; so the
folder beside the report holds the numbers behind everything it shows.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence, Union

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from matplotlib.figure import Figure as MplFigure

__all__ = ["Block", "Data", "Figure", "Heading", "Html", "NeuronRow", "Note", "Picture", "Section", "Table", "file_key",
           "figure_png", "image_png"]

#: Shown width of a feature visualisation in CSS pixels (at least 128 at a 1280-pixel window; the page never
#: shrinks it: a neuron's row wraps instead).
PICTURE_PX: int = 144
#: Resolution of the embedded PNGs; they are shown at 96 CSS pixels per inch, so they stay sharp on HiDPI screens.
FIGURE_DPI: int = 144
_CSS_PX_PER_INCH = 96
#: A rendered figure larger than this (bytes of PNG) is embedded as a JPEG instead when that is at most half
#: the size: montages of photos (dataset exemplars at ImageNet size) compress badly losslessly.
JPEG_FROM: int = 64 * 1024
#: JPEG quality of such figures; without chroma subsampling, so that their text stays sharp.
JPEG_QUALITY: int = 90
_PAD_INCHES = 0.08


def file_key(text: str) -> str:
    """A name safe in file names and HTML ids: ``"layer4.0/conv"`` → ``"layer4.0-conv"``."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return key or "x"


def _render(fig: "MplFigure") -> tuple[bytes, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight", pad_inches=_PAD_INCHES,
                facecolor="white", metadata={"Software": None})
    png = buf.getvalue()
    return png, round(int.from_bytes(png[16:20], "big") * _CSS_PX_PER_INCH / FIGURE_DPI)  # IHDR width


def _tight_width(fig: "MplFigure") -> int:
    """The CSS width :func:`_render` will give ``fig``, from its layout alone (text measured, nothing drawn)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas of savefig has it
    engine = fig.get_layout_engine()
    if engine is not None:  # the layout a draw would make, without drawing (images are not resampled)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the same warnings come again from the render
            engine.execute(fig)
    bbox = fig.get_tightbbox(renderer)
    return round((bbox.width + 2 * _PAD_INCHES) * _CSS_PX_PER_INCH)


def figure_png(fig: "MplFigure") -> tuple[bytes, int, float]:
    """PNG bytes of a matplotlib figure, its display width in CSS pixels and its smallest font (points).

    The figure is made legible first (:func:`convsvd.viz._common.legible`) and, when wider than
    the report's column (:data:`~convsvd.viz._common.MAX_WIDTH_IN`), redrawn narrower with the
    same font sizes, so that the page never shrinks its text. The figure is closed.
    """
    import matplotlib.pyplot as plt

    from convsvd.viz._common import MAX_WIDTH_IN, legible

    try:
        smallest = legible(fig)
        limit = MAX_WIDTH_IN * _CSS_PX_PER_INCH
        png, width = _render(fig)
        if width > limit:  # the tight box includes outside legends: shrink until it fits, then draw again
            for _ in range(3):
                w, h = fig.get_size_inches()
                scale = limit / width
                fig.set_size_inches(max(w * scale, 2.0), max(h * max(scale, 0.8), 1.5))
                width = _tight_width(fig)  # from the layout alone: nothing is drawn
                if width <= limit:
                    break
            png, width = _render(fig)
    finally:
        plt.close(fig)
    return png, width, smallest


def compact(png: bytes) -> bytes:
    """``png``, or the same image as a JPEG when ``png`` is larger than :data:`JPEG_FROM` bytes and the
    JPEG (quality :data:`JPEG_QUALITY`) at most half its size."""
    if len(png) <= JPEG_FROM:
        return png
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")  # the figures are drawn on white
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
    jpeg = buf.getvalue()
    return jpeg if 2 * len(jpeg) <= len(png) else png


def mime_type(image: bytes) -> str:
    """``image/png`` or ``image/jpeg``, from the bytes' signature."""
    return "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"


def image_png(rgb: "np.ndarray", least: int = 2 * PICTURE_PX) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` image in ``[0, 1]``, enlarged by an integer factor (nearest neighbour) until
    its longer side is at least ``least`` pixels, so that small images (8×8 digits) stay sharp when shown large."""
    import numpy as np
    from PIL import Image

    a = np.clip(np.asarray(rgb, dtype=np.float64), 0, 1)
    f = max(1, -(-least // max(a.shape[0], a.shape[1])))
    a = np.repeat(np.repeat(a, f, axis=0), f, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.round(a * 255).astype(np.uint8), "RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@dataclass(frozen=True, eq=False)
class Figure:
    """One embedded image.

    Attributes
    ----------
    key : str
        Unique within the report; the ``id`` of its ``<figure>``.
    image : bytes
        PNG, or JPEG for a large photographic figure (:func:`compact`).
    width : int
        Display width in CSS pixels (shrunk to the page width when larger).
    caption : str
        Plain text.
    data : tuple of str
        Keys of the :class:`Data` entries that hold the numbers behind it.
    min_font_pt : float
        Smallest text in the image, in points (at 96 CSS pixels per inch, ×4/3 for pixels).
    names : tuple of str
        Full names of the layers the image shows (it may shorten them); in the ``<img>``'s title and alt text.
    """

    key: str
    image: bytes = field(repr=False)
    width: int
    caption: str
    data: tuple[str, ...] = ()
    min_font_pt: float = 0.0
    names: tuple[str, ...] = ()

    @classmethod
    def from_matplotlib(cls, key: str, fig: "MplFigure", caption: str, data: tuple[str, ...] = (),
                        names: "Sequence[str]" = ()) -> "Figure":
        """Render ``fig`` (and close it)."""
        png, width, smallest = figure_png(fig)
        return cls(key, compact(png), width, caption, tuple(data), smallest, tuple(names))


@dataclass(frozen=True, eq=False)
class Picture:
    """One image shown at :data:`PICTURE_PX` CSS pixels (a feature visualisation) under a short label."""

    png: bytes = field(repr=False)
    label: str
    alt: str


@dataclass(frozen=True, eq=False)
class NeuronRow:
    """One SVD neuron: its feature visualisations at :data:`PICTURE_PX` pixels, its exemplars beside them.

    Attributes
    ----------
    key : str
        Unique within the report; the ``id`` of its ``<figure>``.
    layer : str
        The layer's full name (shown shortened, in full on hover).
    label : str
        The neuron (``"n3 · σ = 1.2 · influential for 40 %"``).
    pictures : tuple of Picture
    exemplars : Figure or None
    caption : str
    data : tuple of str
        Keys of the :class:`Data` entries that hold the numbers behind it.
    """

    key: str
    layer: str
    label: str
    pictures: tuple[Picture, ...]
    exemplars: "Figure | None"
    caption: str
    data: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Table:
    """A table shown in the report and written as data under ``key``.

    Attributes
    ----------
    key : str
        Data file stem and the ``id`` of the ``<table>``.
    frame : pandas.DataFrame
        Shown as it is (index dropped); floats to ``digits`` significant digits, the exact
        value kept in each cell's ``data-value`` attribute.
    caption : str
    labels : dict of str to str
        Display names of columns (default: the column names).
    digits : int
    """

    key: str
    frame: pd.DataFrame = field(repr=False)
    caption: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    digits: int = 4


@dataclass(frozen=True)
class Note:
    """A paragraph of plain text; ``kind`` ``"info"``, ``"warning"`` or ``"missing"`` (a part that is not there, and why)."""

    text: str
    kind: str = "info"


@dataclass(frozen=True)
class Heading:
    """A sub-heading (``<h3>``) inside a section, listed under the section in the table of contents;
    ``layer``: the text is a layer name (shown shortened when long, in full on hover)."""

    text: str
    key: str
    layer: bool = False


@dataclass(frozen=True)
class Html:
    """Trusted HTML shipped with convsvd (the methods text); never built from user input."""

    markup: str


Block = Union[Figure, Table, Note, Heading, Html, NeuronRow]


@dataclass(frozen=True, eq=False)
class Data:
    """Numbers written beside the report but not shown as a table: a frame (Parquet, and CSV when flat) or JSON."""

    key: str
    value: "pd.DataFrame | dict[str, object] | list[object]" = field(repr=False)
    description: str = ""


@dataclass(frozen=True, eq=False)
class Section:
    """One ``<section>`` of the report.

    Attributes
    ----------
    id : str
        The HTML id (``"model"``, ``"spectra"``, ...).
    title : str
    blocks : tuple of Block
        In display order.
    data : tuple of Data
        Extra numbers behind the figures (tables are written anyway).
    status : str
        ``"done"``, ``"partial"`` (some parts missing, each said in a note) or ``"missing"``.
    intro : str
        One plain-text paragraph under the heading.
    """

    id: str
    title: str
    blocks: tuple[Block, ...] = ()
    data: tuple[Data, ...] = ()
    status: str = "done"
    intro: str = ""

    @property
    def figures(self) -> list[Figure]:
        """Every figure: the figure blocks and the exemplars of the neuron rows."""
        return [f for b in self.blocks for f in ((b,) if isinstance(b, Figure) else
                                                  (b.exemplars,) if isinstance(b, NeuronRow) and b.exemplars else ())]

    @property
    def pictures(self) -> list[Picture]:
        """The feature visualisations of the neuron rows."""
        return [p for b in self.blocks if isinstance(b, NeuronRow) for p in b.pictures]

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    @property
    def notes(self) -> list[Note]:
        return [b for b in self.blocks if isinstance(b, Note)]
