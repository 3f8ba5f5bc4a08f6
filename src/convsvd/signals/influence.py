"""Influential SVD neurons of an input, and the weight-only ranking of a layer's neurons.

Influence (per input and layer, the neurons of all groups pooled): sort the
neurons by ``|s|``, the absolute aggregated signal, descending (ties: lower
index first); the influential set is the smallest prefix whose share of the
layer's total ``Σ_all |s|`` reaches the threshold (default :data:`DEFAULT_THRESHOLD`
= 0.3), or the ``k``
largest with ``top_k``. A neuron's relative weight is ``|s| / Σ_{influential} |s|``
(weights of an input's influential set sum to 1; 0 outside it). An input whose
signals are all zero has no influential neuron.

Why 0.3 and not the reference library's 0.1 (still available as
``threshold="reference"``): with 0.1 the single largest neuron almost always
reaches the share alone, so every input has one influential neuron, every class
hyperedge is one vertex and class separation collapses. Mean set sizes on 400
held-out digits, threshold 0.1 / 0.3 / 0.5: digits-cnn conv2 (32 neurons) 1.0 /
3.0 / 6.0, conv3 (64) 2.0 / 4.8 / 9.0, fc1 (64) 1.0 / 2.0 / 4.5; digits-resnet
block.conv1 (32) 1.9 / 4.2 / 7.7. At 0.3 a typical input has two or more
influential neurons in every layer of 16 or more, while the sets stay small
enough for classes to keep neurons of their own: at the digits CNN's last layer
(class hyperedges: neurons influential for half of a class's inputs) 0.1 / 0.3 /
0.5 give 5 / 4 / 1 connected components and modularity 0.64 / 0.36 / 0.13.

DeepDataProfiler's ``SVDProfiler.influential_svd_neurons`` uses the same
denominator (``Σ |s|`` over the layer) and the same set except when a
cumulative share equals the threshold exactly (it then takes one more neuron).
Its weights differ: it divides by the cumulative sum *before* the last neuron
it adds (by the layer's total when the set is one neuron), so its weights do
not sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from convsvd import _validate as check
from convsvd.decompose import Decomposition
from convsvd.errors import InputError

__all__ = ["DEFAULT_THRESHOLD", "REFERENCE_THRESHOLD", "Influence", "influence", "check_influence_options",
           "weight_ranking"]

DEFAULT_THRESHOLD = 0.3
"""Default share of ``Σ|s|`` the influential set reaches (module docstring)."""

REFERENCE_THRESHOLD = 0.1
"""DeepDataProfiler's default threshold, selected by ``threshold="reference"``."""


@dataclass(frozen=True)
class Influence:
    """Influential neurons of each input.

    Attributes
    ----------
    mask : torch.Tensor
        ``(N, K)`` bool.
    weight : torch.Tensor
        ``(N, K)`` relative weight, 0 outside the set.
    count : torch.Tensor
        ``(N,)`` int64, size of each input's set.
    """

    mask: torch.Tensor
    weight: torch.Tensor
    count: torch.Tensor


def check_influence_options(threshold: float | str | None, top_k: int | None) -> tuple[float | None, int | None]:
    """Validate and default: ``(DEFAULT_THRESHOLD, None)`` when neither is given; ``"reference"`` is 0.1."""
    if threshold is not None and top_k is not None:
        raise InputError(f"threshold={threshold!r} and top_k={top_k!r}: give one of them, not both")
    if top_k is not None:
        return None, check.integer(top_k, "top_k", minimum=1)
    t = DEFAULT_THRESHOLD if threshold is None else REFERENCE_THRESHOLD if threshold == "reference" else threshold
    return check.share(t, "threshold"), None


def influence(values: torch.Tensor, threshold: float | str | None = None, top_k: int | None = None) -> Influence:
    """Influential neurons of each row of ``values``.

    Parameters
    ----------
    values : torch.Tensor
        ``(N, K)`` aggregated signals of ``K`` neurons of one layer.
    threshold : float or "reference", optional
        Share of ``Σ_all |s|`` the set must reach (default :data:`DEFAULT_THRESHOLD`;
        ``"reference"``: the reference library's 0.1).
    top_k : int, optional
        Take the ``k`` largest ``|s|`` instead (``k`` is clipped to ``K``).

    Returns
    -------
    Influence

    >>> inf = influence(torch.tensor([[4.0, -3.0, 2.0, 1.0]]), threshold=0.5)
    >>> inf.mask.tolist(), [round(w, 3) for w in inf.weight[0].tolist()]
    ([[True, True, False, False]], [0.571, 0.429, 0.0, 0.0])
    """
    threshold, top_k = check_influence_options(threshold, top_k)
    if values.dim() != 2:
        raise InputError(f"values: expected (N, K) signals, got shape {tuple(values.shape)}")
    N, K = values.shape
    a = values.abs()
    srt, order = torch.sort(a, dim=1, descending=True, stable=True)
    if top_k is not None:
        count = torch.full((N,), min(top_k, K), dtype=torch.int64, device=values.device)
    else:
        assert threshold is not None  # check_influence_options gives a threshold when there is no top_k
        cum = srt.to(torch.float64).cumsum(dim=1)
        total = cum[:, -1:]
        share = cum / torch.where(total > 0, total, torch.ones_like(total))
        count = ((share < threshold).sum(dim=1) + 1).clamp(max=K)
        count = torch.where(total[:, 0] > 0, count, torch.zeros_like(count))
    in_prefix = torch.arange(K, device=values.device).unsqueeze(0) < count.unsqueeze(1)
    mask = torch.zeros_like(in_prefix).scatter(1, order, in_prefix)
    denom = (srt * in_prefix).sum(dim=1, keepdim=True)
    weight = torch.where(mask, a / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(a))
    return Influence(mask, weight, count)


def weight_ranking(svd: Decomposition, top_k: int | None = None) -> pd.DataFrame:
    """SVD neurons ranked by singular value alone (no data), per layer, groups pooled.

    Parameters
    ----------
    svd : Decomposition
    top_k : int, optional
        Keep the ``k`` leading neurons of each layer.

    Returns
    -------
    pandas.DataFrame
        ``layer, rank, group, neuron, sigma, energy_share, cumulative_share``:
        ``energy_share = σ² / ‖W̄‖²_F`` (the layer's Frobenius norm, all groups),
        ``rank`` 0 for the largest σ of the layer.

    >>> from torch import nn
    >>> from convsvd.decompose import decompose
    >>> weight_ranking(decompose(nn.Linear(3, 2))).columns.tolist()
    ['layer', 'rank', 'group', 'neuron', 'sigma', 'energy_share', 'cumulative_share']
    """
    frames = []
    for name, l in svd.layers.items():
        g, r = l.S.shape
        s = l.S.detach().to("cpu", torch.float64).reshape(-1)
        order = torch.sort(s, descending=True, stable=True).indices
        if top_k is not None:
            order = order[:top_k]
        share = s[order] ** 2 / float(l.fro2.sum())
        frames.append(pd.DataFrame(dict(
            layer=name, rank=range(len(order)), group=(order // r).numpy().astype("int32"),
            neuron=(order % r).numpy().astype("int32"), sigma=s[order].numpy(),
            energy_share=share.numpy(), cumulative_share=share.cumsum(0).numpy(),
        )))
    cols = ["layer", "rank", "group", "neuron", "sigma", "energy_share", "cumulative_share"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
