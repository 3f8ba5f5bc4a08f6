"""PyTorch checkpoint files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``), read safely.

Files are read with ``torch.load(..., weights_only=True)``, which only rebuilds
tensors and plain containers. A file that needs more (a pickled ``nn.Module``,
NumPy arrays, custom classes, a TorchScript archive) is refused with
:class:`~convsvd.errors.UnsafeFileError` unless the caller trusts it.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import BinaryIO, Mapping

import torch
from torch import nn

from convsvd.errors import InputError, UnsafeFileError
from convsvd.io._common import describe_error
from convsvd.io.module import from_module
from convsvd.io.spec import ModelWeights
from convsvd.io.state_dict import from_state_dict, unwrap_state_dict

#: File name endings read as PyTorch checkpoints.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".ckpt")

_PICKLE_WHY = "is a pickled Python object (unpickling can run code)"
_TORCHSCRIPT_WHY = "is a TorchScript archive (loading it runs its code)"
_ADVICE = "re-save the state_dict / use safetensors, or pass trust_pickle=True (CLI: --trust-pickle) if you trust the file"


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _is_pickle_stream(path: Path) -> bool:
    """True when ``path`` (or its ``data.pkl``) is a complete, well-formed pickle.

    ``pickletools.dis`` only parses opcodes and checks the stack and memo; it
    never imports or calls anything, so this is safe on untrusted files.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    return False
                stream: BinaryIO = io.BytesIO(zf.read(names[0]))
        else:
            stream = path.open("rb")  # read incrementally: legacy files hold the tensors too
        with stream:
            if stream.read(1) != b"\x80":  # PROTO opcode: every pickle of protocol >= 2
                return False
            stream.seek(0)
            pickletools.dis(stream, out=io.StringIO())
        return True
    except Exception:  # any parse failure means "not a pickle"
        return False


def verify_zip(path: Path) -> None:
    """Check the CRC-32 of every member of a zip-format checkpoint before anything is loaded.

    PyTorch's zip writer stores each member's CRC; ``torch.load`` does not check it, so
    flipped bytes in a tensor would load as wrong numbers. Reading every member once
    (``zipfile.ZipFile.testzip``) costs one pass over the file.

    Raises
    ------
    InputError
        A member's bytes do not match their CRC, or the archive's directory is damaged.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: damaged PyTorch checkpoint, its zip archive cannot be read "
                         f"({describe_error(exc)})") from exc
    except Exception as exc:  # zlib.error on a damaged compressed member, and the like
        raise InputError(f"{path}: damaged PyTorch checkpoint ({describe_error(exc)})") from exc
    if bad is not None:
        raise InputError(f"{path}: damaged PyTorch checkpoint, member {bad!r} fails its CRC-32 check "
                         "(the file was changed or truncated after it was written)")


def _holds_objects(path: Path, exc: BaseException) -> bool:
    """True when a safe load failed because the file holds Python objects (False: corrupt)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return False
    text = str(exc)
    return "Unsupported global" in text or "allowed global" in text or _is_pickle_stream(path)


def read_checkpoint(path: Path, *, trust_pickle: bool = False) -> object:
    """The object a checkpoint holds, loaded with ``weights_only=True`` first.

    Parameters
    ----------
    path : Path
        An existing file.
    trust_pickle : bool
        When the safe load is refused because the file holds Python objects,
        load it with ``weights_only=False`` (this can run code from the file).

    Returns
    -------
    object
        Usually a mapping of names to tensors; with ``trust_pickle`` possibly an
        ``nn.Module`` or any other object.

    Raises
    ------
    UnsafeFileError
        The file holds pickled objects or TorchScript and ``trust_pickle`` is False.
    InputError
        The file is not a readable checkpoint (truncated, corrupt, another format), or
        a zip-format file fails its CRC check (:func:`verify_zip`).
    """
    if zipfile.is_zipfile(path):
        verify_zip(path)
    if _is_torchscript(path):
        if not trust_pickle:
            raise UnsafeFileError(f"{path}: {_TORCHSCRIPT_WHY}; {_ADVICE}")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise InputError(f"{path}: not a readable TorchScript archive ({describe_error(exc)})") from exc
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")  # noise on refused plain pickles
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _holds_objects(path, exc):
            raise InputError(f"{path}: not a readable PyTorch checkpoint, perhaps truncated or corrupt ({describe_error(exc)})") from exc
        if not trust_pickle:
            raise UnsafeFileError(f"{path}: {_PICKLE_WHY}; {_ADVICE}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the trust the caller has given
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot unpickle the trusted file ({describe_error(exc)}); the classes it refers to must be importable") from exc


def weights_from_object(obj: object, source: str, format: str = "checkpoint") -> ModelWeights:
    """:class:`ModelWeights` of what a checkpoint holds: a (wrapped) state dict or a module.

    A TorchScript module is read through its ``state_dict()`` (its submodules are
    not ``nn.Conv2d`` etc., so geometry is inferred).
    """
    inner = unwrap_state_dict(obj)
    if isinstance(inner, torch.jit.ScriptModule):
        return from_state_dict(inner.state_dict(), source, format)
    if isinstance(inner, nn.Module):
        return dataclasses.replace(from_module(inner, source=source), format=format)
    if isinstance(inner, Mapping):
        return from_state_dict(inner, source, format)
    raise InputError(f"{source}: holds a {type(inner).__name__}, expected a state dict (names to tensors) or an nn.Module")


def state_dict_from_object(obj: object, source: str) -> dict[str, object]:
    """The state dict inside what a checkpoint holds (a module gives its ``state_dict()``)."""
    inner = unwrap_state_dict(obj)
    if isinstance(inner, nn.Module):
        return dict(inner.state_dict())
    if isinstance(inner, Mapping):
        return {str(k): v for k, v in inner.items()}
    raise InputError(f"{source}: holds a {type(inner).__name__}, expected a state dict (names to tensors) or an nn.Module")


def load_checkpoint(path: Path, *, trust_pickle: bool = False) -> ModelWeights:
    """Layers of a checkpoint file: a state dict (weight-only analysis) or a trusted pickled module.

    Nested ``{"state_dict": ...}``, ``{"model_state_dict": ...}`` and
    ``{"model": ...}`` are unwrapped; see :func:`~convsvd.io.state_dict.from_state_dict`.

    >>> import tempfile, torch
    >>> p = Path(tempfile.mkdtemp()) / "m.pt"
    >>> torch.save({"state_dict": {"fc.weight": torch.ones(2, 3)}}, p)
    >>> load_checkpoint(p).names
    ['fc']
    """
    return weights_from_object(read_checkpoint(path, trust_pickle=trust_pickle), str(path), "checkpoint")
