"""Weight-only analysis of a state dict: names and shapes decide, nothing is guessed.

A state dict carries no architecture, so each ``*.weight`` tensor is read by its
number of dimensions (:data:`~convsvd.io.spec.KIND_BY_NDIM`) with the default
geometry (stride 1, padding 0, dilation 1, groups 1) and ``inferred=True``.
Everything that is not clearly a linear map is listed in ``skipped`` with the
reason.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from convsvd.errors import InputError
from convsvd.io._common import skipped_summary
from convsvd.io.spec import KIND_BY_NDIM, LayerSpec, ModelWeights, SkippedParam, check_weight

#: Keys under which checkpoints commonly nest the state dict (tried in this order).
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model")

#: Prefixes that wrappers add to every key: DataParallel / DDP and ``torch.compile``.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

_NORM_BUFFERS = frozenset({"running_mean", "running_var", "num_batches_tracked"})
_NORM_TOKEN = re.compile(r"^(bn|ln|gn)\d*$")
_PARAMETRISED_LEAVES = frozenset({"weight_g", "weight_v", "weight_orig", "weight_u"})


def unwrap_state_dict(obj: object) -> object:
    """Follow ``{"state_dict": ...}``, ``{"model_state_dict": ...}`` and ``{"model": ...}``.

    Parameters
    ----------
    obj : object
        What a checkpoint file holds.

    Returns
    -------
    object
        The innermost mapping (or ``nn.Module``) found under a wrapper key, or
        ``obj`` itself when it is not wrapped.

    >>> unwrap_state_dict({"epoch": 3, "state_dict": {"fc.weight": 1}})
    {'fc.weight': 1}
    """
    for _ in range(8):  # a bound, in case of self-referencing dicts
        if not isinstance(obj, Mapping):
            return obj
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, (Mapping, nn.Module)):
                obj = inner
                break
        else:
            return obj
    return obj


def strip_wrapper_prefix(state: Mapping[str, object]) -> dict[str, object]:
    """Remove a :data:`WRAPPER_PREFIXES` prefix shared by *every* key (repeatedly).

    >>> list(strip_wrapper_prefix({"module.fc.weight": 0, "module.fc.bias": 0}))
    ['fc.weight', 'fc.bias']
    """
    out = {str(k): v for k, v in state.items()}
    changed = True
    while changed and out:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def _is_norm_name(stem: str) -> bool:
    """True when the module owning the parameter is named like a norm layer.

    Only the last module name counts (``layer1.0.bn1`` yes, ``block.conv_bn.conv`` no).
    """
    owner = stem.rpartition(".")[2].lower()
    if "norm" in owner:
        return True
    return any(_NORM_TOKEN.match(tok) for tok in owner.split("_"))


def _skip_reason(key: str, value: object) -> str | None:
    """Why ``key`` is not the weight of a layer, or None when it is one."""
    if not isinstance(value, torch.Tensor):
        return f"not a tensor ({type(value).__name__})"
    stem, _, leaf = key.rpartition(".")
    if value.dim() == 0:
        return "scalar, not a linear map"
    if leaf in _NORM_BUFFERS:
        return "normalisation statistics (buffer), not a linear map"
    if "embed" in key.lower() and value.dim() < 3:  # a 3-5-D "patch_embed.proj.weight" is a conv
        return "embedding table, not a linear map"
    if _is_norm_name(stem):
        return "normalisation parameter, not a linear map"
    if leaf != "weight":
        if leaf == "bias":
            return "bias without a usable weight"
        if leaf in _PARAMETRISED_LEAVES or ".parametrizations." in f".{key}":
            return "parametrised weight (weight/spectral norm); load the model as a module to read the effective weight"
        return "not named '*.weight', so not read as a layer"
    if value.dim() == 1:
        return "1-D weight (a norm or scale), not a linear map"
    if value.dim() not in KIND_BY_NDIM:
        return f"{value.dim()}-D weight: no layer kind has this many dimensions"
    return None


def _bias_key(stem: str) -> str:
    return f"{stem}.bias" if stem else "bias"


def _bias_problem(bias: object, out: int) -> str | None:
    """Why a matching ``*.bias`` cannot be used with a layer of ``out`` outputs."""
    if not isinstance(bias, torch.Tensor):
        return f"not a tensor ({type(bias).__name__})"
    if tuple(bias.shape) != (out,):
        return f"bias of shape {tuple(bias.shape)} does not match the weight's {out} outputs"
    if not bias.is_floating_point():
        return f"bias dtype {bias.dtype} is not floating point"
    if not bool(torch.isfinite(bias).all()):
        return "bias has NaN/Inf entries; the layer is analysed without it"
    return None


def from_state_dict(state: Mapping[str, object], source: str = "<state_dict>", format: str = "state_dict") -> ModelWeights:
    """Linear maps of a state dict, read from names and shapes only.

    2-D tensors named ``*.weight`` are linear maps ``(out, in)``; 3/4/5-D ones are
    conv1d/2d/3d weights ``(d, c, *k)`` with stride 1, padding 0, dilation 1 and
    groups 1 (``inferred=True``: the file does not say). The bias is the matching
    ``*.bias`` key. The layer name is the key without ``.weight`` (``"<root>"`` for
    a bare ``"weight"``), after removing a ``module.`` / ``_orig_mod.`` prefix
    shared by every key. These go to ``skipped`` with the reason: embeddings
    (keys containing ``embed``, except 3-5-D weights such as a patch-embedding
    conv), norm parameters and buffers (``running_mean``, ``num_batches_tracked``;
    the owning module named ``*norm*``, ``bn*``, ``ln*``, ``gn*``), 1-D tensors,
    keys not named ``*.weight``, non-tensors, and unusable weights (NaN/Inf,
    zero-size, integer).

    Parameters
    ----------
    state : Mapping[str, object]
        Names to tensors, in the order layers should be listed.
    source : str
        How the input is named in results and error messages.
    format : str
        Recorded as :attr:`ModelWeights.format`.

    Returns
    -------
    ModelWeights

    Raises
    ------
    InputError
        When no 2–5-D weight tensor can be analysed.

    >>> import torch
    >>> mw = from_state_dict({"module.fc.weight": torch.ones(3, 4), "module.fc.bias": torch.zeros(3)})
    >>> mw.names, mw["fc"].kind, mw["fc"].bias.shape
    (['fc'], 'linear', torch.Size([3]))
    """
    state = strip_wrapper_prefix(state)
    reasons = {key: _skip_reason(key, value) for key, value in state.items()}
    # First pass: which biases belong to a layer (a bias may come before its weight).
    bias_of: dict[str, str] = {}
    for key, reason in reasons.items():
        if reason is None:
            weight = state[key]
            assert isinstance(weight, torch.Tensor)
            bkey = _bias_key(key.rpartition(".")[0])
            if bkey in state and check_weight(key, weight) is None:
                problem = _bias_problem(state[bkey], int(weight.shape[0]))
                if problem is None:
                    bias_of[key] = bkey
                else:
                    reasons[bkey] = problem
            elif bkey in state:
                reasons[bkey] = "bias of a skipped weight"

    used_biases = set(bias_of.values())
    layers: list[LayerSpec] = []
    skipped: list[SkippedParam] = []
    for key, value in state.items():
        if key in used_biases:
            continue
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
        reason = reasons[key]
        if reason is not None:
            if reason != "bias of a skipped weight":
                skipped.append(SkippedParam(key, shape, reason))
            continue
        assert isinstance(value, torch.Tensor)
        stem = key.rpartition(".")[0]
        name = stem or "<root>"
        bad = check_weight(name, value)
        if bad:
            skipped.append(SkippedParam(name, shape, bad))
            continue
        bias = state[bias_of[key]] if key in bias_of else None
        assert bias is None or isinstance(bias, torch.Tensor)  # bias_of pairs tensors only
        layers.append(_inferred_spec(name, value.detach(), None if bias is None else bias.detach()))
    if not layers:
        raise InputError(f"{source}: has no 2–5-D weight tensors to analyse{skipped_summary(skipped)}")
    return ModelWeights(tuple(layers), tuple(skipped), source=source, format=format)


def _inferred_spec(name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> LayerSpec:
    kind = KIND_BY_NDIM[weight.dim()]
    if kind == "linear":
        return LayerSpec(name, kind, weight, bias, inferred=True)
    n = weight.dim() - 2
    return LayerSpec(
        name=name,
        kind=kind,
        weight=weight,
        bias=bias,
        stride=(1,) * n,
        padding=(0,) * n,
        dilation=(1,) * n,
        groups=1,
        output_padding=(0,) * n,
        inferred=True,
    )
