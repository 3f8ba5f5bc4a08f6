"""Input preprocessing: resize the short side, centre-crop, normalise per channel.

The torchvision convention, implemented with PIL and torch (torchvision is not
needed):

1. **resize** ``S`` (an int): the short side becomes ``S``, the long side
   ``int(S · long / short)`` (truncated), bilinear; ``(H, W)``: exactly that size.
   Images (an image folder) are resized by PIL (``Image.BILINEAR``, which
   antialiases when shrinking), tensors by ``F.interpolate(mode="bilinear",
   antialias=True)``.
2. **crop** ``(H, W)``: the centre ``H×W`` window, top-left corner at
   ``(round((h − H) / 2), round((w − W) / 2))``.
3. **scale** 8-bit values to ``[0, 1]`` (image folders; tensors are taken as given).
4. **normalise** ``(x − mean) / std`` per channel.

Presets (:data:`PRESETS`): ``imagenet`` (mean 0.485, 0.456, 0.406, std 0.229,
0.224, 0.225, resize 256, crop 224: torchvision's ImageNet evaluation
transform), ``mnist`` (mean 0.1307, std 0.3081), ``none``.

On the command line (:func:`parse_normalize`): ``--normalize imagenet``,
``--normalize 0.1307/0.3081`` or ``--normalize 0.485,0.456,0.406/0.229,0.224,0.225``
(per-channel MEAN list ``/`` STD list), with ``--resize S`` and ``--crop S`` or
``--crop HxW``.

A model may carry its own preprocessing (:func:`from_model`): ONNX
``metadata_props`` (``mean``/``std`` or ``image_mean``/``image_std`` as JSON or
comma lists, ``resize``, ``crop``) or a Hugging Face ``preprocessor_config.json``
beside a safetensors file or in its folder (``image_mean``, ``image_std``,
``size``, ``crop_size`` and their ``do_*`` switches).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from convsvd.data.protocol import Batch, DataSource, ExpectedInput, fingerprint
from convsvd.errors import InputError

__all__ = ["PRESETS", "Preprocess", "PreprocessedData", "apply", "from_hf_config", "from_metadata", "from_model",
           "parse_normalize", "parse_size", "resolve"]

Size = tuple[int, int]


@dataclass(frozen=True)
class Preprocess:
    """What is done to every input before the model sees it (see the module docstring).

    Parameters
    ----------
    mean, std : tuple of float, optional
        Per channel (one value: every channel).
    resize : int or (int, int), optional
        Short side, or an exact ``(H, W)``.
    crop : (int, int), optional
        Centre crop ``(H, W)``.
    name : str
        A preset's name, or ``"custom"``.
    origin : str
        Where it came from (``"--normalize"``, ``"ONNX metadata"``, ...).

    >>> p = PRESETS["mnist"]
    >>> p.normalize(torch.full((1, 1, 2, 2), 0.1307)).abs().max().item() < 1e-7
    True
    >>> p.describe()
    '(x − [0.1307]) / [0.3081] per channel'
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | Size | None = None
    crop: Size | None = None
    name: str = "custom"
    origin: str = ""

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise InputError(f"preprocess {self.name!r}: give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if not self.mean or len(self.mean) != len(self.std):
                raise InputError(f"preprocess {self.name!r}: mean {list(self.mean)} and std {list(self.std)} need "
                                 f"the same number of values (one per channel)")
            if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std) <= 0:
                raise InputError(f"preprocess {self.name!r}: std {list(self.std)} must be positive and finite")
        for what, v in (("resize", self.resize), ("crop", self.crop)):
            sides = (v,) if isinstance(v, int) else (v or ())
            if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sides):
                raise InputError(f"{what} {v!r}: expected positive pixel sizes")

    # ------------------------------------------------------------------ what it does

    @property
    def is_identity(self) -> bool:
        """True when nothing is changed."""
        return self.mean is None and self.resize is None and self.crop is None

    @property
    def out_size(self) -> Size | None:
        """``(H, W)`` of every output, when it is fixed (a crop, or an exact resize)."""
        if self.crop is not None:
            return self.crop
        return self.resize if isinstance(self.resize, tuple) else None

    def describe(self) -> str:
        """One line, e.g. ``"resize short side to 256 · centre-crop 224×224 · (x − [0.1307]) / [0.3081] per channel"``."""
        parts = []
        if isinstance(self.resize, int):
            parts.append(f"resize short side to {self.resize} (bilinear)")
        elif self.resize is not None:
            parts.append(f"resize to {self.resize[0]}×{self.resize[1]} (bilinear)")
        if self.crop is not None:
            parts.append(f"centre-crop {self.crop[0]}×{self.crop[1]}")
        if self.mean is not None:
            parts.append(f"(x − {list(self.mean)}) / {list(self.std or ())} per channel")
        return " · ".join(parts) if parts else "none"

    def to_dict(self) -> dict[str, object]:
        """JSON-able record (for manifests), with the one-line description."""
        d = asdict(self)
        d["describe"] = self.describe()
        return d

    def _stats(self, channels: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mean is not None and self.std is not None
        if len(self.mean) not in (1, channels):
            raise InputError(f"preprocess {self.name!r}: mean/std have {len(self.mean)} values, the inputs have "
                             f"{channels} channels")
        shape = (-1,) + (1,) * (like.dim() - 2)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).reshape(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).reshape(shape)
        return mean, std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` per channel of ``x`` ``(N, C, *spatial)``."""
        if self.mean is None:
            return x
        mean, std = self._stats(int(x.shape[1]), x)
        return (x - mean) / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The normalisation (a feature visualisation's ``preprocess``: its images are already sized)."""
        return self.normalize(x)

    def resized_size(self, h: int, w: int) -> Size:
        """The size after the resize step, torchvision's rule (short side to ``S``, the other truncated)."""
        if self.resize is None:
            return h, w
        if isinstance(self.resize, tuple):
            return self.resize
        s = self.resize
        return (int(s * h / w), s) if w <= h else (s, int(s * w / h))

    def crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the centre crop of an ``h×w`` image."""
        if self.crop is None:
            return 0, 0, h, w
        ch, cw = self.crop
        if ch > h or cw > w:
            raise InputError(f"crop {ch}×{cw}: larger than the {h}×{w} image (resize first: --resize)")
        return int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw

    def resize_crop_image(self, image: "PIL.Image.Image") -> "PIL.Image.Image":  # type: ignore[name-defined]  # noqa: F821
        """Resize and centre-crop a PIL image."""
        from PIL import Image

        h, w = self.resized_size(image.height, image.width)
        if (h, w) != (image.height, image.width):
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        top, left, ch, cw = self.crop_box(h, w)
        if (ch, cw) != (h, w):
            image = image.crop((left, top, left + cw, top + ch))
        return image

    def resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Resize and centre-crop a batch ``(N, C, H, W)``."""
        if self.resize is None and self.crop is None:
            return x
        if x.dim() != 4:
            raise InputError(f"resize/crop: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        h, w = self.resized_size(int(x.shape[2]), int(x.shape[3]))
        if (h, w) != tuple(x.shape[2:]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        top, left, ch, cw = self.crop_box(h, w)
        return x[:, :, top:top + ch, left:left + cw]

    def __add__(self, other: "Preprocess") -> "Preprocess":
        """``other``'s settings where it has them, else this one's (explicit options over a preset or metadata)."""
        mean, std = (other.mean, other.std) if other.mean is not None else (self.mean, self.std)
        return Preprocess(mean, std, other.resize if other.resize is not None else self.resize,
                          other.crop if other.crop is not None else self.crop,
                          other.name if other.name != "custom" or self.is_identity else self.name,
                          " + ".join(o for o in (self.origin, other.origin) if o))


#: Named transforms (``--normalize NAME``).
PRESETS: dict[str, Preprocess] = {
    "imagenet": Preprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256, (224, 224), "imagenet"),
    "mnist": Preprocess((0.1307,), (0.3081,), name="mnist"),
    "none": Preprocess(name="none"),
}


# --------------------------------------------------------------------------- parsing


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        values = ()
    if not values:
        raise InputError(f"{what} {text!r}: expected comma-separated numbers")
    return values


def parse_normalize(text: str) -> Preprocess:
    """``--normalize``: a preset name, or ``MEAN/STD`` with comma-separated per-channel lists.

    >>> parse_normalize("0.5,0.5,0.5/0.25,0.25,0.25").mean
    (0.5, 0.5, 0.5)
    >>> parse_normalize("imagenet").crop
    (224, 224)
    """
    key = text.strip().lower()
    if key in PRESETS:
        return replace(PRESETS[key], origin=f"--normalize {key}")
    mean, sep, std = text.partition("/")
    if not sep:
        raise InputError(f"--normalize {text!r}: expected {', '.join(PRESETS)} or MEAN/STD "
                         f"(e.g. 0.1307/0.3081, or 0.485,0.456,0.406/0.229,0.224,0.225)")
    return Preprocess(_floats(mean, "--normalize mean"), _floats(std, "--normalize std"), origin="--normalize")


def parse_size(text: str | int | None, what: str) -> Size | None:
    """``"224"`` → ``(224, 224)``; ``"224x256"`` → ``(224, 256)``; None stays None."""
    if text is None:
        return None
    raw = str(text).lower().replace("×", "x")
    try:
        sides = tuple(int(t) for t in raw.split("x"))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or min(sides) < 1:
        raise InputError(f"{what} {text!r}: expected a side in pixels (224) or HxW (224x256)")
    return sides


def resolve(normalize: str | None = None, resize: str | int | None = None, crop: str | int | None = None,
            model: object | None = None) -> Preprocess:
    """The transform of a run: the model's own (:func:`from_model`), overridden by the options given.

    ``--normalize none`` drops the model's normalisation (resize and crop stay unless given).

    >>> resolve("mnist", crop="6").describe()
    'centre-crop 6×6 · (x − [0.1307]) / [0.3081] per channel'
    """
    base = from_model(model) if model is not None else None
    base = base or Preprocess(name="none")
    given = parse_normalize(normalize) if normalize is not None else Preprocess()
    if normalize is not None and normalize.strip().lower() == "none":
        base = replace(base, mean=None, std=None)
    r: int | Size | None = None
    if resize is not None:
        size = parse_size(resize, "--resize")
        assert size is not None
        r = size[0] if "x" not in str(resize).lower() and "×" not in str(resize) else size
    explicit = Preprocess(given.mean, given.std, r if r is not None else given.resize,
                          parse_size(crop, "--crop") if crop is not None else given.crop, given.name,
                          "options" if (normalize, resize, crop) != (None, None, None) else "")
    return base + explicit


# --------------------------------------------------------------------------- from the model


def _number_list(value: Any) -> tuple[float, ...] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [v for v in value.replace(" ", "").strip("[]()").split(",") if v]
    if isinstance(value, (int, float)):
        value = [value]
    try:
        return tuple(float(v) for v in value) if value else None
    except (TypeError, ValueError):
        return None


def _side(value: Any) -> int | Size | None:
    """A size entry: an int (short side), ``{"shortest_edge": S}``, ``{"height": H, "width": W}`` or ``"HxW"``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            size = parse_size(value, "size")
            return size[0] if size and size[0] == size[1] and "x" not in value.lower() else size
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    return None


def from_metadata(meta: Mapping[str, str], origin: str = "ONNX metadata") -> Preprocess | None:
    """The preprocessing an ONNX model's ``metadata_props`` state, or None.

    Keys (case-insensitive): ``mean``/``image_mean`` and ``std``/``image_std``
    (JSON or comma lists), ``resize``/``resize_size``, ``crop``/``crop_size``.

    >>> from_metadata({"image_mean": "[0.5]", "image_std": "[0.25]"}).describe()
    '(x − [0.5]) / [0.25] per channel'
    """
    low = {k.lower(): v for k, v in meta.items()}

    def get(*keys: str) -> str | None:
        return next((low[k] for k in keys if k in low), None)

    mean, std = _number_list(get("mean", "image_mean")), _number_list(get("std", "image_std"))
    resize = _side(get("resize", "resize_size")) if get("resize", "resize_size") else None
    crop = _side(get("crop", "crop_size")) if get("crop", "crop_size") else None
    if isinstance(crop, int):
        crop = (crop, crop)
    if mean is None and resize is None and crop is None:
        return None
    try:
        return Preprocess(mean, std if mean is not None else None, resize, crop, origin=origin)
    except InputError as e:
        raise InputError(f"{origin}: {e}") from None


def from_hf_config(path: Path) -> Preprocess | None:
    """The preprocessing of a Hugging Face ``preprocessor_config.json``, or None when it states none."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{os.fspath(path)}: not a readable preprocessor config ({e})") from None
    if not isinstance(cfg, dict):
        return None
    mean = _number_list(cfg.get("image_mean")) if cfg.get("do_normalize", True) else None
    std = _number_list(cfg.get("image_std")) if mean is not None else None
    resize = _side(cfg.get("size")) if cfg.get("do_resize", "size" in cfg) else None
    crop = _side(cfg.get("crop_size")) if cfg.get("do_center_crop", False) else None
    if isinstance(crop, int):
        crop = (crop, crop)
    if mean is None and resize is None and crop is None:
        return None
    return Preprocess(mean, std, resize, crop, origin=os.fspath(path))


def from_model(model: object) -> Preprocess | None:
    """The preprocessing a model states: an ONNX model's metadata, or a ``preprocessor_config.json``
    beside a safetensors file or in its folder; None when it states none.

    ``model`` is a :class:`~convsvd.io.ModelWeights` (or anything with ``source``
    and, for ONNX, ``model.metadata``).
    """
    module = getattr(model, "model", None)
    meta = getattr(module, "metadata", None)
    if isinstance(meta, Mapping) and meta:
        found = from_metadata(meta)
        if found is not None:
            return found
    source = getattr(model, "source", None)
    if getattr(model, "format", None) == "safetensors" and isinstance(source, str):
        p = Path(source)
        for folder in (p, p.parent) if p.is_dir() else (p.parent,):
            cfg = folder / "preprocessor_config.json"
            if cfg.is_file():
                return from_hf_config(cfg)
    return None


# --------------------------------------------------------------------------- applied to data


class PreprocessedData:
    """A :class:`~convsvd.data.DataSource` whose batches go through a :class:`Preprocess`.

    Anything else (``classes``, ``fixed_batch_size``, ``path_of``, ...) is the wrapped source's.

    >>> from convsvd.data import ArrayData
    >>> src = PreprocessedData(ArrayData(torch.ones(4, 1, 8, 8)), Preprocess((0.5,), (0.5,), crop=(4, 4)))
    >>> next(src.iter_batches(4))[1].inputs.shape, src.describe()["input_shape"]
    (torch.Size([4, 1, 4, 4]), [1, 4, 4])
    """

    def __init__(self, source: DataSource, transform: Preprocess) -> None:
        self.source = source
        self.transform = transform
        self.name = source.name
        self.classes = source.classes

    def __getattr__(self, name: str) -> object:
        if name in ("source", "transform"):
            raise AttributeError(name)
        return getattr(self.source, name)

    def __len__(self) -> int:
        return len(self.source)

    def __repr__(self) -> str:
        return f"PreprocessedData({self.source!r}, {self.transform.describe()!r})"

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.source.skipped

    def num_batches(self, batch_size: int) -> int | None:
        return self.source.num_batches(batch_size)

    def iter_batches(self, batch_size: int, which: Sequence[int] | None = None) -> Iterator[tuple[int, Batch]]:
        t = self.transform
        for b, batch in self.source.iter_batches(batch_size, which):
            x = batch.inputs
            if x.shape[0]:
                x = t.normalize(t.resize_crop(x))
            yield b, Batch(batch.ids, x, batch.labels)

    def conform(self, expected: ExpectedInput) -> "PreprocessedData":
        """Check what the transform gives against what the model takes."""
        size = self.transform.out_size
        if size is None or expected.spatial is None:
            inner = expected if size is None else ExpectedInput(expected.layer, expected.kind, expected.channels)
            return PreprocessedData(self.source.conform(inner), self.transform)
        if tuple(size) != tuple(expected.spatial):
            raise InputError(f"{self.transform.describe()}: gives {size[0]}×{size[1]} inputs, model expects "
                             f"{expected.describe()}")
        return PreprocessedData(self.source.conform(ExpectedInput(expected.layer, expected.kind, expected.channels)),
                                self.transform)

    def describe(self) -> dict[str, object]:
        d = dict(self.source.describe())
        inner = str(d.get("transform", ""))
        d["transform"] = f"{inner} · then {self.transform.describe()}" if inner else self.transform.describe()
        d["preprocess"] = self.transform.to_dict()
        shape = d.get("input_shape")
        if isinstance(shape, list) and len(shape) == 3 and self.transform.out_size is not None:
            d["input_shape"] = [shape[0], *self.transform.out_size]
        d["fingerprint"] = fingerprint(d.get("fingerprint"), self.transform.describe())
        return d


def apply(data: object, transform: Preprocess | None) -> DataSource:
    """``data`` (anything :func:`~convsvd.data.as_source` takes) with ``transform`` applied to every input.

    An image folder applies it to each image (resize and crop by PIL, before scaling
    to ``[0, 1]``); any other source to its batches. ``None`` or an identity
    transform leaves the source as it is (but recorded, for an image folder).
    """
    from convsvd.data.folder import ImageFolder
    from convsvd.data.sources import as_source

    source = as_source(data)
    if transform is None:
        return source
    if isinstance(source, ImageFolder):
        return source.with_preprocess(transform)
    if transform.is_identity:
        return source
    return PreprocessedData(source, transform)
