"""The scikit-learn digits: 1797 labelled 8×8 grey images, shipped with scikit-learn.

Nothing is downloaded: :func:`sklearn.datasets.load_digits` reads a file bundled
with scikit-learn. Pixel values 0..16 are scaled to ``[0, 1]`` float32.

The train/test split is fixed: within each class the images are permuted by
``numpy.random.RandomState(SPLIT_SEED)`` (a stream NumPy keeps stable across
versions) and the first ``round(TEST_FRACTION · n_class)`` go to the test split.
So the split is stratified, does not depend on the scikit-learn version, and an
image keeps its ``id`` (its index in scikit-learn's array) in every split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from convsvd import _validate as check
from convsvd.errors import InputError

#: Seed of the fixed train/test split.
SPLIT_SEED: int = 0
#: Share of every class that goes to the test split.
TEST_FRACTION: float = 0.25
#: Side of the original images, in pixels.
NATIVE_SIZE: int = 8
#: Class names, in label order.
CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: Accepted values of ``split``.
SPLITS: tuple[str, ...] = ("train", "test", "all")


@dataclass(frozen=True, eq=False)
class DigitsData:
    """Images, labels and stable ids of one split of the digits.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, 1, s, s)`` float32 in ``[0, 1]``.
    labels : torch.Tensor
        ``(N,)`` int64, the digit ``0..9``.
    ids : torch.Tensor
        ``(N,)`` int64, the index of each image in scikit-learn's array;
        increasing, and the same for an image in every split.
    classes : list of str
        ``["0", ..., "9"]``; ``classes[label]`` names a label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images ``(N, 8, 8)`` float32 in [0, 1] and labels ``(N,)`` int64 (read-only)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=1)
def _test_mask() -> np.ndarray:
    """``(N,)`` bool, True for the images of the fixed test split."""
    _, labels = _raw()
    rng = np.random.RandomState(SPLIT_SEED)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for c in range(len(CLASSES)):
        members = np.flatnonzero(labels == c)
        n_test = int(np.floor(members.size * TEST_FRACTION + 0.5))
        mask[rng.permutation(members)[:n_test]] = True
    mask.flags.writeable = False
    return mask


def split_ids(split: str) -> np.ndarray:
    """Ids (indices in scikit-learn's array) of one split, increasing.

    Parameters
    ----------
    split : {"train", "test", "all"}

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64.

    >>> len(split_ids("train")), len(split_ids("test")), len(split_ids("all"))
    (1346, 451, 1797)
    """
    if split not in SPLITS:
        raise InputError(f"split: expected one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    mask = _test_mask()
    if split == "all":
        return np.arange(mask.size, dtype=np.int64)
    return np.flatnonzero(mask if split == "test" else ~mask).astype(np.int64)


def load_digits(split: str = "train", size: int = NATIVE_SIZE) -> DigitsData:
    """One split of the scikit-learn digits as tensors.

    Parameters
    ----------
    split : {"train", "test", "all"}
        The fixed stratified split (75 % / 25 %, seed :data:`SPLIT_SEED`), or
        all 1797 images.
    size : int
        Side of the returned images. Other than 8, the images are resized
        bilinearly (``align_corners=False``; antialiased when shrinking).

    Returns
    -------
    DigitsData
        ``images`` ``(N, 1, size, size)`` float32, ``labels`` and ``ids``
        ``(N,)`` int64, ordered by id. Every call returns new tensors.

    >>> data = load_digits("test", size=16)
    >>> tuple(data.images.shape), data.images.dtype, data.classes[int(data.labels[0])]
    ((451, 1, 16, 16), torch.float32, '3')
    """
    size = check.integer(size, "size", minimum=1)  # image side in pixels
    ids = split_ids(split)
    images_np, labels_np = _raw()
    images = torch.from_numpy(images_np[ids]).unsqueeze(1)  # fancy indexing copies
    if int(size) != NATIVE_SIZE:
        images = F.interpolate(
            images, size=(int(size), int(size)), mode="bilinear", align_corners=False, antialias=size < NATIVE_SIZE
        ).clamp_(0.0, 1.0)
    return DigitsData(
        images=images.contiguous(),
        labels=torch.from_numpy(labels_np[ids]),
        ids=torch.from_numpy(ids),
        classes=list(CLASSES),
    )
