"""Shared type aliases (importable from every module)."""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]
LayerKind = str  # "linear" | "conv1d" | "conv2d" | "conv3d" | "convtranspose1d" | ...

LAYER_KINDS: tuple[str, ...] = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "convtranspose1d",
    "convtranspose2d",
    "convtranspose3d",
)
