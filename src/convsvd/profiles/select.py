"""Which contributions a profile keeps: convsvd's share rule, or DeepDataProfiler's rule.

``share`` (default; the rule of :func:`convsvd.signals.influence`): sort the
entries of a row by ``|value|``; keep the smallest prefix whose share of the
row's ``Σ |value|`` reaches the threshold (or the ``k`` largest with ``top_k``);
weights ``|value| / Σ_kept |value|``.

Under both rules a contribution of 0 is never kept (with ``top_k``, a row with fewer than ``k``
nonzero contributions keeps them all), and ties are broken by position (lower index first): so
a row can be given as its nonzero entries alone, in ascending order, with the same result.

``ddp`` (DeepDataProfiler 2.0.1): negative values count as 0; sort descending;
keep the entries whose cumulative share is ``≤`` the threshold, plus the next one
(at most all of them); weights ``value / Σ_kept value``; zero values are dropped.
"""

from __future__ import annotations

import torch

from convsvd.errors import InputError
from convsvd.signals.influence import influence

__all__ = ["select", "RULES"]

RULES = ("share", "ddp")


def select(values: torch.Tensor, rule: str = "share", threshold: float | None = None,
           top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, weight)``, both ``(M, I)``, of the kept entries of each row of ``values``.

    >>> m, w = select(torch.tensor([[4.0, -3.0, 2.0, 1.0]]), threshold=0.5)
    >>> m.tolist(), [round(v, 3) for v in w[0].tolist()]
    ([[True, True, False, False]], [0.571, 0.429, 0.0, 0.0])
    >>> m, w = select(torch.tensor([[4.0, -3.0, 2.0, 1.0]]), "ddp", threshold=0.6)  # 4/7 ≤ 0.6: one more kept
    >>> m.tolist()
    [[True, False, True, False]]
    """
    if values.dim() != 2:
        raise InputError(f"values: expected (M, I), got shape {tuple(values.shape)}")
    if rule == "share":
        inf = influence(values, threshold=threshold, top_k=top_k)
        return inf.mask & (values != 0), inf.weight.to(values.dtype)
    if rule != "ddp":
        raise InputError(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")
    if top_k is not None:
        raise InputError("top_k: DeepDataProfiler's rule takes a threshold, not top_k")
    t = 0.1 if threshold is None else float(threshold)
    M, I = values.shape
    v = values.clamp(min=0)
    srt = torch.sort(v, dim=1, descending=True).values  # the kept entries are a prefix of it
    cum = srt.cumsum(1)
    total = cum[:, -1:]
    accept = (cum / torch.where(total > 0, total, torch.ones_like(total)) <= t).sum(1, keepdim=True)
    accept = torch.where(accept < I, accept, accept - 1)  # the prefix's last position
    cut = srt.gather(1, accept)  # its value: every entry above it is kept, ties at it lowest index first
    denom = cum.gather(1, accept)
    above = v > cut
    tied = (v == cut) & (cut > 0)
    room = accept + 1 - above.sum(1, keepdim=True)  # how many entries equal to the cut the prefix holds
    mask = (above | (tied & (tied.cumsum(1) <= room))) & (total > 0)
    weight = torch.where(mask, v / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(v))
    return mask, weight
