"""Where a report goes, and writing it so that nothing half-written is ever left.

A report is an HTML file and, beside it, a data folder ``<stem>-data/``. Both are
decided and checked before any work (:func:`plan_paths`), the data files are
written into a hidden staging folder next to it, and only when everything is
computed and written does :func:`publish` swap the folder in and write the page
(atomically). A failure at any point removes the staging folder and leaves an
earlier report, if there was one, as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from convsvd._meta import _umask, write_atomic
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.report.content import Data, Table

__all__ = ["MARKER", "ReportPaths", "plan_paths", "publish", "staging_folder", "write_data", "write_marker"]

#: File in every data folder; its ``generator`` field marks a folder convsvd may replace.
MARKER: str = "report.json"
_GENERATOR = "convsvd report"


@dataclass(frozen=True)
class ReportPaths:
    """The HTML file and the data folder of one report."""

    html: Path
    data_dir: Path


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable(folder: Path, out: PathLike) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable folder (probed with a real file)."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise InputError(f"out {os.fspath(out)!r}: cannot be written ({base} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".convsvd-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"out {os.fspath(out)!r}: cannot be written ({base}: {e.strerror or e})") from None


def _ours(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("generator") == _GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def plan_paths(out: PathLike) -> ReportPaths:
    """The report's paths for ``out``, checked before any work.

    ``out`` is the HTML file, or a folder (one that exists, or a path without a
    suffix) that gets ``report.html``. The data folder is ``<stem>-data`` beside
    the HTML file.

    Raises
    ------
    InputError
        When the place cannot be written, or the data folder exists and was not
        written by convsvd (it is never deleted then).
    """
    path = Path(out).expanduser()
    html = path / "report.html" if path.is_dir() or path.suffix == "" else path
    data_dir = html.with_name(f"{html.stem}-data")
    if html.is_dir():
        raise InputError(f"out {os.fspath(out)!r}: {html} is a folder; expected an .html file or a folder for report.html")
    if data_dir.exists() and not (data_dir.is_dir() and _ours(data_dir)):
        raise InputError(f"out {os.fspath(out)!r}: {data_dir} exists and was not written by convsvd report; "
                         f"choose another --out or move it away")
    _check_writable(html.parent, out)
    return ReportPaths(html, data_dir)


def staging_folder(paths: ReportPaths) -> Path:
    """A new hidden folder for the data files, on the file system of the report (so publishing is a rename)."""
    base = _nearest_existing(paths.html.parent)
    return Path(tempfile.mkdtemp(prefix=f".{paths.data_dir.name}.", suffix=".tmp", dir=base))


def _flat(frame: pd.DataFrame) -> bool:
    """True when every column holds scalars, so the frame can also be a CSV file."""
    for c in frame.columns:
        if frame[c].dtype == object and len(frame) and isinstance(frame[c].iloc[0], (list, tuple, np.ndarray)):
            return False
    return True


def _write_entry(folder: Path, key: str, value: object) -> list[str]:
    """One frame as Parquet (and CSV when flat), or one dict or list as JSON; the file names written."""
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        write_atomic(folder / f"{key}.parquet", lambda p: frame.to_parquet(p, index=False))
        if not _flat(frame):
            return [f"{key}.parquet"]
        write_atomic(folder / f"{key}.csv", lambda p: frame.to_csv(p, index=False))
        return [f"{key}.parquet", f"{key}.csv"]
    text = json.dumps(value, indent=2, default=str)
    write_atomic(folder / f"{key}.json", lambda p: Path(p).write_text(text))
    return [f"{key}.json"]


def write_data(entries: list[Data | Table], folder: Path) -> dict[str, list[str]]:
    """Write every frame as Parquet (and CSV when flat), every dict or list as JSON.

    Returns
    -------
    dict
        Data key → the file names written for it.
    """
    written: dict[str, list[str]] = {}
    for e in entries:
        if e.key in written or e.key == Path(MARKER).stem:
            raise ValueError(f"report data key {e.key!r} used twice")  # a programming error, not a user's
        written[e.key] = _write_entry(folder, e.key, e.frame if isinstance(e, Table) else e.value)
    return written


def write_marker(folder: Path, metadata: str) -> None:
    """``report.json``: the run metadata, tagged so a later report may replace this folder."""
    meta = json.loads(metadata)
    meta["generator"] = _GENERATOR
    text = json.dumps(meta, indent=2, default=str)
    write_atomic(folder / MARKER, lambda p: Path(p).write_text(text))


def publish(staging: Path, paths: ReportPaths, html_text: str) -> None:
    """Move the staged data folder into place and write the page; on failure the earlier report stays."""
    paths.html.parent.mkdir(parents=True, exist_ok=True)
    old: Path | None = None
    if paths.data_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{paths.data_dir.name}.old.", dir=paths.data_dir.parent))
        os.replace(paths.data_dir, old / "d")
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp made it 0700; give it the usual permissions
        os.replace(staging, paths.data_dir)
        try:
            write_atomic(paths.html, lambda p: Path(p).write_text(html_text, encoding="utf-8"))
        except BaseException:
            shutil.rmtree(paths.data_dir, ignore_errors=True)
            raise
    except BaseException:
        if old is not None:
            os.replace(old / "d", paths.data_dir)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
