"""Damaged, copied or foreign decompose cache entries are detected, recomputed and rewritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from convsvd import zoo
from convsvd.decompose import decompose
from convsvd.io import from_module


@pytest.fixture(scope="module")
def mw():
    return from_module(zoo.load("digits-cnn"), source="digits-cnn")


def _entry(cache: Path) -> Path:
    (entry,) = list(cache.glob("*.safetensors"))
    return entry


def _read(entry: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(entry), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _same(a, b) -> None:
    for name in a:
        for t in ("S", "U", "Vh", "fro2"):
            x, y = getattr(a[name], t), getattr(b[name], t)
            assert (x is None) == (y is None)
            if x is not None:
                assert torch.equal(x, y), (name, t)


def test_entry_carries_identity_and_checksum(mw, tmp_path: Path) -> None:
    decompose(mw, layers="conv3", cache_dir=tmp_path, device="cpu")
    tensors, meta = _read(_entry(tmp_path))
    assert set(tensors) == {"U", "S", "Vh", "fro2"}
    assert meta["layer"] == "conv3" and meta["shape"] == "1x64x288" and meta["dtype"] == "float32"
    assert meta["route"] == "mode=full method=svd k=None" and len(meta["xxh3_128"]) == 32
    from convsvd.io.spec import tensor_digest
    from convsvd.layers import unfolded

    assert meta["weight_digest"] == tensor_digest(unfolded(mw["conv3"]))


def test_rewritten_value_is_recomputed_with_a_note(mw, tmp_path: Path) -> None:
    fresh = decompose(mw, layers="conv3", cache_dir=tmp_path, device="cpu")
    entry = _entry(tmp_path)
    tensors, meta = _read(entry)
    tensors["S"][0, 0] = 99.0  # metadata (and its checksum) kept: what a careless edit does
    save_file(tensors, str(entry), metadata=meta)
    again = decompose(mw, layers="conv3", cache_dir=tmp_path, device="cpu")
    assert again["conv3"].sigma_max < 3 and again["conv3"].energy(1) <= 1.0
    assert len(again.notes) == 1 and "XXH3-128" in again.notes[0] and "conv3" in again.notes[0]
    _same(again, fresh)
    third = decompose(mw, layers="conv3", cache_dir=tmp_path, device="cpu")  # the entry was rewritten
    assert third.notes == () and _read(entry)[0]["S"][0, 0] != 99.0
    _same(third, fresh)


def test_entry_copied_under_another_layers_key_is_not_served(mw, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    fresh = decompose(mw, layers="conv3", cache_dir=a, device="cpu")
    decompose(mw, layers="fc2", cache_dir=b, device="cpu")  # a 10-row matrix
    shutil.copyfile(_entry(b), _entry(a))
    again = decompose(mw, layers="conv3", cache_dir=a, device="cpu")
    assert tuple(again["conv3"].U.shape) == (1, 64, 64)
    assert len(again.notes) == 1 and "it was written for shape '1x10x64', not '1x64x288'" in again.notes[0]
    _same(again, fresh)


@pytest.mark.slow  # two whole commands
def test_flipped_bytes_in_vh_never_reach_the_output(mw, tmp_path: Path, cli_inproc) -> None:
    cache, out1, out2 = tmp_path / "cache", tmp_path / "o1", tmp_path / "o2"
    code, _, _ = cli_inproc(["svd", "digits-cnn", "--layers", "conv3", "--cache", str(cache), "--out", str(out1)])
    assert code == 0
    entry = _entry(cache)
    data = bytearray(entry.read_bytes())
    for i in range(len(data) - 4000, len(data) - 3800):  # inside the last tensor's bytes (Vh sorts last)
        data[i] ^= 0x7F
    entry.write_bytes(bytes(data))
    code, _, err = cli_inproc(["svd", "digits-cnn", "--layers", "conv3", "--cache", str(cache), "--out", str(out2)])
    assert code == 0 and "note: cache entry" in err and "recomputed" in err
    from safetensors.torch import load_file

    a, b = load_file(str(out1 / "svd.safetensors")), load_file(str(out2 / "svd.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert float(b["conv3/Vh"].abs().max()) <= 1.0 + 1e-6


def test_non_finite_entry_with_a_matching_checksum_is_recomputed(mw, tmp_path: Path) -> None:
    fresh = decompose(mw, layers="conv3", mode="values", cache_dir=tmp_path, device="cpu")
    entry = _entry(tmp_path)
    tensors, meta = _read(entry)
    tensors["S"][0, 3] = float("nan")
    from convsvd.decompose import _payload_digest

    save_file(tensors, str(entry), metadata={**meta, "xxh3_128": _payload_digest(tensors)})
    again = decompose(mw, layers="conv3", mode="values", cache_dir=tmp_path, device="cpu")
    assert len(again.notes) == 1 and "non-finite" in again.notes[0]
    _same(again, fresh)


def test_entry_without_metadata_is_recomputed(mw, tmp_path: Path) -> None:
    fresh = decompose(mw, layers="conv3", mode="values", cache_dir=tmp_path, device="cpu")
    entry = _entry(tmp_path)
    tensors, _ = _read(entry)
    save_file(tensors, str(entry))  # as an older convsvd, or a hand-made file, would
    again = decompose(mw, layers="conv3", mode="values", cache_dir=tmp_path, device="cpu")
    assert len(again.notes) == 1
    _same(again, fresh)


def test_truncated_entry_is_recomputed(mw, tmp_path: Path) -> None:
    fresh = decompose(mw, layers="conv3", cache_dir=tmp_path, device="cpu")
    entry = _entry(tmp_path)
    entry.write_bytes(entry.read_bytes()[:1000])
    again = decompose(mw, layers="conv3", cache_dir=tmp_path, device="cpu")
    assert len(again.notes) == 1 and "unreadable" in again.notes[0]
    _same(again, fresh)
