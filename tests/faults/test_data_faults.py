"""Dataset faults found as the data are read: string labels, unknown classes, non-numeric and non-finite inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convsvd.data import as_source
from convsvd.data.arrays import ArrayData
from convsvd.data.protocol import Batch, nonfinite_inputs, nonfinite_rows
from convsvd.errors import InputError


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_string_labels_become_classes_with_a_stated_mapping(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    src = as_source(_npz(tmp_path / "s.npz", inputs=x, labels=np.array(["dog", "cat", "dog", "emu", "cat", "cat"])))
    assert src.classes == ["cat", "dog", "emu"] and src.labels.tolist() == [1, 0, 1, 2, 0, 0]
    assert "'cat'→0, 'dog'→1, 'emu'→2" in src.describe()["transform"]


def test_string_labels_follow_given_classes(tmp_path: Path) -> None:
    x = np.zeros((3, 1, 8, 8), np.float32)
    src = as_source(_npz(tmp_path / "s.npz", inputs=x, labels=np.array(["b", "a", "c"]), classes=np.array(["c", "b", "a"])))
    assert src.labels.tolist() == [1, 2, 0] and src.classes == ["c", "b", "a"]


def test_label_outside_the_given_classes_is_one_line(tmp_path: Path) -> None:
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(InputError, match=r"s\.npz labels: label 'zebra' is not one of the classes \(a, b\)"):
        as_source(_npz(tmp_path / "s.npz", inputs=x, labels=np.array(["a", "zebra"]), classes=np.array(["a", "b"])))


def test_non_numeric_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"s\.npz inputs: expected a numeric array, got dtype <U1"):
        as_source(_npz(tmp_path / "s.npz", inputs=np.array([["a", "b"]] * 3)))


def test_profile_prints_the_label_mapping(tmp_path: Path, cli_inproc) -> None:
    x = np.random.default_rng(1).random((5, 1, 8, 8), dtype=np.float32)
    data = _npz(tmp_path / "s.npz", inputs=x, labels=np.array(["seven", "one", "one", "seven", "one"]))
    code, out, err = cli_inproc(["profile", "digits-cnn", str(data), "--out", str(tmp_path / "run")])
    assert code == 0, err
    assert "string labels mapped to classes 'one'→0, 'seven'→1" in out.replace("\n", "")


def test_nonfinite_rows_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, 4, 4, generator=g)
    bad = [3, 17, 18, 49]
    x[3, 0, 0, 0] = float("nan")
    x[17, 2, 3, 1] = float("inf")
    x[18, 1, 1, 1] = -float("inf")
    x[49] = float("nan")
    assert nonfinite_rows(x).tolist() == bad
    assert nonfinite_rows(x).tolist() == [i for i in range(50) if not bool(torch.isfinite(x[i]).all())]


def test_nonfinite_rows_finite_edge_cases() -> None:
    big = torch.full((4, 3), 3e38)  # the sum overflows, every value is finite
    assert nonfinite_rows(big).tolist() == []
    assert nonfinite_rows(torch.arange(6).reshape(2, 3)).tolist() == []  # integers are always finite
    assert nonfinite_rows(torch.empty(0, 3)).tolist() == []


def test_nonfinite_inputs_names_ids_and_counts() -> None:
    x = torch.zeros(3, 2, 2)
    x[1, 0, 0] = float("nan")
    x[1, 1, 1] = float("inf")
    b = Batch(torch.tensor([10, 11, 12]), x, torch.tensor([0, 1, 0]))
    assert nonfinite_inputs(b, "d.npz") == [("d.npz input id 11", "2 of 4 values are NaN or ±Inf")]
    assert nonfinite_inputs(ArrayData(torch.ones(2, 3)).iter_batches(2).__next__()[1]) == []
