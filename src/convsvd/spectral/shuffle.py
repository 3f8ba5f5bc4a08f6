"""Shuffle the entries of a layer's weight quickly: the randomised baseline's null model.

:func:`convsvd.spectral.randomize` applies one uniform random permutation to all the
entries. For the largest layers that is slow on a CPU — a 4096×25088 matrix takes
about 6 s (``randperm`` of 10⁸ indices, then a gather that misses the cache on every
entry) — longer than its eigenvalues. :func:`shuffle_entries` reaches the same null
model with three cache-friendly passes over the matrix ``X`` of shape
``(d, numel/d)`` (rows = the first dimension of the weight):

1. permute the columns of ``X`` by a random permutation, then roll every row
   cyclically by its own random offset;
2. the same on ``Xᵀ`` (columns of ``X`` become rows);
3. the same on ``X`` again.

Every pass only moves entries within rows of a matrix, one row at a time, so the
gathers stay in cache (about 1.3 s for the 4096×25088 matrix, 4–5× faster). After passes 1–2 every
entry sits at an independent, uniformly random row and column; after pass 2 each
column still holds exactly one entry from every original row, a stratification that
pass 3 removes. The result is a permutation of the entries (the same multiset), but
not a uniformly drawn one; what matters here — the ESD of the shuffled matrix — is
indistinguishable from that of a uniform shuffle: on structured 256×1024 matrices
(rows or columns scaled by log-normal factors, Student-t(1.5) entries, low rank plus
noise, 90 % zero rows or 95 % zero columns) the Kolmogorov–Smirnov distance between
the ESDs of this shuffle and of a uniform one stays within the spread between two
uniform shuffles, and so does ``λ_max`` (``tests/test_spectrum.py`` checks one such
case).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from convsvd.errors import InputError

__all__ = ["layer_seed", "shuffle_entries"]


def layer_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one layer, from the run's seed and the layer's name.

    Each layer's shuffle then depends on nothing else, so analysing a layer alone or
    with the whole model shuffles it the same way.

    >>> layer_seed(0, "conv1") == layer_seed(0, "conv1") != layer_seed(1, "conv1")
    True
    """
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


_GATHER_MAX = 2**22
"""On the CPU, matrices up to this many entries take one gather (an int64 index per
entry); larger ones are done row by row, so no index as large as the matrix is made."""


def _pass(X: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Permute the columns of ``X`` by one random permutation, then roll each row by its own offset.

    ``out[i, j] = X[i, perm[(j − r_i) mod n]]``: each row is one gather whose index is a
    contiguous window of ``perm`` repeated twice.
    """
    rows, cols = X.shape
    perm = torch.randperm(cols, generator=gen)
    shifts = torch.randint(0, cols, (rows,), generator=gen)
    if X.device.type != "cpu" or X.numel() <= _GATHER_MAX:
        where = (torch.arange(cols)[None, :] - shifts[:, None]) % cols
        return torch.gather(X, 1, perm[where].to(X.device))
    twice = torch.cat([perm, perm])
    out = torch.empty_like(X)
    for i, r in enumerate(shifts.tolist()):  # the row stays in cache while it is gathered
        torch.index_select(X[i], 0, twice[cols - r : 2 * cols - r], out=out[i])
    return out


def shuffle_entries(W: torch.Tensor, seed: int | torch.Generator = 0) -> torch.Tensor:
    """The entries of ``W`` moved to random places (same values, same shape).

    Parameters
    ----------
    W : torch.Tensor, any shape with at least one entry
        A weight; the passes run on its ``(W.shape[0], numel/W.shape[0])`` view.
    seed : int or torch.Generator (CPU), default 0
        Source of the random permutations and offsets (drawn on the CPU, so a seed
        gives the same shuffle on every device).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``W``; ``W`` is not modified.

    Examples
    --------
    >>> W = torch.arange(12.0).reshape(3, 4)
    >>> S = shuffle_entries(W, seed=0)
    >>> S.shape, sorted(S.flatten().tolist()) == W.flatten().tolist()
    (torch.Size([3, 4]), True)
    """
    if not isinstance(W, torch.Tensor):
        raise InputError(f"W: expected a torch.Tensor, got {type(W).__name__}")
    if W.numel() == 0:
        raise InputError(f"W: expected at least one entry, got shape {tuple(W.shape)}")
    if isinstance(seed, torch.Generator):
        gen = seed
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        gen = torch.Generator().manual_seed(int(seed))
    else:
        raise InputError(f"seed: expected an int or a torch.Generator, got {seed!r}")
    rows = W.shape[0] if W.dim() else 1
    X = W.detach().reshape(rows, -1)
    X = _pass(X, gen)
    X = _pass(X.T.contiguous(), gen)
    X = _pass(X.T.contiguous(), gen)
    return X.reshape(W.shape)
