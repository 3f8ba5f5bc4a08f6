"""Any torch ``DataLoader`` (or map-style ``Dataset``) as a :class:`~convsvd.data.DataSource`.

What a loader's batch may be: a tensor of inputs; a tuple/list ``(inputs,
labels)`` or ``(inputs, labels, ids)``; or a dict with ``"inputs"`` /
``"image"`` / ``"x"`` and optionally ``"label"`` / ``"labels"`` / ``"y"`` and
``"id"`` / ``"ids"``. Without ids, an input's id is its position in the
loader's order.

A ``DataLoader`` keeps its own batch size, and is read in order from the start:
batches that are not wanted (finished on resume, or another rank's) are read
and dropped. It must give the same batches every time, so a shuffling loader is
refused. A map-style ``Dataset`` is read directly, only the wanted batches, at
the batch size of the run.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch.utils.data.dataloader import default_collate

from convsvd.data.protocol import (
    ID_KEYS,
    INPUT_KEYS,
    LABEL_KEYS,
    Batch,
    ExpectedInput,
    batch_ranges,
    check_batch_size,
    pick,
)
from convsvd.errors import InputError

__all__ = ["LoaderData"]

class LoaderData:
    """Batches of a torch ``DataLoader`` or items of a map-style ``Dataset``.

    Parameters
    ----------
    loader : torch.utils.data.DataLoader or torch.utils.data.Dataset
    classes : list of str, optional
        Names of the labels (default: the dataset's ``classes`` attribute, if any).
    name : str, optional

    >>> from torch.utils.data import TensorDataset, DataLoader
    >>> src = LoaderData(DataLoader(TensorDataset(torch.zeros(5, 1, 4, 4), torch.arange(5)), batch_size=2))
    >>> [(b, batch.ids.tolist()) for b, batch in src.iter_batches(2, which=[1, 2])]
    [(1, [2, 3]), (2, [4])]
    """

    def __init__(self, loader: DataLoader | Dataset, classes: Sequence[str] | None = None, name: str | None = None) -> None:
        if isinstance(loader, DataLoader):
            if isinstance(loader.sampler, RandomSampler):
                raise InputError("DataLoader: shuffle=True gives different batches on every pass; "
                                 "a resumable or multi-process run needs shuffle=False")
            self.loader: DataLoader | None = loader
            self.dataset: Dataset | None = None
            ds = loader.dataset
        elif isinstance(loader, Dataset):
            if not hasattr(loader, "__len__"):
                raise InputError(f"dataset {type(loader).__name__}: an iterable dataset needs a DataLoader around it")
            self.loader, self.dataset, ds = None, loader, loader
        else:
            raise InputError(f"loader: expected a torch DataLoader or Dataset, got {type(loader).__name__}")
        cls = classes if classes is not None else getattr(ds, "classes", None)
        self.classes: list[str] | None = [str(c) for c in cls] if cls is not None else None
        self.name = name or type(ds).__name__
        self._expected: ExpectedInput | None = None

    def __len__(self) -> int:
        ds = self.loader.dataset if self.loader is not None else self.dataset
        try:
            return len(ds)  # type: ignore[arg-type]
        except TypeError:
            return -1

    def __repr__(self) -> str:
        return f"LoaderData({self.name!r}, {len(self)} inputs)"

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return []

    @property
    def fixed_batch_size(self) -> int | None:
        """The loader's own batch size (None for a Dataset, batched at the run's size)."""
        return None if self.loader is None else self.loader.batch_size

    def num_batches(self, batch_size: int) -> int | None:
        if self.loader is None:
            return -(-len(self) // check_batch_size(batch_size))
        try:
            return len(self.loader)
        except TypeError:
            return None

    def conform(self, expected: ExpectedInput) -> "LoaderData":
        """A copy that checks each batch against what the model takes."""
        new = object.__new__(LoaderData)
        new.__dict__.update(self.__dict__)
        new._expected = expected
        return new

    def describe(self) -> dict[str, object]:
        return dict(kind="dataloader" if self.loader is not None else "dataset", name=self.name, inputs=len(self),
                    classes=self.classes, batch_size=self.fixed_batch_size, transform="the loader's own",
                    fingerprint=f"{type(self.loader or self.dataset).__name__}:{len(self)}", skipped=[])

    # ------------------------------------------------------------------ batches

    def _split(self, item: object, offset: int) -> Batch:
        if isinstance(item, dict):
            x, y, i = pick(item, INPUT_KEYS), pick(item, LABEL_KEYS), pick(item, ID_KEYS)
            if x is None:
                raise InputError(f"{self.name}: batch dict has no inputs (expected a key among {', '.join(INPUT_KEYS)})")
        elif isinstance(item, (tuple, list)):
            if not 1 <= len(item) <= 3:
                raise InputError(f"{self.name}: expected batches (inputs[, labels[, ids]]), got {len(item)} parts")
            x, y, i = (list(item) + [None, None])[:3]
        else:
            x, y, i = item, None, None
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.name}: batch inputs are {type(x).__name__}, expected a tensor")
        n = int(x.shape[0])
        y = torch.full((n,), -1, dtype=torch.int64) if y is None else torch.as_tensor(y).to(torch.int64).reshape(-1)
        i = torch.arange(offset, offset + n, dtype=torch.int64) if i is None else torch.as_tensor(i).to(torch.int64).reshape(-1)
        if y.numel() != n or i.numel() != n:
            raise InputError(f"{self.name}: a batch has {n} inputs but {y.numel()} labels and {i.numel()} ids")
        if not x.is_floating_point():
            x = x.float()
        self._check(x)
        return Batch(i, x, y)

    def _check(self, x: torch.Tensor) -> None:
        e = self._expected
        if e is None or e.channels is None:
            return
        shape = tuple(x.shape[1:])
        if e.kind == "linear":  # (N, *, features), or images flattened by the model
            ok = shape[-1] == e.channels or math.prod(shape) == e.channels
        else:
            ok = len(shape) >= 2 and shape[0] == e.channels and (e.spatial is None or tuple(shape[1:]) == tuple(e.spatial))
        if not ok:
            raise InputError(f"{self.name} inputs: are {'×'.join(map(str, shape))}, model expects {e.describe()}")

    def iter_batches(self, batch_size: int, which: Sequence[int] | None = None) -> Iterator[tuple[int, Batch]]:
        check_batch_size(batch_size)
        if self.loader is None:
            ds = self.dataset
            for b, lo, hi in batch_ranges(len(self), batch_size, which):
                items = [ds[k] for k in range(lo, hi)]  # type: ignore[index]
                yield b, self._split(default_collate(items), lo)
            return
        wanted = None if which is None else set(which)
        last = None if which is None else (max(which) if which else -1)
        offset = 0
        for b, item in enumerate(self.loader):
            if last is not None and b > last:
                break
            n = int(self._size_of(item))
            if wanted is None or b in wanted:
                yield b, self._split(item, offset)
            offset += n

    @staticmethod
    def _size_of(item: object) -> int:
        if isinstance(item, dict):
            x = pick(item, INPUT_KEYS)
        elif isinstance(item, (tuple, list)):
            x = item[0] if item else None
        else:
            x = item
        return int(x.shape[0]) if isinstance(x, torch.Tensor) else 0
