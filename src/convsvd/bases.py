"""Class separation in three bases side by side: SVD neurons, raw channels, random directions.

The paper argues that the SVD neurons of a layer explain it better than its filters or
channels. :func:`compare_bases` puts that to a test: the same data is profiled with each
basis (:data:`convsvd.signals.project.BASES`) — the same influence rule, the same
separation metrics, the same code path, only ``Uᵀ`` replaced by the identity or by a
seeded random orthonormal matrix — and the per-layer separation tables are stacked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from convsvd.errors import InputError
from convsvd.signals.project import BASES

__all__ = ["compare_bases"]


def compare_bases(
    model: object,
    data: object,
    *,
    bases: Sequence[str] = BASES,
    layers: str | Sequence[str] | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    aggregate: str = "mean",
    min_share: float = 0.5,
    batch_size: int = 64,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
) -> pd.DataFrame:
    """Per layer and basis: the class-separation metrics of :func:`convsvd.hypergraph.separation`.

    Parameters
    ----------
    model : nn.Module
    data : dataset
        Anything :func:`convsvd.signals.profile` reads (labelled).
    bases : sequence of {"svd", "channel", "random"}
    layers, threshold, top_k, aggregate, batch_size, dtype, device, progress
        As in :func:`convsvd.signals.profile` (each basis is profiled into a temporary folder).
    min_share : float
        As in :func:`convsvd.hypergraph.separation`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`convsvd.hypergraph.separation` with ``basis`` second,
        one row per layer × basis (layers in model order, bases in the order given).

    Examples
    --------
    >>> from convsvd import zoo
    >>> frame = compare_bases(zoo.load("digits-cnn"), "digits:test")  # doctest: +SKIP
    >>> frame.pivot(index="layer", columns="basis", values="ncc_accuracy")  # doctest: +SKIP
    """
    from convsvd.hypergraph import separation
    from convsvd.signals import profile

    bases = [bases] if isinstance(bases, str) else list(bases)
    unknown = [b for b in bases if b not in BASES]
    if unknown or not bases:
        raise InputError(f"bases {bases!r}: expected one or more of {', '.join(BASES)}")
    frames = []
    for basis in bases:
        table = profile(model, data, layers=layers, threshold=threshold, top_k=top_k, aggregate=aggregate,
                        batch_size=batch_size, dtype=dtype, device=device, progress=progress, basis=basis)
        frame = separation(table, min_share=min_share).to_frame()
        frame.insert(1, "basis", basis)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    order = {name: i for i, name in enumerate(dict.fromkeys(out["layer"]))}
    out = out.sort_values(["layer", "basis"], key=lambda col: col.map(order) if col.name == "layer"
                          else col.map({b: i for i, b in enumerate(bases)}), kind="stable")
    return out.reset_index(drop=True)
