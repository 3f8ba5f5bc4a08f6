"""safetensors files and folders of sharded safetensors files.

safetensors stores no Python objects, so reading is always safe. The format
does not keep the order in which tensors were saved (its header is sorted), so
keys are listed in natural order (``layer.2`` before ``layer.10``) within each
file, and shards in sorted file-name order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from convsvd.errors import InputError
from convsvd.io._common import describe_error, natural_key
from convsvd.io.spec import ModelWeights
from convsvd.io.state_dict import from_state_dict

#: File name ending read as safetensors.
SAFETENSORS_SUFFIX = ".safetensors"


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors file on the CPU, keys in natural order.

    Raises
    ------
    InputError
        When the file is not a valid safetensors file (truncated, corrupt).
    """
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise InputError(f"{path}: not a readable safetensors file, perhaps truncated or corrupt ({describe_error(exc)})") from exc
    return {k: tensors[k] for k in sorted(tensors, key=natural_key)}


def shard_files(folder: Path) -> list[Path]:
    """The ``*.safetensors`` files of a folder in sorted order (an index json is ignored).

    Raises
    ------
    InputError
        When the folder holds no safetensors file.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SAFETENSORS_SUFFIX))
    if not files:
        raise InputError(f"{folder}: folder has no *{SAFETENSORS_SUFFIX} files (a folder is read as sharded safetensors)")
    return files


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the shards of ``folder``: shard by shard, natural order within each.

    Raises
    ------
    InputError
        When the folder has no shard, a shard is unreadable, or a key appears twice.
    """
    merged: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for shard in shard_files(folder):
        for key, tensor in read_safetensors(shard).items():
            if key in merged:
                raise InputError(f"{folder}: tensor {key!r} is in both {origin[key].name} and {shard.name}")
            merged[key] = tensor
            origin[key] = shard
    return merged


def read_safetensors_path(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, or of a folder of shards."""
    return read_safetensors_folder(path) if path.is_dir() else read_safetensors(path)


def load_safetensors(path: Path) -> ModelWeights:
    """Layers of a safetensors file or folder of shards (weight-only analysis).

    See :func:`~convsvd.io.state_dict.from_state_dict` for how tensors become layers.

    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> p = Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> save_file({"conv.weight": torch.ones(4, 3, 3, 3)}, str(p))
    >>> load_safetensors(p)["conv"].kind
    'conv2d'
    """
    return from_state_dict(read_safetensors_path(path), str(path), "safetensors")
