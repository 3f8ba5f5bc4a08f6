"""A synthetic dataset for benchmarks: ``n`` random images in 10 classes, batch ``b`` drawn from seed ``b``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from convsvd.data import Batch, ExpectedInput


class Synthetic:
    """A :class:`convsvd.data.DataSource` of ``n`` random 3×side×side images in 10 classes (labels ``id % 10``).

    Batch ``b`` is drawn from seed ``b``, so the dataset takes no memory and every run sees the same inputs.
    """

    classes = [str(i) for i in range(10)]

    def __init__(self, n: int, side: int) -> None:
        self.n, self.side = n, side
        self.name = f"synthetic-{n}"

    def __len__(self) -> int:
        return self.n

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return []

    def num_batches(self, batch_size: int) -> int:
        return -(-self.n // batch_size)

    def batch(self, b: int, batch_size: int) -> Batch:
        lo, hi = b * batch_size, min(self.n, (b + 1) * batch_size)
        x = torch.rand(hi - lo, 3, self.side, self.side, generator=torch.Generator().manual_seed(b))
        ids = torch.arange(lo, hi)
        return Batch(ids, x, ids % 10)

    def iter_batches(self, batch_size: int, which: Sequence[int] | None = None) -> Iterator[tuple[int, Batch]]:
        for b in (range(self.num_batches(batch_size)) if which is None else which):
            yield b, self.batch(b, batch_size)

    def conform(self, expected: ExpectedInput) -> "Synthetic":
        return self

    def describe(self) -> dict[str, object]:
        return dict(kind="synthetic", name=self.name, inputs=self.n, classes=self.classes, transform="none",
                    fingerprint=f"synthetic:{self.n}:{self.side}", skipped=[])
