"""An image folder: ``ROOT/CLASS/…/IMAGE``, any image PIL reads.

Classes are the subfolders of ``ROOT`` in sorted order (label = position);
images are every non-hidden file below a class folder (sorted paths); an
input's id is its position in that sorted list, so ids do not move when a file
turns out to be unreadable. Unreadable files are skipped and listed
(:attr:`ImageFolder.skipped`), never silently; files directly in ``ROOT`` are
listed as skipped too.

The transform (stated by :meth:`ImageFolder.describe`): convert to the model's
channel count (1 → PIL ``"L"``, 3 → ``"RGB"``, 4 → ``"RGBA"``), resize to the
model's input size with PIL bilinear resampling when the size differs, scale
8-bit values to ``[0, 1]`` (16-bit and float images by their own range), then
optionally ``(x − mean) / std`` per channel. With a
:class:`~convsvd.data.preprocess.Preprocess` (:meth:`ImageFolder.with_preprocess`)
its resize and centre crop come first (then the resize to the model's size, only
if the size still differs) and its mean and std are the normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from convsvd._typing import PathLike
from convsvd.data.protocol import Batch, ExpectedInput, batch_ranges, check_batch_size, fingerprint
from convsvd.errors import InputError

if TYPE_CHECKING:
    from convsvd.data.preprocess import Preprocess

__all__ = ["ImageFolder"]

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _rounded(t: torch.Tensor) -> list[float]:
    """Float32 statistics as the short decimals they were given as."""
    return [float(f"{v:.6g}") for v in t.tolist()]


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class ImageFolder:
    """Images in one subfolder per class, read lazily batch by batch.

    Parameters
    ----------
    root : path
    size : int or (H, W), optional
        Input size of the model. Default: the model's, when known (see
        :meth:`conform`), else the size of the first readable image.
    channels : {1, 3, 4}, optional
        Default: the model's first layer's input channels, else the first image's.
    mean, std : sequence of float, optional
        Per-channel normalisation after scaling to ``[0, 1]``.

    Raises
    ------
    InputError
        When ``root`` is not a folder, is empty, has no class subfolders, or
        holds no image PIL can read.
    """

    def __init__(
        self,
        root: PathLike,
        size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        from PIL import Image

        self.root = Path(root)
        self.name = self.root.name or str(self.root)
        if not self.root.is_dir():
            raise InputError(f"image folder {os.fspath(root)!r}: is not a folder")
        entries = sorted(e for e in os.listdir(self.root) if not e.startswith("."))
        if not entries:
            raise InputError(f"image folder {os.fspath(root)!r}: is empty (expected one subfolder of images per class)")
        class_dirs = [e for e in entries if (self.root / e).is_dir()]
        loose = [e for e in entries if not (self.root / e).is_dir()]
        if not class_dirs:
            raise InputError(f"image folder {os.fspath(root)!r}: has no class subfolders ({len(loose)} files at the top; "
                             f"expected ROOT/CLASS/IMAGE)")
        self.classes: list[str] | None = class_dirs
        self._scan_skipped: list[tuple[str, str]] = [(e, "not in a class subfolder") for e in loose]
        files: list[tuple[str, int]] = []
        for label, cls in enumerate(class_dirs):
            for dirpath, dirnames, filenames in os.walk(self.root / cls):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    if not f.startswith("."):
                        files.append((os.path.relpath(os.path.join(dirpath, f), self.root), label))
        self._all = files  # id = index here
        readable: list[int] = []
        first_shape: tuple[str, tuple[int, int]] | None = None
        for i, (rel, _) in enumerate(files):
            try:
                with Image.open(self.root / rel) as im:  # reads the header only
                    if first_shape is None:
                        first_shape = (im.mode, (im.height, im.width))
                readable.append(i)
            except Exception as e:  # PIL raises many kinds for bad files
                self._scan_skipped.append((rel, _reason(e)))
        if not readable:
            if not files:
                raise InputError(f"image folder {os.fspath(root)!r}: its {len(class_dirs)} class subfolders hold no files")
            rel, why = self._scan_skipped[-1]
            raise InputError(f"image folder {os.fspath(root)!r}: none of its {len(files)} files is an image PIL can read "
                             f"(e.g. {rel}: {why})")
        self._readable = np.asarray(readable, dtype=np.int64)
        self._load_skipped: list[tuple[str, str]] = []
        assert first_shape is not None
        self._first_mode, self._first_size = first_shape
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise InputError(f"size: expected a positive int or (H, W), got {size!r}")
        if channels is not None and channels not in _MODES:
            raise InputError(f"channels: expected 1, 3 or 4, got {channels!r}")
        self.channels = channels
        self.mean = None if mean is None else torch.tensor(list(mean), dtype=torch.float32)
        self.std = None if std is None else torch.tensor(list(std), dtype=torch.float32)
        self.preprocess: "Preprocess | None" = None

    def with_preprocess(self, transform: "Preprocess") -> "ImageFolder":
        """A copy whose images go through ``transform`` (resize, centre crop, normalisation)."""
        new = object.__new__(ImageFolder)
        new.__dict__.update(self.__dict__)
        new.preprocess = transform
        if transform.mean is not None:
            new.mean = torch.tensor(list(transform.mean), dtype=torch.float32)
            new.std = torch.tensor(list(transform.std or ()), dtype=torch.float32)
        new._load_skipped = []
        return new

    # ------------------------------------------------------------------ protocol

    def __len__(self) -> int:
        return int(self._readable.size)

    def __repr__(self) -> str:
        return f"ImageFolder({os.fspath(self.root)!r}, {len(self)} images, {len(self.classes or [])} classes)"

    @property
    def target_channels(self) -> int:
        if self.channels is not None:
            return self.channels
        grey = self._first_mode in ("1", "L", "LA", "F") or self._first_mode.startswith("I")
        return 1 if grey else 3

    @property
    def target_size(self) -> tuple[int, int]:
        if self.size is not None:
            return self.size  # type: ignore[return-value]
        pp = getattr(self, "preprocess", None)
        if pp is not None:
            h, w = pp.resized_size(*self._first_size)
            return pp.crop_box(h, w)[2:] if pp.crop is not None else (h, w)
        return self._first_size

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self._scan_skipped + self._load_skipped

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // check_batch_size(batch_size))

    def conform(self, expected: ExpectedInput) -> "ImageFolder":
        """A copy whose transform gives what the model takes (channels; size when known)."""
        if expected.kind == "linear" or expected.channels is None:
            return self
        if expected.channels not in _MODES:
            raise InputError(f"image folder {os.fspath(self.root)!r}: model expects {expected.describe()}; "
                             f"images convert only to 1, 3 or 4 channels")
        if self.channels is not None and self.channels != expected.channels:
            raise InputError(f"channels={self.channels}: model expects {expected.describe()}")
        size = self.size
        if expected.spatial is not None:
            if len(expected.spatial) != 2:
                raise InputError(f"image folder {os.fspath(self.root)!r}: images are 2-d, model expects {expected.describe()}")
            if size is not None and tuple(size) != tuple(expected.spatial):
                raise InputError(f"size={'×'.join(map(str, size))}: model expects {expected.describe()}")
            pp = getattr(self, "preprocess", None)
            out = pp.out_size if pp is not None else None
            if pp is not None and out is not None and tuple(out) != tuple(expected.spatial):
                raise InputError(f"{pp.describe()}: gives {out[0]}×{out[1]} images, model expects {expected.describe()}")
            size = tuple(expected.spatial)
        new = object.__new__(ImageFolder)
        new.__dict__.update(self.__dict__)
        new.channels, new.size = expected.channels, size
        new._load_skipped = []
        return new

    def transform_text(self) -> str:
        c = self.target_channels
        h, w = self.target_size
        where = "" if self.size is not None else " (the first image's size)"
        pp = getattr(self, "preprocess", None)
        first = "" if pp is None or (pp.resize is None and pp.crop is None) else \
            " · ".join(pp.describe().split(" · ")[: (pp.resize is not None) + (pp.crop is not None)]) + " · then "
        text = f"convert to {_MODES[c]} ({c} channel{'s' if c > 1 else ''}) · {first}resize to {h}×{w} if needed" \
               f"{where}, PIL bilinear · scale to [0, 1]"
        if self.mean is not None or self.std is not None:
            text += f" · (x − {_rounded(self.mean) if self.mean is not None else 0}) / " \
                    f"{_rounded(self.std) if self.std is not None else 1}"
        return text

    def describe(self) -> dict[str, object]:
        stats = []
        for rel, _ in self._all:
            try:
                st = os.stat(self.root / rel)
                stats.append((rel, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append((rel, -1, -1))
        c = self.target_channels
        pp = getattr(self, "preprocess", None)
        return dict(kind="image-folder", name=self.name, root=os.fspath(self.root), inputs=len(self),
                    input_shape=[c, *self.target_size], classes=self.classes, transform=self.transform_text(),
                    fingerprint=fingerprint(stats, self.transform_text()),
                    skipped=[list(s) for s in self._scan_skipped],
                    preprocess=pp.to_dict() if pp is not None else None)

    def load(self, index: int) -> torch.Tensor:
        """One image (by position among the readable ones) through the transform: ``(C, H, W)`` float32."""
        from PIL import Image

        rel = self._all[int(self._readable[index])][0]
        c = self.target_channels
        h, w = self.target_size
        with Image.open(self.root / rel) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im, dtype=np.float32)
                hi = 65535.0 if im.mode.startswith("I;16") else (float(arr.max()) or 1.0)
                im = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), mode="L")
            im = im.convert(_MODES[c])
            if getattr(self, "preprocess", None) is not None:
                im = self.preprocess.resize_crop_image(im)  # type: ignore[union-attr]
            if (im.height, im.width) != (h, w):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
        x = torch.from_numpy(arr.reshape(h, w, c).transpose(2, 0, 1).copy())
        if self.mean is not None:
            x = x - self.mean.reshape(-1, 1, 1)
        if self.std is not None:
            x = x / self.std.reshape(-1, 1, 1)
        return x

    def iter_batches(self, batch_size: int, which: Sequence[int] | None = None) -> Iterator[tuple[int, Batch]]:
        check_batch_size(batch_size)
        c = self.target_channels
        h, w = self.target_size
        for b, lo, hi in batch_ranges(len(self), batch_size, which):
            xs, ids, labels = [], [], []
            for pos in range(lo, hi):
                i = int(self._readable[pos])
                rel, label = self._all[i]
                try:
                    xs.append(self.load(pos))
                except Exception as e:  # a file that decodes badly is skipped and listed
                    self._load_skipped.append((rel, _reason(e)))
                    continue
                ids.append(i)
                labels.append(label)
            inputs = torch.stack(xs) if xs else torch.zeros((0, c, h, w))
            yield b, Batch(torch.tensor(ids, dtype=torch.int64), inputs, torch.tensor(labels, dtype=torch.int64))

    def path_of(self, id_: int) -> Path:
        """The file of input ``id_``."""
        return self.root / self._all[int(id_)][0]

