"""Exact x_min search of the power-law fit by bound and prune (NumPy, CPU).

For every row of sorted positive values, the power-law search keeps the candidate
position ``k`` with the smallest Kolmogorov–Smirnov distance

    D_k = max_{k ≤ j < end} e(j, k),
    e(j, k) = |expm1((1 − α_k)·max(ln x_j − ln x_k, 0)) + (f_j − k)/n_k|

(``f_j`` the first position of the value ``x_j``, ``n_k = end − k`` the tail size),
ties going to the smallest ``k``. Computing every ``D_k`` costs O(N²)
(:func:`convsvd.spectral.powerlaw._search_xmin_exhaustive`). Here:

1. A lower bound ``LB_k`` is the largest ``e(j, k)`` over some positions ``j`` of
   ``k``'s tail: a maximum over a subset of the terms is never above the maximum over
   all of them. The first round takes ``_FIRST`` positions spread over every tail
   (O(N) in all); a tail that short is taken whole, so its bound is ``D_k`` itself.
2. In each row, ``D`` of the open candidate with the lowest bound is computed in full;
   ``best``, the smallest ``D`` known, bounds the row's minimum from above.
3. A candidate with ``LB_k > best`` has ``D_k > best ≥ min D``: it is neither the
   minimum nor tied with it, and is dropped. The others are bounded again from more
   positions, spread over the tail and around the highest term found so far (where
   the maximum usually lies), then back to 2. After ``_ROUNDS``, or as soon as that
   costs about as much as another round, the survivors' ``D`` are computed in full.

Each row's answer is the first minimum over the candidates whose ``D`` was computed;
every other candidate has a larger ``D``, so it is the first minimum over all.

Exactness rests on one property: each ``e(j, k)`` is computed by the same IEEE
operations, in the same order, on the same float64 inputs as in the exhaustive search,
so every term, and every ``D`` computed in full, is bitwise the exhaustive one (a
maximum does not depend on the order of its terms). The margin ``_PRUNE_MARGIN`` is
not needed for that; it only keeps the proof standing should a maths library ever
round ``expm1`` differently for different memory layouts (NumPy's does not).

The rows of a batch are searched together, on their concatenation (no padding).
"""

from __future__ import annotations

import math

import numpy as np

_FIRST = 32
"""Positions per candidate, spread over its tail, in the first round of bounds."""
_ROUNDS = ((64, 64), (256, 128), (1024, 128))
"""Later rounds: positions spread over the tail, positions around the highest term."""
_FULL_RATIO = 2
"""D is computed in full once that costs at most this many times a round of bounds."""
_PRUNE_MARGIN = 1e-12
"""A candidate is dropped only when its bound exceeds the best D by more than this."""
_BLOCK = 2**15
"""Maximum number of terms e(j, k) computed at once: small temporaries are recycled by
the allocator, large ones cost a page fault per 4 KiB on every round."""


class _Rows:
    """Sorted rows, concatenated, with the per-position quantities of the search.

    Every quantity is computed as the exhaustive search computes it for a padded row
    (its padding and masked entries only add zeros, which change no bit).
    """

    def __init__(self, rows: list[np.ndarray]) -> None:
        lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=len(rows))
        x = rows[0] if len(rows) == 1 else np.concatenate(rows)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        pos = np.arange(x.size)
        end_of = np.repeat(ends, lengths)

        new = np.empty(x.size, dtype=bool)
        new[0] = True
        np.not_equal(x[1:], x[:-1], out=new[1:])
        new[starts] = True
        logx = np.log(x)
        # Σ_{i≥k} ln(x_i/x_k) = Σ_{i≥k} y_i − n_k·y_k with y = ln(x/x_max); the suffix
        # sums run from the top of each row down, one sequential pass per row.
        y = logx - np.repeat(logx[ends - 1], lengths)
        suffix = np.empty(x.size)
        for s, e in zip(starts.tolist(), ends.tolist()):
            np.cumsum(y[s:e][::-1], out=suffix[s:e][::-1])
        n_k = (end_of - pos).astype(np.float64)
        sumlog = suffix - n_k * y
        positive = sumlog > 0
        alpha = 1.0 + n_k / np.where(positive, sumlog, 1.0)

        self.x, self.new, self.positive = x, new, positive
        self.lengths, self.starts, self.end_of = lengths, starts, end_of
        self.logx = logx
        self.first = np.maximum.accumulate(np.where(new, pos, 0)).astype(np.float64)
        self.coef = 1.0 - alpha
        self.inv_n = 1.0 / n_k

    def terms(self, j: np.ndarray, k: np.ndarray) -> np.ndarray:
        """e(j, k) for positions j ≥ k of the same row (k broadcast against j).

        The exhaustive search's operations in its order. It also clamps ``f_j − k`` at
        0, which changes nothing for ``j ≥ k`` (then ``f_j ≥ k``) and is left out.
        """
        gap = self.logx.take(j)
        gap -= self.logx.take(k)
        np.maximum(gap, 0.0, out=gap)
        gap *= self.coef.take(k)
        np.expm1(gap, out=gap)
        emp = self.first.take(j)
        emp -= k
        emp *= self.inv_n.take(k)
        gap += emp
        return np.abs(gap, out=gap)

    def max_at(
        self, k: np.ndarray, windows: list[tuple[np.ndarray, np.ndarray, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Largest e(j, k) over positions j spread over windows, and where it is.

        ``windows`` holds ``(lo, hi, m)``: m positions spread over ``[lo, hi]`` (arrays
        aligned with k, inside k's tail), for each window.
        """
        val, at = np.empty(k.size), np.empty(k.size, dtype=np.int64)
        width = sum(m for _, _, m in windows)
        per_block = max(1, _BLOCK // width)
        for s in range(0, k.size, per_block):
            e = min(k.size, s + per_block)
            j = np.empty((e - s, width), dtype=np.int64)
            c = 0
            for lo, hi, m in windows:
                _spread(lo[s:e], hi[s:e], m, out=j[:, c : c + m])
                c += m
            terms = self.terms(j, k[s:e, None])
            i = terms.argmax(axis=1)  # a NaN counts as the largest
            i += np.arange(0, terms.size, width)
            val[s:e] = terms.ravel()[i]
            at[s:e] = j.ravel()[i]
        return _nan_to_inf(val), at

    def full_max(self, k: np.ndarray) -> np.ndarray:
        """D_k: the largest e(j, k) over every position j of each tail."""
        tail = self.end_of[k] - k
        cum = tail.cumsum()
        out = np.empty(k.size)
        s = 0
        while s < k.size:  # blocks of whole tails, of about _BLOCK terms
            e = k.size
            if cum[-1] - cum[s] + tail[s] > _BLOCK:
                e = max(s + 1, int(cum.searchsorted(cum[s] - tail[s] + _BLOCK, "right")))
            kb, nb = k[s:e], tail[s:e]
            offsets = nb.cumsum()
            offsets -= nb
            kk = kb.repeat(nb)
            j = np.arange(kk.size)
            j += (kb - offsets).repeat(nb)
            out[s:e] = np.maximum.reduceat(self.terms(j, kk), offsets)
            s = e
        return _nan_to_inf(out)


def _spread(lo: np.ndarray, hi: np.ndarray, m: int, out: np.ndarray) -> None:
    """Write into ``out`` (c, m) m ≥ 2 positions spread evenly over [lo, hi].

    ``lo + ⌊t·s⌋`` for ``t < m − 1``, with ``s = (hi − lo)/(m − 1)`` rounded, then ``hi``.
    Every position lies in [lo, hi] (``t·s`` exceeds ``hi − lo`` by a few roundings at
    most, less than 1). Where ``hi − lo < m``, every position of [lo, hi] is taken:
    then ``s < 1``, so consecutive ``⌊t·s⌋`` differ by at most 1 (a jump of 2 would
    need ``s`` within a few roundings of 1), and ``⌊(m − 2)·s⌋ ≥ hi − lo − 1`` (the
    exact value exceeds ``hi − lo − 1`` by at least ``1/(m − 1)``). The tests check
    this for every span of every ``m`` used.
    """
    step = (hi - lo) / (m - 1)
    np.multiply(np.arange(m, dtype=np.float64), step[:, None], out=out, casting="unsafe")
    out += lo[:, None]
    out[:, -1] = hi


def _spacing(lo: np.ndarray, hi: np.ndarray, m: int) -> np.ndarray:
    """An upper bound of the gap between consecutive positions of :func:`_spread`."""
    return (hi - lo) // (m - 1) + 1


def _nan_to_inf(a: np.ndarray) -> np.ndarray:
    """NaN → +inf, as the exhaustive search ranks an undefined D."""
    a[np.isnan(a)] = math.inf
    return a


def _first_per_row(order: np.ndarray, row: np.ndarray) -> np.ndarray:
    """The entries of ``order`` (grouped by row) that come first in their row."""
    r = row[order]
    keep = np.empty(r.size, dtype=bool)
    keep[:1] = True
    np.not_equal(r[1:], r[:-1], out=keep[1:])
    return order[keep]


def search_xmin(
    rows: list[np.ndarray], xmin_range: tuple[float, float] | None, min_tail: int
) -> tuple[np.ndarray, np.ndarray]:
    """Position of the best x_min in each sorted row of positive values; and whether any.

    Parameters
    ----------
    rows : list of numpy.ndarray, each of shape (n_b,), float64, sorted, > 0, n_b ≥ 1
    xmin_range, min_tail
        As in :func:`convsvd.spectral.powerlaw.fit_power_law`.

    Returns
    -------
    best : numpy.ndarray of int, shape (B,)
        Position in each row of the chosen x_min; 0 where the row has no candidate or
        no candidate with a defined D (where the exhaustive search also returns 0).
    found : numpy.ndarray of bool, shape (B,)
        Whether the row has a candidate.
    """
    with np.errstate(all="ignore"):
        R = _Rows(rows)
        k, row = _candidates(R, xmin_range, min_tail)
        bound, known = _bound_and_prune(R, k, row, len(rows))

    # Every candidate not known has LB > best ≥ its row's minimum: the first minimum
    # over the known ones is the first minimum over all.
    win = np.flatnonzero(known)
    win = _first_per_row(win[np.lexsort((k[win], bound[win], row[win]))], row)
    win = win[np.isfinite(bound[win])]
    best = np.zeros(len(rows), dtype=np.int64)
    best[row[win]] = k[win] - R.starts[row[win]]
    found = np.zeros(len(rows), dtype=bool)
    found[row] = True
    return best, found


def _candidates(
    R: _Rows, xmin_range: tuple[float, float] | None, min_tail: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the candidate x_min (first of their value) and their row."""
    x = R.x
    cand = R.new & R.positive
    if xmin_range is None:
        top = np.repeat(x[R.starts + R.lengths - 1], R.lengths)
    else:
        lo, hi = sorted(float(v) for v in xmin_range)
        in_range = (x >= lo) & (x <= hi)
        cand &= in_range
        top = np.repeat(np.maximum.reduceat(np.where(in_range, x, -math.inf), R.starts), R.lengths)
    cand &= x < top
    cand &= R.end_of - np.arange(x.size) >= min_tail
    k = np.flatnonzero(cand)
    return k, np.repeat(np.arange(R.lengths.size), R.lengths)[k]


def _bound_and_prune(
    R: _Rows, k: np.ndarray, row: np.ndarray, B: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate, a lower bound of D and whether the bound is D itself.

    On return, in every row, every candidate not known has a bound above the row's
    smallest known D (by more than ``_PRUNE_MARGIN``).
    """
    last = R.end_of[k] - 1
    tail = last - k + 1
    bound = np.zeros(k.size)
    known = np.zeros(k.size, dtype=bool)
    peak = k.copy()  # where the highest term found so far is
    half = np.zeros(k.size, dtype=np.int64)  # half-width of the window searched around it
    best = np.full(B, math.inf)
    open_ = np.arange(k.size)
    for spread, zoom in ((_FIRST, 0), *_ROUNDS, (0, 0)):
        if spread == 0 or tail[open_].sum() <= _FULL_RATIO * open_.size * (spread + zoom):
            # D in full: the last round, or when that costs about as much as bounding.
            bound[open_] = R.full_max(k[open_])
            known[open_] = True
            np.minimum.at(best, row[open_], bound[open_])
            break
        ko, lo, po, ho = k[open_], last[open_], peak[open_], half[open_]
        windows = [(ko, lo, spread)]  # every position of a tail ≤ spread: D itself
        if zoom:
            lo_z, hi_z = np.maximum(ko, po - ho), np.minimum(lo, po + ho)
            windows.append((lo_z, hi_z, zoom))
        val, at = R.max_at(ko, windows)
        higher = val > bound[open_]
        bound[open_] = np.where(higher, val, bound[open_])
        peak[open_] = np.where(higher, at, po)
        h = _spacing(ko, lo, spread)
        half[open_] = np.where(higher & (at != po), h, _spacing(lo_z, hi_z, zoom)) if zoom else h
        now_known = tail[open_] <= spread
        if now_known.any():
            known[open_[now_known]] = True
            np.minimum.at(best, row[open_[now_known]], bound[open_[now_known]])
            open_ = open_[~now_known]
        # Tighten `best`: D in full of each row's open candidate with the lowest bound.
        open_ = open_[bound[open_] <= best[row[open_]] + _PRUNE_MARGIN]
        if open_.size == 0:
            break
        lead = _first_per_row(open_[np.lexsort((bound[open_], row[open_]))], row)
        bound[lead] = R.full_max(k[lead])
        known[lead] = True
        np.minimum.at(best, row[lead], bound[lead])
        open_ = open_[~known[open_] & (bound[open_] <= best[row[open_]] + _PRUNE_MARGIN)]
        if open_.size == 0:
            break
    return bound, known
