"""The built-in digits: fixed stratified split, scaling, resizing, errors."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from convsvd.data import DigitsData, load_digits
from convsvd.data.digits import TEST_FRACTION
from convsvd.errors import InputError


@pytest.fixture(scope="module")
def splits() -> dict[str, DigitsData]:
    return {s: load_digits(s) for s in ("train", "test", "all")}


def test_split_is_disjoint_and_covers_everything(splits):
    train, test, full = (set(splits[s].ids.tolist()) for s in ("train", "test", "all"))
    assert not train & test
    assert train | test == full == set(range(1797))
    assert len(splits["train"]) + len(splits["test"]) == len(splits["all"]) == 1797


def test_split_is_stratified(splits):
    all_counts = torch.bincount(splits["all"].labels, minlength=10)
    test_counts = torch.bincount(splits["test"].labels, minlength=10)
    expected = all_counts.double() * TEST_FRACTION
    assert torch.all((test_counts - expected).abs() <= 0.5)


def test_split_is_fixed(splits):
    again = load_digits("test")
    assert torch.equal(again.ids, splits["test"].ids)
    # golden: the first ids of the shipped split (changing them invalidates the zoo's weights)
    assert splits["test"].ids[:5].tolist() == [3, 7, 13, 16, 19]
    assert len(splits["test"]) == 451


def test_values_labels_and_ids_match_sklearn(splits):
    bunch = sk_load_digits()
    for data in splits.values():
        ids = data.ids.numpy()
        assert np.all(np.diff(ids) > 0)
        assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
        assert data.ids.dtype == torch.int64
        assert tuple(data.images.shape) == (len(data), 1, 8, 8)
        np.testing.assert_array_equal(data.labels.numpy(), bunch.target[ids])
        np.testing.assert_allclose(data.images[:, 0].numpy(), bunch.images[ids] / 16.0, rtol=0, atol=1e-7)
        assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
        assert data.classes == [str(d) for d in range(10)]


def test_calls_return_fresh_tensors():
    a = load_digits("test")
    a.images.zero_()
    assert float(load_digits("test").images.max()) == 1.0


@pytest.mark.parametrize("size", [4, 8, 16, 28, 32])
def test_resize_shapes(size):
    data = load_digits("test", size=size)
    assert tuple(data.images.shape) == (451, 1, size, size)
    assert data.images.dtype == torch.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0


def test_upsampling_keeps_the_mean_image():
    small, big = load_digits("test").images, load_digits("test", size=16).images
    torch.testing.assert_close(big.mean(dim=(2, 3)), small.mean(dim=(2, 3)), rtol=0, atol=0.05)


@pytest.mark.parametrize("split", ["validation", "", None, "Train"])
def test_bad_split(split):
    with pytest.raises(InputError, match="split"):
        load_digits(split)


@pytest.mark.parametrize("size", [0, -3, 2.5, "8", True, None])
def test_bad_size(size):
    with pytest.raises(InputError, match="size"):
        load_digits("train", size=size)
