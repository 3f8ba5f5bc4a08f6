"""Environment faults are one line naming what failed and where, exit 2, with the earlier outputs intact."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from convsvd.errors import InputError

from .conftest import hidden, snapshot


class FakeSafetensorError(Exception):
    """What safetensors raises on a full disk (its message, not an OSError)."""


def _full_disk_save_file(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise FakeSafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def _assert_one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, lines
    for w in words:
        assert w in lines[0], lines[0]


def test_disk_full_in_svd(tmp_path: Path, cli_inproc, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "svd"
    assert cli_inproc(["svd", "digits-cnn", "--values-only", "--out", str(out)])[0] == 0
    before = snapshot(out)
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", _full_disk_save_file)
    code, _, err = cli_inproc(["svd", "digits-cnn", "--out", str(out)])
    assert code == 2
    _assert_one_line(err, "convsvd svd: error:", str(out), "the disk is full", "earlier outputs")
    assert snapshot(out) == before and hidden(tmp_path) == []


@pytest.mark.slow  # a whole command, under fault injection
def test_disk_full_in_spectrum(tmp_path: Path, cli_inproc, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "spec"
    args = ["spectrum", "digits-cnn", "--layers", "conv3", "--out", str(out)]
    assert cli_inproc(args)[0] == 0
    before = snapshot(out)

    def full(self, *a, **k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    code, _, err = cli_inproc([*args, "--seed", "3"])
    assert code == 2
    _assert_one_line(err, "convsvd spectrum: error:", "the disk is full")
    assert snapshot(out) == before and hidden(tmp_path) == []


@pytest.mark.slow  # a whole report, under fault injection
def test_disk_full_in_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convsvd import zoo
    from convsvd.io import from_module
    from convsvd.report import report

    cheap = dict(quick=True, neurons=1, steps=2, k=2, input_shape=(1, 8, 8), progress=False)
    model = from_module(zoo.load("digits-cnn"), source="digits-cnn")
    first = report(model, None, out=tmp_path / "r.html", **cheap)
    before = snapshot(tmp_path)

    def full(self, *a, **k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(InputError, match=r"r\.html: could not write the report \(the disk is full\)"):
        report(model, None, out=tmp_path / "r.html", **{**cheap, "neurons": 2})
    assert snapshot(tmp_path) == before and first.path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [__import__("os").readlink(first.data_dir)]


def test_read_only_target_is_one_line(tmp_path: Path, cli_inproc, monkeypatch: pytest.MonkeyPatch) -> None:
    import convsvd._atomic as A

    def read_only(folder):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(A, "_write_manifest", read_only)
    code, _, err = cli_inproc(["svd", "digits-cnn", "--values-only", "--out", str(tmp_path / "o")])
    assert code == 2
    _assert_one_line(err, "the file system is read-only", str(tmp_path / "o"))
    assert list(tmp_path.iterdir()) == [tmp_path / ".o.lock"] or list(tmp_path.iterdir()) == []


def _can_mount_tmpfs(where: Path) -> bool:
    if shutil.which("mount") is None:
        return False
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


def test_real_full_disk_when_a_small_tmpfs_can_be_mounted(tmp_path: Path, cli_inproc) -> None:
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out = disk / "svd"
        assert cli_inproc(["svd", "digits-cnn", "--values-only", "--out", str(out)])[0] == 0
        before = snapshot(out)
        import os

        st = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 16 * 1024))  # 16 KiB left
        code, _, err = cli_inproc(["svd", "digits-cnn", "--out", str(out)])  # U and Vh need far more
        assert code == 2
        _assert_one_line(err, "the disk is full", "earlier outputs were left as they were")
        assert snapshot(out) == before and hidden(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# Device names are validated where the device is resolved (convsvd._validate, device()/dtype(), on another
# branch, takes this over): every command and view must give one line.
_NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("args", [
    ["svd", "digits-cnn", "--device", "gpu"],
    ["spectrum", "digits-cnn", "--device", "gpu"],
    ["spectrum", "digits-cnn", "--view", "operator", "--device", "gpu"],
    ["spectrum", "digits-cnn", "--view", "slices", "--device", "gpu"],
    ["features", "digits-cnn", "--layer", "conv1", "--steps", "1", "--device", "gpu"],
])
def test_unknown_device_is_one_line(tmp_path: Path, cli_inproc, args: list[str]) -> None:
    code, _, err = cli_inproc([*args, "--out", str(tmp_path / "o")])
    assert code == 2
    _assert_one_line(err, "gpu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not _NO_CUDA, reason="checks a CPU-only torch")
@pytest.mark.parametrize("args", [
    ["svd", "digits-cnn", "--device", "cuda"],
    ["spectrum", "digits-cnn", "--view", "slices", "--device", "cuda"],
    ["spectrum", "digits-cnn", "--view", "operator", "--device", "cuda"],
])
def test_cuda_on_a_cpu_only_torch_is_one_line(tmp_path: Path, cli_inproc, args: list[str]) -> None:
    code, _, err = cli_inproc([*args, "--out", str(tmp_path / "o")])
    assert code == 2
    _assert_one_line(err, "cuda")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # whole commands, under fault injection
def test_disk_full_in_profile_graph_keeps_the_chunks_for_a_rerun(tmp_path: Path, cli_inproc,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import numpy as np

    import convsvd.profiles.profile as P
    from convsvd.profiles import InputProfiles

    out = tmp_path / "run"
    args = ["profile-graph", "digits-cnn", "digits:test", "--limit", "40", "--batch-size", "8", "--out", str(out)]
    real, calls = np.savez, []

    def full_on_second(f, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:  # the second chunk: part of it written, then the disk is full
            f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **kw)

    monkeypatch.setattr(P.np, "savez", full_on_second)
    code, _, err = cli_inproc(args)
    assert code == 2
    _assert_one_line(err, "convsvd profile-graph: error:", str(out), "chunk-000001.npz", "the disk is full",
                     "run again to resume")
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk-000000.npz"]  # no partial file
    man = json.loads((out / "manifest.json").read_text())
    assert list(man["chunks"]) == ["chunk-000000.npz"] and not man["complete"]
    first = (out / "chunks" / "chunk-000000.npz").read_bytes()
    monkeypatch.setattr(P.np, "savez", real)
    # the dataset profile and its tables: a full disk there leaves the finished chunks and no staging folder
    monkeypatch.setattr(P.Profile, "save", lambda self, path: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    code, _, err = cli_inproc(args)
    assert code == 2
    _assert_one_line(err, "convsvd profile-graph: error:", "the profile and its tables", "the disk is full")
    assert (out / "chunks" / "chunk-000000.npz").read_bytes() == first  # resumed, not recomputed
    assert json.loads((out / "manifest.json").read_text())["complete"] and hidden(out) == []
    monkeypatch.undo()
    assert cli_inproc(args)[0] == 0
    assert InputProfiles.open(out).profile().num_inputs == 40 and (out / "profile" / "profile.npz").is_file()
