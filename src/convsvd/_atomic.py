"""Output sets published whole, one run at a time per folder.

Every command that writes a folder of results (``--out DIR``) goes through
:class:`OutputSet`:

1. an OS file lock (``fcntl.flock``) on ``.DIR.lock`` beside the folder: a second
   run into the same folder fails at once with one line naming the holder's pid;
2. leftovers of killed runs (``.DIR.staging-*``, ``.DIR.old-*``) are removed, and a
   folder lost between the two renames of a fallback swap is restored first;
3. the results are written into a fresh staging folder beside ``DIR`` (same file
   system), with ``convsvd-files.json`` listing every file's size and XXH3-128;
4. the staging folder is swapped in by one atomic exchange (``renameat2`` with
   ``RENAME_EXCHANGE`` on Linux; elsewhere two renames whose gap the next run
   repairs), and the old folder is deleted.

After a kill at any point either the complete old set or the complete new set
is at ``DIR``, never a mix. Environment faults while writing (disk full,
read-only target, permission denied) become one-line :class:`InputError`\\ s, and
the earlier outputs stay intact.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with OutputSet(root / "out") as staging:
...     _ = (staging / "a.txt").write_text("hello")
>>> sorted(p.name for p in (root / "out").iterdir())
['a.txt', 'convsvd-files.json']
>>> verify_set(root / "out")
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Iterator

import xxhash

from convsvd._typing import PathLike
from convsvd.errors import InputError

__all__ = ["OutputSet", "FolderLock", "MANIFEST", "acquire_lock", "file_digest", "folder_lock", "release_lock",
           "verify_set", "environment_error", "os_error", "exchange", "write_manifest", "kill_point"]

MANIFEST = "convsvd-files.json"
KILL_ENV = "CONVSVD_TEST_KILL_AT"
"""Test-only: a step name (see :func:`kill_point`) at which the process kills itself with SIGKILL."""
_ENV_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def file_digest(path: PathLike) -> str:
    """XXH3-128 of a file's bytes, as hex."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def kill_point(step: str) -> None:
    """Fault-injection hook for the tests: SIGKILL this process when ``$CONVSVD_TEST_KILL_AT == step``.

    Steps: ``staged`` (set written, before it is swapped in), ``exchanged`` (swapped in, the
    old set not yet deleted), ``moved-aside`` (between the two renames of the fallback swap),
    and those of the report (:mod:`convsvd.report.files`). Reading one environment variable
    is all it costs outside the tests.
    """
    if os.environ.get(KILL_ENV) == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def os_error(exc: BaseException) -> OSError | None:
    """The OS error behind ``exc``: itself, its cause, or one a native writer reports only in its message.

    safetensors raises ``SafetensorError("... No space left on device (os error 28)")``
    rather than an ``OSError``; this finds the errno in such messages.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__
    import re

    m = re.search(r"\(os error (\d+)\)|\[errno (\d+)\]", str(exc))
    if m:
        code = int(m.group(1) or m.group(2))
        return OSError(code, os.strerror(code))
    return None


def environment_error(exc: OSError, what: str, where: PathLike,
                      kept: str = "earlier outputs were left as they were") -> InputError:
    """One line for an environment fault while writing ``what`` at ``where`` (``kept``: what is left)."""
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.EFBIG: "the file size limit was reached"
              }.get(exc.errno or 0, exc.strerror or str(exc))
    return InputError(f"{where}: could not write {what} ({reason}); {kept}")


def _libc_renameat2():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _libc_renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the platform cannot (the caller falls back)."""
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def fsync_dir(path: Path) -> None:
    """fsync a folder (its entries), ignoring file systems that cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(folder: Path) -> None:
    """Write ``convsvd-files.json`` (size and XXH3-128 of every file under ``folder``) and fsync it."""
    _write_manifest(folder)


def _write_manifest(folder: Path) -> None:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(folder).as_posix()] = {"bytes": p.stat().st_size, "xxh3_128": file_digest(p)}
    with open(folder / MANIFEST, "w") as f:
        json.dump({"files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def verify_set(folder: PathLike) -> None:
    """Check every file listed in ``folder``'s ``convsvd-files.json`` against its size and checksum.

    Raises
    ------
    InputError
        The list is missing or a file is missing, truncated or damaged (naming the file).
    """
    folder = Path(folder)
    try:
        listed = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{folder}: not a complete convsvd output folder ({MANIFEST} missing or unreadable)") from exc
    for name, info in listed.items():
        p = folder / name
        if not p.is_file():
            raise InputError(f"{p}: listed in {MANIFEST} but missing")
        if p.stat().st_size != info["bytes"] or file_digest(p) != info["xxh3_128"]:
            raise InputError(f"{p}: damaged (its checksum does not match {MANIFEST}); run the command again")


class FolderLock:
    """An OS lock (``fcntl.flock``) on a lock file that names the holder's pid; one run per output.

    ``with FolderLock(path, out):`` fails at once, with one line naming the holder,
    when another process holds it. The lock file stays (removing it would race).
    """

    def __init__(self, path: Path, out: PathLike, remove: bool = False) -> None:
        self.path, self.out, self.remove = Path(path), out, remove
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                finally:
                    os.close(fd)
                raise InputError(f"{self.out}: another convsvd run is writing there (pid {holder}); "
                                 "wait for it to finish or choose another output folder") from None
            try:  # a holder that removes the file on release may have done so since we opened it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            if self.remove:  # safe: acquire() checks that the file it locked is still the one at the path
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(out: Path) -> Path:
    """``.DIR.lock`` beside the folder ``DIR``."""
    return out.parent / f".{out.name}.lock"


def acquire_lock(out: PathLike) -> FolderLock:
    """Take the OS lock of folder ``out`` (:class:`FolderLock` on ``.DIR.lock``); release it with
    :func:`release_lock`.

    Raises
    ------
    InputError
        Another process holds it (naming its pid).
    """
    lock = FolderLock(lock_path(Path(out)), out)
    lock.acquire()
    return lock


def release_lock(lock: FolderLock) -> None:
    """Release a lock taken by :func:`acquire_lock`."""
    lock.release()


@contextmanager
def folder_lock(out: PathLike, what: str = "the outputs") -> Iterator[Path]:
    """Hold folder ``out``'s lock for the ``with`` block (for folders written in place, such as resumable runs).

    Raises
    ------
    InputError
        Another process holds it (naming its pid), or the lock file cannot be created (disk full, read-only).

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with folder_lock(root / "run") as out:
    ...     out.name
    'run'
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(out)
    except OSError as exc:
        raise environment_error(exc, what, out) from exc
    try:
        yield out
    finally:
        release_lock(lock)


class OutputSet:
    """Context manager that publishes a folder of outputs whole (see the module docstring).

    Parameters
    ----------
    out : path-like
        The folder the outputs belong in. It may exist (it is replaced whole on success)
        but must not be a file.
    what : str
        Words for messages ("SVD results", "the report data").

    ``with OutputSet(out) as staging:`` yields the staging folder to write into. On an
    exception the staging folder is removed, ``out`` is untouched and the lock released;
    an ``OSError`` from a full disk or a read-only target is re-raised as ``InputError``.
    """

    def __init__(self, out: PathLike, what: str = "the outputs") -> None:
        self.out = Path(out)
        self.what = what
        self.staging: Path | None = None
        self._lock_obj: FolderLock | None = None

    # -- paths ---------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return lock_path(self.out)

    def _leftovers(self, kind: str) -> list[Path]:
        return sorted(self.out.parent.glob(f".{self.out.name}.{kind}-*"))

    # -- steps ---------------------------------------------------------------------
    def _lock(self) -> None:
        self._lock_obj = FolderLock(self.lock_path, self.out)
        self._lock_obj.acquire()

    def _unlock(self) -> None:
        lock = getattr(self, "_lock_obj", None)
        if lock is not None:
            lock.release()
            self._lock_obj = None

    def recover(self) -> None:
        """Restore a folder lost between two renames, and remove what killed runs left behind."""
        old = self._leftovers("old")
        if not self.out.exists() and old:
            os.replace(old[-1], self.out)
            old = old[:-1]
        for p in old + self._leftovers("staging"):
            shutil.rmtree(p, ignore_errors=True)

    def __enter__(self) -> Path:
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"{self.out}: exists and is not a folder (expected an output folder)")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as exc:
            raise environment_error(exc, self.what, self.out) from exc
        try:
            self.recover()
            self.staging = self.out.parent / f".{self.out.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.staging.mkdir()
        except OSError as exc:
            self._unlock()
            raise environment_error(exc, self.what, self.out) from exc
        except BaseException:
            self._unlock()
            raise
        return self.staging

    def _publish(self) -> None:
        assert self.staging is not None
        _write_manifest(self.staging)
        fsync_dir(self.staging)
        kill_point("staged")
        if not self.out.exists():
            os.replace(self.staging, self.out)
        elif exchange(self.staging, self.out):
            kill_point("exchanged")
            shutil.rmtree(self.staging, ignore_errors=True)  # now holds the old set
        else:
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, old)
            kill_point("moved-aside")
            os.replace(self.staging, self.out)
            shutil.rmtree(old, ignore_errors=True)
        fsync_dir(self.out.parent)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is None:
                try:
                    self._publish()
                except OSError as err:
                    raise environment_error(err, self.what, self.out) from err
            elif not isinstance(exc, InputError):
                cause = os_error(exc)  # also safetensors' "(os error 28)", which is no OSError
                if cause is not None and cause.errno in _ENV_ERRNOS:
                    raise environment_error(cause, self.what, self.out) from exc
        finally:
            if self.staging is not None and self.staging.exists():
                shutil.rmtree(self.staging, ignore_errors=True)
            self._unlock()
