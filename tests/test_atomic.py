"""Output sets are published whole: lock, staging, exchange, recovery, environment faults."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convsvd._atomic import MANIFEST, OutputSet, verify_set
from convsvd.errors import InputError


def _write(out: Path, text: str) -> None:
    with OutputSet(out) as staging:
        (staging / "a.txt").write_text(text)
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text(text * 2)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def test_publish_new_and_replace_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    assert (out / "a.txt").read_text() == "old"
    verify_set(out)
    _write(out, "new")
    assert (out / "a.txt").read_text() == "new" and (out / "sub" / "b.txt").read_text() == "newnew"
    verify_set(out)
    assert _leftovers(tmp_path) == []


def test_failure_leaves_old_set_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError):
        with OutputSet(out) as staging:
            (staging / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _leftovers(tmp_path) == []


def test_disk_full_is_one_line_and_old_set_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    with pytest.raises(InputError, match="disk is full"):
        with OutputSet(out, "SVD results"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (out / "a.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_second_run_into_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputSet(out):
        with pytest.raises(InputError, match=rf"another convsvd run .*pid {os.getpid()}"):
            with OutputSet(out):
                pass
    _write(out, "after")  # the lock is released
    assert (out / "a.txt").read_text() == "after"


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("user data")
    with pytest.raises(InputError, match="not a folder"):
        with OutputSet(f):
            pass
    assert f.read_text() == "user data"


def test_recovery_restores_a_folder_lost_between_renames(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    os.replace(out, tmp_path / ".out.old-1-abc")          # as if killed between the two renames
    (tmp_path / ".out.staging-1-abc").mkdir()
    with pytest.raises(RuntimeError):
        with OutputSet(out):
            assert (out / "a.txt").read_text() == "old"      # restored before any work
            raise RuntimeError("stop")
    assert (out / "a.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_damaged_file_is_detected(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    (out / "sub" / "b.txt").write_text("oldolX")
    with pytest.raises(InputError, match="b.txt: damaged"):
        verify_set(out)
    (out / MANIFEST).unlink()
    with pytest.raises(InputError, match="not a complete"):
        verify_set(out)


@pytest.mark.parametrize("point", ["writing", "before-publish"])
def test_kill_9_leaves_old_set_then_next_run_cleans(tmp_path: Path, point: str) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    src = Path(__file__).resolve().parents[1] / "src"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(src)!r})
        import convsvd._atomic as A
        from pathlib import Path
        if {point!r} == "before-publish":
            real = A._write_manifest
            def killed(folder):
                real(folder)
                os.kill(os.getpid(), signal.SIGKILL)
            A._write_manifest = killed
        with A.OutputSet(Path({str(out)!r})) as staging:
            (staging / "a.txt").write_text("new")
            if {point!r} == "writing":
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    assert (out / "a.txt").read_text() == "old"
    verify_set(out)
    assert _leftovers(tmp_path) != []              # the killed run's staging folder
    _write(out, "next")
    assert (out / "a.txt").read_text() == "next"
    assert _leftovers(tmp_path) == []
