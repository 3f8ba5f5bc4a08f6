"""Singular filters of a conv layer, and the layer rebuilt from its leading singular triplets.

With ``W̄_j = U_j Σ_j V_jᵀ`` (per group ``j``), row ``i`` of ``V_jᵀ`` reshaped to
the weight's ``(c/g, k1, k2)`` is the *singular filter* ``i``: the input
pattern (one ``k1×k2`` map per input channel) that SVD neuron ``i`` responds
to, ``signal = σ_i v_iᵀ patch``. For the layer that reads the image these are
small images (RGB or gray); deeper, one heat-map per input channel.

The rank-``r`` rebuild ``Σ_{i<r} σ_i u_i v_iᵀ`` (per group) keeps the share
``Σ_j Σ_{i<r} σ_{j,i}² / Σ_j ‖W̄_j‖²_F`` of the squared Frobenius norm
(Eckart–Young; for an ungrouped layer this is ``LayerSVD.energy(r)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from convsvd import _validate as check
from convsvd._results import LayerResult
from convsvd.decompose import Decomposition, decompose
from convsvd.errors import InputError
from convsvd.target import TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SingularFilters", "singular_filters", "DEFAULT_ENERGY"]

#: Share of ``‖W̄‖²_F`` the default rebuild rank reaches.
DEFAULT_ENERGY: float = 0.9


@dataclass(frozen=True, eq=False)
class SingularFilters(LayerResult):
    """Right singular vectors of one conv layer as filters, and its rank-``r`` rebuild.

    Attributes
    ----------
    layer, kind : str
    groups : int
    filters : torch.Tensor
        ``(g, r_max, c/g, k1, k2)``: ``filters[j, i]`` is row ``i`` of ``Vh_j`` reshaped;
        ``filters.reshape(g, r_max, -1)`` is ``Vh``.
    sigma : torch.Tensor
        ``(g, r_max)`` singular values, descending.
    weight : torch.Tensor
        ``(d, c/g, k1, k2)`` the layer's weight (BatchNorm folded when asked).
    rebuilt : torch.Tensor
        ``(d, c/g, k1, k2)`` from the ``rank`` leading triplets of every group.
    rank : int
    energy : float
        Share of ``Σ_j ‖W̄_j‖²_F`` kept by ``rebuilt`` (exact: from the singular values and ``fro2``).
    fro2 : torch.Tensor
        ``(g,)`` float64 ``‖W̄_j‖²_F``.
    reads_input : bool
        True when the layer is the model's first (registration order), whose filters are images.
    """

    layer: str
    kind: str
    groups: int
    filters: torch.Tensor = field(repr=False)
    sigma: torch.Tensor = field(repr=False)
    weight: torch.Tensor = field(repr=False)
    rebuilt: torch.Tensor = field(repr=False)
    rank: int = 0
    energy: float = float("nan")
    fro2: torch.Tensor = field(default=None, repr=False)  # type: ignore[assignment]
    reads_input: bool = False

    _stem = "filters"

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"filters": self.filters, "sigma": self.sigma, "rebuilt": self.rebuilt, "fro2": self.fro2}

    @property
    def in_channels(self) -> int:
        """Input channels per group (``c/g``)."""
        return int(self.filters.shape[2])

    def shares(self) -> torch.Tensor:
        """``(g, r_max)`` float64: each triplet's share ``σ²/Σ‖W̄_j‖²_F`` of the layer's energy."""
        return self.sigma.double() ** 2 / self.fro2.sum()

    def to_frame(self) -> pd.DataFrame:
        """One row per singular filter: ``layer, group, neuron, sigma, share, cumulative, kept``.

        ``cumulative`` adds the shares within a group in order; ``kept`` marks the
        triplets in the rank-``rank`` rebuild.
        """
        g, r = self.sigma.shape
        share = self.shares().cpu().numpy()
        return pd.DataFrame(dict(
            layer=self.layer, group=np.repeat(np.arange(g), r).astype("int32"),
            neuron=np.tile(np.arange(r), g).astype("int32"), sigma=self.sigma.double().cpu().numpy().reshape(-1),
            share=share.reshape(-1), cumulative=np.cumsum(share, axis=1).reshape(-1),
            kept=np.tile(np.arange(r) < self.rank, g),
        ), columns=["layer", "group", "neuron", "sigma", "share", "cumulative", "kept"])


def _default_rank(S: torch.Tensor, fro2: torch.Tensor, target: float) -> int:
    """Smallest per-group rank whose rebuild keeps at least ``target`` of the energy."""
    kept = torch.cumsum(S.double() ** 2, dim=1).sum(dim=0) / fro2.sum()
    hit = torch.nonzero(kept >= target - 1e-12)
    return int(hit[0, 0]) + 1 if hit.numel() else int(S.shape[1])


def singular_filters(
    source: object,
    layer: str,
    *,
    rank: int | None = None,
    svd: Decomposition | None = None,
    **options: Unpack[TargetOptions],
) -> SingularFilters:
    """Singular filters of a 2-d conv layer and its rebuild from the top ``rank`` triplets.

    Parameters
    ----------
    source : Target, nn.Module, ModelWeights, path, built-in name or ``"pkg.mod:factory"``
    layer : str
        A ``conv2d`` layer.
    rank : int, optional
        Triplets per group in the rebuild; default: the smallest keeping
        :data:`DEFAULT_ENERGY` of ``‖W̄‖²_F``.
    svd : Decomposition, optional
        Reuse a full decomposition that has ``layer`` (``fold_bn`` as here).
    **options
        Checked by :func:`convsvd.target.resolve` (or carried by a Target): ``fold_bn`` (fold a
        following BatchNorm into the layer first), ``dtype`` (of the SVD; default the weights').

    Returns
    -------
    SingularFilters

    >>> from convsvd import zoo
    >>> sf = singular_filters(zoo.load("digits-cnn"), "conv1", rank=3)
    >>> tuple(sf.filters.shape), sf.reads_input, 0 < sf.energy < 1
    ((1, 9, 1, 3, 3), True, True)
    """
    target = resolve(source, **options)
    mw = target.folded
    spec = mw[layer]
    if spec.kind != "conv2d":
        raise InputError(f"layer {layer!r}: singular filters need a conv2d layer (it is {spec.kind})")
    if svd is None:
        svd = decompose(mw.select([layer]), mode="full", dtype=target.dtype, device="cpu", progress=False)
    lsvd = svd[layer]
    if lsvd.U is None or not lsvd.complete:
        raise InputError(f"layer {layer!r}: singular filters need a full decomposition (mode='full'), got mode={lsvd.mode!r}")
    r_max = int(lsvd.S.shape[1])
    if rank is None:
        rank = _default_rank(lsvd.S, lsvd.fro2, DEFAULT_ENERGY)
    rank = check.integer(rank, "rank", minimum=0, maximum=r_max)  # r_max: the layer's triplets per group
    S = lsvd.S.detach().cpu()
    fro2 = lsvd.fro2.detach().cpu().double()
    energy = float((S[:, :rank].double() ** 2).sum() / fro2.sum())
    weight = spec.weight.detach().cpu().to(S.dtype)
    rebuilt = lsvd.reconstruct(rank).detach().cpu().reshape(weight.shape)
    return SingularFilters(
        layer=layer, kind=spec.kind, groups=spec.groups, filters=lsvd.filters().detach().cpu(), sigma=S,
        weight=weight, rebuilt=rebuilt, rank=rank, energy=energy, fro2=fro2,
        reads_input=mw.layers[0].name == layer,
    )
