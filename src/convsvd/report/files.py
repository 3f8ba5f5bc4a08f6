"""Where a report goes, and publishing it so that the page and its data always agree.

A report is an HTML file and, beside it, the numbers behind it. Both places are
decided and checked before any work (:func:`plan_paths`). A :class:`Publication`
then holds an OS lock (one report run per place), removes what killed runs left,
and gives a hidden staging folder for the data files. Publishing is three steps,
each one atomic:

1. the staging folder (with ``convsvd-files.json``, the XXH3-128 of every file) is
   renamed to a new *versioned* folder ``.<stem>-data.v-<id>/``;
2. the page, which links to that versioned folder, replaces the earlier page by a
   rename (written and fsynced under a temporary name first);
3. ``<stem>-data`` — a symbolic link, the stable name to read the numbers by — is
   pointed at the new folder, and the earlier versions are removed.

A page therefore never links to a folder that is not there: a kill before step 2
leaves the earlier page with its earlier folder, a kill after it the new page
with the new folder; a stale link or an orphaned folder is repaired by the next
run (:meth:`Publication.recover`). A failure at any point removes the staging
folder and leaves an earlier report, if there was one, as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd

from convsvd._atomic import _ENV_ERRNOS, FolderLock, environment_error, fsync_dir, kill_point, os_error, write_manifest
from convsvd._meta import _umask, write_atomic
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.report.content import Data, Table

__all__ = ["MARKER", "Publication", "ReportPaths", "plan_paths", "write_data", "write_marker"]

#: File in every data folder; its ``generator`` field marks a folder convsvd may replace.
MARKER: str = "report.json"
_GENERATOR = "convsvd report"


@dataclass(frozen=True)
class ReportPaths:
    """The HTML file and the data folder of one report."""

    html: Path
    data_dir: Path

    @property
    def prefix(self) -> str:
        """Start of the name of every hidden entry a report run makes beside the page."""
        return f".{self.data_dir.name}."

    def version_of_page(self) -> str | None:
        """The versioned data folder the current page links to (None: no page, or a page of older convsvd)."""
        try:
            text = self.html.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        m = re.search(re.escape(self.prefix) + r"v-[0-9a-f]{16}", text)
        return m.group(0) if m else None


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
    if folder.is_symlink():  # our link points at one of our versioned folders
        return re.fullmatch(rf"\.{re.escape(folder.name)}\.v-[0-9a-f]{{16}}", os.readlink(folder)) is not None
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
    if html.exists() and html.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"out {os.fspath(out)!r}: exists and is not an .html file; a report never replaces it "
                         "(choose a name ending in .html)")
    if (data_dir.exists() or data_dir.is_symlink()) and not _ours(data_dir):
        raise InputError(f"out {os.fspath(out)!r}: {data_dir} exists and was not written by convsvd report; "
                         f"choose another --out or move it away")
    _check_writable(html.parent, out)
    return ReportPaths(html, data_dir)


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


def _write_durable(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name, fsync, then rename onto ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


class Publication:
    """One report run's hold on its place: lock, recovery, staging folder, publishing (module docstring).

    >>> import tempfile
    >>> paths = plan_paths(Path(tempfile.mkdtemp()) / "r.html")
    >>> with Publication(paths) as pub:
    ...     _ = (pub.staging / "a.csv").write_text("1")
    ...     pub.publish(f'<a href="{pub.version.name}/a.csv">a</a>')
    >>> (paths.data_dir / "a.csv").read_text()
    '1'
    """

    def __init__(self, paths: ReportPaths) -> None:
        self.paths = paths
        self.version = paths.html.parent / f"{paths.prefix}v-{uuid.uuid4().hex[:16]}"
        self.staging = paths.html.parent / f"{paths.prefix}staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = FolderLock(paths.html.parent / f"{paths.prefix}lock", paths.html, remove=True)
        self.published = False
        self._made: list[Path] = []

    def recover(self) -> None:
        """Remove what killed runs left (staging, orphaned versions, temporary links) and repair the link."""
        p = self.paths
        keep = p.version_of_page()
        for entry in p.html.parent.glob(f"{glob_escape(p.prefix)}*"):
            if entry.name in (keep, self._lock.path.name):
                continue
            _remove(entry)
        for tmp in p.html.parent.glob(f"{glob_escape('.' + p.html.name)}.*.tmp"):
            _remove(tmp)  # a page written but not renamed
        if keep is not None and (p.html.parent / keep).is_dir():
            if p.data_dir.is_symlink() and os.readlink(p.data_dir) != keep:
                self._link(keep)
            elif not p.data_dir.exists() and not p.data_dir.is_symlink():
                self._link(keep)
        elif p.data_dir.is_symlink() and not p.data_dir.exists():
            p.data_dir.unlink()  # points at a version that is gone: no page links to it

    def _link(self, target: str) -> None:
        """Point ``<stem>-data`` at ``target`` by renaming a new link over it (atomic)."""
        p = self.paths
        tmp = p.html.parent / f"{p.prefix}link-{uuid.uuid4().hex[:8]}"
        try:
            os.symlink(target, tmp)
        except OSError:
            return  # no symbolic links here: the page links to the versioned folder, which suffices
        if p.data_dir.is_dir() and not p.data_dir.is_symlink():  # a data folder of older convsvd
            aside = p.html.parent / f"{p.prefix}legacy-{uuid.uuid4().hex[:8]}"
            os.replace(p.data_dir, aside)
        os.replace(tmp, p.data_dir)

    def __enter__(self) -> "Publication":
        self._made = []  # folders this run creates: removed again unless a report is published in them
        parent = self.paths.html.parent
        while not parent.exists() and parent != parent.parent:
            self._made.append(parent)
            parent = parent.parent
        try:
            self.paths.html.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:
            raise environment_error(exc, "the report", self.paths.html) from exc
        try:
            self.recover()
            self.staging.mkdir()
        except BaseException as exc:
            self._release()
            err = os_error(exc)
            if err is not None:
                raise environment_error(err, "the report", self.paths.html) from exc
            raise
        return self

    def publish(self, html_text: str) -> None:
        """Steps 1–3 of the module docstring; ``html_text`` links to ``self.version.name``."""
        p = self.paths
        os.chmod(self.staging, 0o777 & ~_umask())
        write_manifest(self.staging)
        kill_point("report-staged")
        os.replace(self.staging, self.version)
        fsync_dir(p.html.parent)
        kill_point("report-data")
        try:
            _write_durable(p.html, html_text)
        except BaseException:
            shutil.rmtree(self.version, ignore_errors=True)
            raise
        fsync_dir(p.html.parent)
        self.published = True
        kill_point("report-page")
        self._link(self.version.name)
        kill_point("report-link")
        for entry in p.html.parent.glob(f"{glob_escape(p.prefix)}*"):
            if entry.name not in (self.version.name, self._lock.path.name):
                _remove(entry)

    @property
    def data_dir(self) -> Path:
        """Where the numbers can be read: the link when there is one, else the versioned folder."""
        return self.paths.data_dir if self.paths.data_dir.is_symlink() else self.version

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.staging.exists():  # anything but a published report: nothing half-written stays behind
                shutil.rmtree(self.staging, ignore_errors=True)
            if exc is not None and not isinstance(exc, InputError):
                err = os_error(exc)
                if err is not None and err.errno in _ENV_ERRNOS:
                    raise environment_error(err, "the report", self.paths.html) from exc
        finally:
            self._release()

    def _release(self) -> None:
        self._lock.release()
        if not self.published:
            for folder in self._made:  # deepest first; only if still empty
                try:
                    folder.rmdir()
                except OSError:
                    break


def glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


