"""Faults in a profile run's shards: damaged, copied, missing, locked folder, full disk, non-finite inputs.

Every test checks what is left on disk, and that a refusal is one line naming the file.
"""

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from convsvd import zoo
from convsvd.cli import main
from convsvd.data import ArrayData
from convsvd.errors import InputError
from convsvd.signals import SignalTable, profile, store

N, BATCH = 40, 8  # 5 shards of one batch each
KEY = ["id", "layer", "group", "neuron"]


def inputs(nonfinite: dict[int, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.rand(N, 1, 8, 8, generator=g) * 16
    for i, v in (nonfinite or {}).items():
        x[i, 0, 3, 3] = v
    return x, torch.arange(N) % 10


def run(out: Path, x: torch.Tensor | None = None, **kwargs) -> SignalTable:
    x_, y = inputs()
    return profile(zoo.load("digits-cnn"), ArrayData(x if x is not None else x_, y, name="faults"), batch_size=BATCH,
                   shard_size=BATCH, out=out, **kwargs)


def frame(table: SignalTable) -> pd.DataFrame:
    return table.to_frame().sort_values(KEY).reset_index(drop=True)


def npz(path: Path, x: torch.Tensor, y: torch.Tensor) -> str:
    np.savez(path, inputs=x.numpy(), labels=y.numpy())
    return str(path)


def shard(out: Path, i: int) -> Path:
    return out / "shards" / f"shard-{i:06d}.arrow"


def assert_clean_folder(out: Path, shards: int) -> None:
    """Exactly ``shards`` shard files, each whole (identity and checksums), and no temporary file."""
    files = sorted(p.name for p in (out / "shards").iterdir())
    assert files == [f"shard-{i:06d}.arrow" for i in range(shards)], files
    for i in range(shards):
        store.verify(shard(out, i))


def one_line(err: str, *words: str) -> None:
    err = err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> pd.DataFrame:
    return frame(run(tmp_path_factory.mktemp("clean") / "run"))


def resume(out: Path, **kwargs) -> tuple[SignalTable, list[int]]:
    calls: list[int] = []
    table = run(out, progress=lambda done, total, what: calls.append(done), **kwargs)
    return table, calls


def test_flipped_bytes_are_refused_and_recomputed_on_resume(tmp_path, clean, capsys):
    out = tmp_path / "run"
    before = run(out)
    p = shard(out, 2)
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"shard shards/shard-000002\.arrow is (damaged|unreadable)") as e:
        SignalTable.open(out)
    one_line(str(e.value))
    refused = 0
    for layer in before.layers:  # a table opened before the damage: the damaged column is refused, the others intact
        try:
            rows = before.layer(layer).sort_values(KEY).reset_index(drop=True)
        except InputError as e:
            one_line(str(e), "shard-000002.arrow")
            refused += 1
        else:
            pd.testing.assert_frame_equal(rows, clean[clean.layer == layer].reset_index(drop=True), check_exact=True)
    assert refused >= 1
    assert main(["hypergraph", str(out), "--out", str(tmp_path / "hg")]) == 2
    one_line(capsys.readouterr().err, "shard-000002.arrow")
    assert not (tmp_path / "hg").exists()
    table, calls = resume(out)
    assert len(calls) == 1  # only the damaged shard's batch was computed again
    repaired = table.manifest["repaired_shards"]
    assert len(repaired) == 1 and "shard-000002.arrow" in repaired[0]
    assert_clean_folder(out, 5)
    pd.testing.assert_frame_equal(frame(table), clean, check_exact=True)


def test_shard_copied_over_another_is_refused_and_recomputed(tmp_path, clean):
    out = tmp_path / "run"
    run(out)
    shutil.copyfile(shard(out, 0), shard(out, 3))
    with pytest.raises(InputError, match=r"shard-000003\.arrow is holds shard 0|shard-000003\.arrow.*holds shard 0") as e:
        SignalTable.open(out)
    one_line(str(e.value))
    table, calls = resume(out)
    assert len(calls) == 1 and "holds shard 0" in table.manifest["repaired_shards"][0]
    assert_clean_folder(out, 5)
    pd.testing.assert_frame_equal(frame(table), clean, check_exact=True)


def test_overlapping_ids_between_shards_are_refused(tmp_path):
    out = tmp_path / "run"
    run(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][1] = dict(manifest["shards"][0])  # the same inputs listed twice
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"input id 0 is in both shards/shard-000000\.arrow and shards/shard-000000\.arrow"):
        SignalTable.open(out)
    assert_clean_folder(out, 5)  # refusing changes nothing


def test_missing_shard_is_refused_and_recomputed(tmp_path, clean, capsys):
    out = tmp_path / "run"
    run(out)
    shard(out, 1).unlink()
    with pytest.raises(InputError, match=r"shard shards/shard-000001\.arrow is missing") as e:
        SignalTable.open(out)
    one_line(str(e.value))
    assert main(["hypergraph", str(out), "--out", str(tmp_path / "hg")]) == 2
    one_line(capsys.readouterr().err, "shard-000001.arrow", "missing")
    table, calls = resume(out)
    assert len(calls) == 1
    assert_clean_folder(out, 5)
    pd.testing.assert_frame_equal(frame(table), clean, check_exact=True)


def test_second_run_into_a_locked_folder_gets_exit_2_naming_the_holder(tmp_path, capsys):
    x, y = inputs()
    data = npz(tmp_path / "data.npz", x, y)
    out = tmp_path / "run"
    argv = ["profile", "digits-cnn", data, "--out", str(out), "--batch-size", "8", "--shard-size", "8"]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in [out / "manifest.json", *sorted((out / "shards").iterdir())]}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom convsvd._atomic import folder_lock\nwith folder_lock(sys.argv[1]):\n"
                               "    print('locked', flush=True)\n    sys.stdin.read()\n", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main([*argv, "--restart"]) == 2
        one_line(capsys.readouterr().err, f"pid {holder.pid}", "another convsvd run is writing there")
    finally:
        holder.communicate("", timeout=30)
    after = {p: p.read_bytes() for p in [out / "manifest.json", *sorted((out / "shards").iterdir())]}
    assert after == before  # the refused run touched nothing
    assert main(argv) == 0  # once the holder is gone the folder is usable (the finished run is resumed)
    assert_clean_folder(out, 5)


def test_disk_full_is_one_line_and_earlier_shards_stay(tmp_path, clean, capsys, monkeypatch):
    x, y = inputs()
    data = npz(tmp_path / "data.npz", x, y)
    out = tmp_path / "run"
    real = store.ShardWriter._write

    def full_on_shard_2(self, cols):
        if self.index == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, cols)

    monkeypatch.setattr(store.ShardWriter, "_write", full_on_shard_2)
    argv = ["profile", "digits-cnn", data, "--out", str(out), "--batch-size", "8", "--shard-size", "8"]
    assert main(argv) == 2
    one_line(capsys.readouterr().err, str(out), "the disk is full")
    assert_clean_folder(out, 2)  # shards 0 and 1 whole, no temporary file
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running" and len(manifest["shards"]) == 2
    monkeypatch.setattr(store.ShardWriter, "_write", real)
    assert main(argv) == 0
    assert_clean_folder(out, 5)
    pd.testing.assert_frame_equal(frame(SignalTable.open(out)), clean, check_exact=True)


def test_nonfinite_inputs_are_skipped_and_listed_or_refused(tmp_path, clean, capsys):
    bad = {3: float("nan"), 17: float("nan"), 30: float("inf")}
    x, y = inputs(bad)
    table = run(tmp_path / "api", x)
    assert table.n_inputs == N - 3
    skipped = table.manifest["skipped_inputs"]
    assert [s[0] for s in skipped] == ["3", "17", "30"] and all("non-finite" in s[1] for s in skipped)
    got = frame(table)
    assert np.isfinite(got.signal.to_numpy()).all()
    assert set(got.id) == set(range(N)) - set(bad)
    expected = clean[~clean.id.isin(list(bad))].reset_index(drop=True)
    cols = KEY + ["label", "signal"]  # the other inputs' signals (a smaller batch may round differently)
    pd.testing.assert_frame_equal(got[cols], expected[cols], check_exact=False, rtol=1e-5, atol=1e-5)
    assert_clean_folder(tmp_path / "api", 5)

    data = npz(tmp_path / "data.npz", x, y)
    assert main(["profile", "digits-cnn", data, "--out", str(tmp_path / "cli"), "--batch-size", "8"]) == 0
    assert "skipped 3 inputs with non-finite values" in capsys.readouterr().err
    out = tmp_path / "refused"
    assert main(["profile", "digits-cnn", data, "--out", str(out), "--batch-size", "8", "--nonfinite", "error"]) == 2
    one_line(capsys.readouterr().err, "input 3 has non-finite values")
    assert list((out / "shards").iterdir()) == []  # nothing half-written
