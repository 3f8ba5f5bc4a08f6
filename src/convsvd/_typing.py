"""Shared type aliases (importable from every module)."""

from __future__ import annotations

import os
from typing import Any, Literal, Union

PathLike = Union[str, "os.PathLike[str]"]
#: A decoded JSON document (a run manifest, a shard's identity or footer): its values are whatever
#: JSON holds, checked where they are read, so they are typed ``Any``.
JsonDict = dict[str, Any]
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

# Option values as Literal types: the API's annotations, the checks (``_validate.choice``) and the CLI's
# choices (``typing.get_args``) all come from these, so no list of choices is written twice. This module
# imports no torch, so the CLI's parser can use them without loading it.
View = Literal["unfold", "slices", "operator"]
Aggregation = Literal["mean", "max", "abs", "l2"]
Direction = Literal["both", "+", "-"]
Location = Literal["mean", "centre"]
DTypeName = Literal["float32", "float64"]
Mode = Literal["full", "values", "topk"]
