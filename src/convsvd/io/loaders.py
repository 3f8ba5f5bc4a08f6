"""One entry point, :func:`load`, for every model source.

Which reader handles a source is decided here and only here: an ``nn.Module``,
a file by its name ending (:data:`FILE_LOADERS`), a folder (safetensors shards)
or a ``"package.module:factory"`` spec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

from torch import nn

from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.io.checkpoint import CHECKPOINT_SUFFIXES, load_checkpoint
from convsvd.io.factory import is_factory_spec, load_factory
from convsvd.io.module import from_module
from convsvd.io.onnx_io import ONNX_SUFFIX, load_onnx
from convsvd.io.safetensors_io import SAFETENSORS_SUFFIX, load_safetensors
from convsvd.io.spec import ModelWeights

#: Everything :func:`load` accepts.
ModelSource = Union[nn.Module, str, "os.PathLike[str]"]

FileLoader = Callable[[Path, bool], ModelWeights]

#: Reader for each accepted file name ending (lower case); ``bool`` is ``trust_pickle``.
FILE_LOADERS: dict[str, FileLoader] = {
    **{suffix: (lambda path, trust: load_checkpoint(path, trust_pickle=trust)) for suffix in CHECKPOINT_SUFFIXES},
    SAFETENSORS_SUFFIX: lambda path, trust: load_safetensors(path),
    ONNX_SUFFIX: lambda path, trust: load_onnx(path),
}

#: Accepted file name endings, for messages and CLI help.
ACCEPTED_SUFFIXES: tuple[str, ...] = tuple(FILE_LOADERS)


def _accepted() -> str:
    return f"{', '.join(ACCEPTED_SUFFIXES)}, or a folder of {SAFETENSORS_SUFFIX} shards"


def load_path(path: PathLike, *, trust_pickle: bool = False) -> ModelWeights:
    """Layers of a model file or folder, chosen by its name ending.

    Parameters
    ----------
    path : path-like
        A ``.pt``/``.pth``/``.bin``/``.ckpt`` checkpoint, a ``.safetensors`` file,
        an ``.onnx`` file, or a folder of ``.safetensors`` shards.
    trust_pickle : bool
        Allow checkpoints that hold pickled Python objects (can run code).

    Raises
    ------
    InputError
        Missing or empty path, unknown name ending, unreadable file, nothing to analyse.
    UnsafeFileError
        A checkpoint holding pickled objects while ``trust_pickle`` is False.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return load_safetensors(path)
    loader = FILE_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise InputError(f"{path}: unknown model file type {path.suffix or '(no extension)'!r} (accepted: {_accepted()})")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    return loader(path, trust_pickle)


def _looks_like_path(text: str) -> bool:
    return Path(text).suffix.lower() in FILE_LOADERS or "/" in text or os.sep in text


def load(source: ModelSource, *, weights: PathLike | None = None, trust_pickle: bool = False) -> ModelWeights:
    """Every linear map of a model, whatever its source, as one :class:`ModelWeights`.

    Parameters
    ----------
    source : nn.Module, str or path-like
        * an ``nn.Module``: its Linear / Conv / ConvTranspose modules, with geometry;
        * a checkpoint / state-dict file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``),
          read with ``weights_only=True``; a ``.safetensors`` file; or a folder of
          ``.safetensors`` shards: weight-only analysis, geometry inferred;
        * an ``.onnx`` file: Conv, ConvTranspose, Gemm and MatMul layers, with geometry;
        * ``"package.module:factory"``: a callable returning an ``nn.Module``.
    weights : path-like, optional
        With a factory spec only: a state dict or safetensors file to load into
        the built model (``strict=True``).
    trust_pickle : bool
        Allow a checkpoint that holds pickled Python objects (a whole pickled
        model, custom classes); unpickling can run code from the file.

    Returns
    -------
    ModelWeights
        Layers in source order, plus what was skipped and why.

    Raises
    ------
    InputError
        A one-line message naming the source and what was expected.
    UnsafeFileError
        A checkpoint holding pickled objects while ``trust_pickle`` is False.

    >>> from torch import nn
    >>> load(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))).names
    ['0', '2']
    """
    if isinstance(source, nn.Module):
        if weights is not None:
            raise InputError("weights: only used with a 'package.module:factory' spec (load them into your module yourself)")
        return from_module(source)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"model: expected an nn.Module, a path or a 'package.module:factory' spec, got {type(source).__name__}")
    text = os.fspath(source)
    if not isinstance(text, str):
        raise InputError(f"model: expected a text path, got {type(text).__name__}")
    path = Path(text).expanduser()
    if isinstance(source, str) and not path.exists():
        if is_factory_spec(text):
            return load_factory(text, weights, trust_pickle=trust_pickle)
        if not _looks_like_path(text):
            raise InputError(f"{text}: no such file, and not a 'package.module:factory' spec")
    elif weights is not None and path.exists():
        raise InputError(f"weights: only used with a 'package.module:factory' spec, not with {text!r}")
    return load_path(path, trust_pickle=trust_pickle)
