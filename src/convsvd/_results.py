"""What every public result shares: plain file writes into an existing folder, and notebook HTML.

A result's ``save(folder)`` writes its files with these helpers into a folder
that exists (the CLI's :class:`convsvd._atomic.OutputSet` staging folder, or
any folder a user picks); publishing a set of files atomically is the caller's
job. ``_repr_html_`` builds one small table of the key numbers.

>>> import pandas as pd
>>> "<td>0.5</td>" in html_table("t", pd.DataFrame({"a": [0.5]}))
True
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from convsvd._typing import PathLike
from convsvd.errors import InputError


def safe_name(name: str) -> str:
    """A layer name as a file-name part (``layer1.0`` stays, ``a/b`` → ``a_b``).

    >>> safe_name("features/0")
    'features_0'
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def folder(path: PathLike) -> Path:
    """``path`` as an existing folder (one-line :class:`InputError` otherwise)."""
    out = Path(path)
    if not out.is_dir():
        raise InputError(f"folder {str(path)!r}: expected an existing folder to save into")
    return out


def write_frame(out: Path, stem: str, frame: pd.DataFrame, formats: tuple[str, ...] = ("csv", "parquet")) -> list[Path]:
    """``stem.csv`` / ``stem.parquet`` of a table (no index)."""
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:  # pragma: no cover - callers pass the two formats above
            raise ValueError(fmt)
        paths.append(path)
    return paths


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def finite_or_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """NaN → None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}


def _cell(v: object, floatfmt: str) -> str:
    if isinstance(v, float):
        return "" if v != v else floatfmt.format(v)
    return "" if v is None else str(v)


def html_table(title: str, data: pd.DataFrame | Mapping[str, Any], max_rows: int = 20,
               floatfmt: str = "{:.4g}") -> str:
    """A small HTML table (a frame's first ``max_rows`` rows, or one row of key → value) with a caption."""
    esc = html.escape
    if isinstance(data, pd.DataFrame):
        head = "".join(f"<th>{esc(str(c))}</th>" for c in data.columns)
        rows = "".join("<tr>" + "".join(f"<td>{esc(_cell(v, floatfmt))}</td>" for v in row) + "</tr>"
                       for row in data.head(max_rows).itertuples(index=False))
        more = f"<tr><td colspan='{len(data.columns)}'>… {len(data) - max_rows} more rows</td></tr>" \
            if len(data) > max_rows else ""
        body = f"<thead><tr>{head}</tr></thead><tbody>{rows}{more}</tbody>"
    else:
        body = "<tbody>" + "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_cell(v, floatfmt))}</td></tr>"
                                   for k, v in data.items()) + "</tbody>"
    return f"<table><caption>{esc(title)}</caption>{body}</table>"


def json_text(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str)


class LayerResult:
    """Mixin of the one-layer results (feature visualisation, exemplars, singular filters).

    A subclass has ``layer``, ``to_frame()``, a file stem :attr:`_stem` and, when it holds
    tensors worth keeping, ``_tensors()``. ``save(folder)`` writes ``STEM-LAYER.csv``,
    ``STEM-LAYER.parquet`` and ``STEM-LAYER.safetensors`` into an existing folder.
    """

    _stem: str = "result"
    layer: str

    def to_frame(self) -> pd.DataFrame:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _tensors(self) -> dict[str, Any]:
        return {}

    def save(self, folder_: PathLike) -> list[Path]:
        """Write ``STEM-LAYER.csv``/``.parquet`` (:meth:`to_frame`) and the tensors (``.safetensors``)."""
        out = folder(folder_)
        stem = f"{self._stem}-{safe_name(self.layer)}"
        paths = write_frame(out, stem, self.to_frame())
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items() if v is not None}
        if tensors:
            from safetensors.torch import save_file

            save_file(tensors, str(out / f"{stem}.safetensors"))
            paths.append(out / f"{stem}.safetensors")
        return paths

    def _repr_html_(self) -> str:
        return html_table(f"{self._stem} of {self.layer}", self.to_frame())
