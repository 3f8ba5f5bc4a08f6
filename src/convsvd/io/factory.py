"""``"package.module:factory"`` specs: build the model in code, optionally load weights.

The factory is any callable reachable as ``module:attribute`` (the attribute may
be dotted, ``"pkg.models:Net.small"``) that takes no arguments and returns an
``nn.Module``. Weights, when given, are a state dict / safetensors file (or a
folder of safetensors shards) loaded with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.io._common import describe_error, name_list
from convsvd.io.checkpoint import CHECKPOINT_SUFFIXES, read_checkpoint, state_dict_from_object
from convsvd.io.module import from_module
from convsvd.io.safetensors_io import SAFETENSORS_SUFFIX, read_safetensors_path
from convsvd.io.spec import ModelWeights
from convsvd.io.state_dict import strip_wrapper_prefix

_IDENT = r"[A-Za-z_]\w*"
_SPEC = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")


def is_factory_spec(text: str) -> bool:
    """True when ``text`` has the form ``"package.module:factory"``.

    >>> is_factory_spec("mypkg.models:make_cnn"), is_factory_spec("model.pt")
    (True, False)
    """
    return bool(_SPEC.match(text))


def resolve_factory(spec: str) -> Callable[[], object]:
    """The callable named by ``spec`` (imports its module).

    Raises
    ------
    InputError
        When ``spec`` is malformed, its module does not import, or the attribute
        is missing or not callable.
    """
    if not is_factory_spec(spec):
        raise InputError(f"{spec}: not a 'package.module:factory' spec")
    module_name, _, attr_path = spec.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # an import can fail with any error raised by the module's code
        raise InputError(f"{spec}: cannot import module {module_name!r} ({describe_error(exc)})") from exc
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        raise InputError(f"{spec}: importing module {module_name!r} {_exit_words(exc)}") from None
    parts = attr_path.split(".")
    for i, part in enumerate(parts):
        if not hasattr(target, part):
            owner = f"module {module_name!r}" if i == 0 else repr(f"{module_name}:{'.'.join(parts[:i])}")
            raise InputError(f"{spec}: {owner} has no attribute {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise InputError(f"{spec}: {attr_path!r} is a {type(target).__name__}, not a callable that returns an nn.Module")
    return target


def _exit_words(exc: BaseException) -> str:
    """What a ``SystemExit`` / ``KeyboardInterrupt`` raised by user code means, for one line."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}); expected it to return an nn.Module"
    return f"raised {type(exc).__name__}; expected it to return an nn.Module"


def build_from_factory(spec: str) -> nn.Module:
    """Call the factory named by ``spec`` with no arguments and check it returns a module.

    Raises
    ------
    InputError
        As :func:`resolve_factory`, when the call raises, or when the result is not an ``nn.Module``.
    """
    factory = resolve_factory(spec)
    try:
        model = factory()
    except Exception as exc:
        raise InputError(f"{spec}: calling the factory with no arguments failed ({describe_error(exc)})") from exc
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:  # a factory must not end or interrupt the run
        raise InputError(f"{spec}: calling the factory {_exit_words(exc)}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec}: the factory returned a {type(model).__name__}, expected a torch.nn.Module")
    return model


def read_state_dict_file(path: Path, *, trust_pickle: bool = False) -> dict[str, object]:
    """The state dict of a checkpoint or safetensors file (or folder of shards).

    Raises
    ------
    InputError
        Missing path, unsupported file type, unreadable file (see the readers).
    UnsafeFileError
        A checkpoint that holds pickled objects, unless ``trust_pickle``.
    """
    if not path.exists():
        raise InputError(f"{path}: no such weights file")
    if path.is_dir() or path.suffix.lower() == SAFETENSORS_SUFFIX:
        return dict(read_safetensors_path(path))
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return state_dict_from_object(read_checkpoint(path, trust_pickle=trust_pickle), str(path))
    accepted = ", ".join((*CHECKPOINT_SUFFIXES, SAFETENSORS_SUFFIX))
    raise InputError(f"{path}: unknown weights file type {path.suffix or '(none)'!r} (accepted: {accepted}, or a folder of safetensors shards)")


def _matching_keys(state: Mapping[str, object], expected: set[str]) -> dict[str, object]:
    """``state`` as is, or without a DataParallel/compile prefix when that matches the model better."""
    stripped = strip_wrapper_prefix(state)
    if set(state) == expected:
        return dict(state)
    return stripped if len(set(stripped) & expected) > len(set(state) & expected) else dict(state)


def load_weights_into(model: nn.Module, state: Mapping[str, object], source: str, target: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with one-line errors.

    Parameters
    ----------
    model : nn.Module
    state : Mapping[str, object]
        Names to tensors; non-tensor entries are ignored.
    source, target : str
        How the weights and the model are named in error messages.

    Raises
    ------
    InputError
        Naming the missing / unexpected keys (a few) or the mismatched shapes.
    """
    own = model.state_dict()
    tensors = {k: v for k, v in _matching_keys(state, set(own)).items() if isinstance(v, torch.Tensor)}
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {name_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {name_list(unexpected)}")
        raise InputError(f"{source}: does not match the model of {target}: {'; '.join(parts)}")
    shapes = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if not _is_uninitialized(v) and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    if shapes:
        raise InputError(f"{source}: shapes do not match the model of {target} (file vs model): {name_list(shapes)}")
    try:
        model.load_state_dict(tensors, strict=True)
    except Exception as exc:
        raise InputError(f"{source}: cannot be loaded into the model of {target} ({describe_error(exc)})") from exc


def _is_uninitialized(t: torch.Tensor) -> bool:
    return nn.parameter.is_lazy(t)


def load_factory(spec: str, weights: PathLike | None = None, *, trust_pickle: bool = False) -> ModelWeights:
    """Build a model from a ``"package.module:factory"`` spec, load weights, list its layers.

    Parameters
    ----------
    spec : str
        ``"package.module:factory"``; the callable is called with no arguments.
    weights : path-like, optional
        A state dict (``.pt``/``.pth``/``.bin``/``.ckpt``) or safetensors file or
        folder, loaded with ``strict=True`` (nested ``{"state_dict": ...}`` and a
        ``module.`` prefix are handled).
    trust_pickle : bool
        Allow a weights checkpoint that holds pickled objects (can run code).

    Returns
    -------
    ModelWeights
        ``format="factory"``; the model is in eval mode and kept in ``.model``.

    >>> load_factory("torch.nn:Identity")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    convsvd.errors.InputError: model 'torch.nn:Identity': has no convolutional or linear layer to analyse
    """
    model = build_from_factory(spec)
    if weights is not None:
        path = Path(weights).expanduser()
        load_weights_into(model, read_state_dict_file(path, trust_pickle=trust_pickle), str(path), spec)
    model.eval()
    return dataclasses.replace(from_module(model, source=spec), format="factory")
