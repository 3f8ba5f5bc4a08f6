"""The singular value decomposition of every linear map of a model.

Routes (``mode`` × ``method``):

- ``mode="full"``: ``torch.linalg.svd`` of each group's ``W̄`` (thin SVD);
  matrices of the same shape are stacked into one batched call.
- ``mode="values"``: singular values only. ``method="gram"`` (the default for
  values) forms the smaller Gram matrix ``W̄W̄ᵀ`` (or ``W̄ᵀW̄``) in float64 and
  takes ``sqrt(eigvalsh)``. It is 3–5× faster than an SVD on the CPU. Its
  absolute error on ``σ_i²`` is about ``ε₆₄·σ_max²`` (ε₆₄ ≈ 1.1e-16), so the
  relative error of ``σ_i`` is about ``1e-16·(σ_max/σ_i)²``: below 1e-6 for every
  ``σ_i ≥ 1e-5·σ_max``. Values below ``≈1e-8·σ_max`` are noise (down to 0); ask
  ``method="svd"`` when the tiny singular values matter (rank studies).
  ``method="gram32"`` (values only, never chosen by ``"auto"``) forms the Gram
  matrix in float32 — on the CPU, for large layers (≥ 10¹⁰ multiply–adds), with
  BLAS ``ssyrk``, which computes one triangle, half the flops of a matrix product;
  otherwise with a float32 matrix product — and takes its eigenvalues with a
  float64 ``eigvalsh``; ``S`` is returned in float64. On a 4096×25088 layer it
  is about 2× faster than ``"gram"`` (the Gram product alone 3×). Its error on
  ``σ_i²`` is that of the float32 Gram entries (Weyl's inequality:
  ``|σ̃_i² − σ_i²| ≤ ‖G̃ − G‖₂``). Guaranteed: ``|G̃_jk − G_jk| ≤ γ_n Σ_l |a_jl||a_kl|``
  with ``γ_n = n·u/(1 − n·u)``, ``u = 2⁻²⁴`` and ``n`` the summed (longer) side,
  hence ``|σ̃_i² − σ_i²| ≤ γ_n ‖W̄‖_F²`` — a weak bound for long rows (1.5e-3·‖W̄‖_F²
  at ``n = 25088``). Typical, with rounding errors that do not all add up:
  ``max_i |σ̃_i² − σ_i²| ≤ u·√n·σ_max²``; measured on seeded Gaussian, Student-t(2.5),
  Student-t(1.5) and low-rank-plus-noise matrices at most 0.2× that
  (≤ 6.5e-7·σ_max² for Student-t(1.5) entries, ~2e-8·σ_max² for Gaussian ones). So
  the leading eigenvalues (the power-law tail) keep about 6 correct digits, while
  values below ``≈ u·√n·σ_max²`` (``σ_i ≲ 3e-3·σ_max`` at ``n = 25088``) are noise:
  ask ``"gram"`` or ``"svd"`` for rank studies. With ``dtype="float32"`` given
  explicitly, ``"gram32"`` also takes the eigenvalues in float32 (``ssyevd``, about
  1.8× faster than the float64 solver at 4096×4096), adding a backward error of
  order ``u·‖G‖``: measured up to about 2e-5·σ_max² on a 4096×4096 Gram matrix, so
  only the leading 4–5 digits of the largest values are kept; ``S`` is then float32.
  The randomised baseline of :func:`convsvd.spectral.spectrum` uses it: a shuffled
  layer's ESD is a random sample whose fluctuations are far larger. A CUDA matrix product may use
  TF32 if the user enabled it (``torch.backends.cuda.matmul``); it is off by default.
- ``mode="topk"``: the leading ``k`` triplets. ``method="auto"`` takes an exact
  SVD and truncates when the smaller side is ≤ 1024, else the Gram route
  (``eigh`` of the float64 Gram matrix, the other singular vectors by
  ``W̄ᵀu/σ``); ``"lanczos"`` (SciPy's ``svds``, CPU) and ``"randomized"``
  (``torch.svd_lowrank``, 4 power iterations) are available.

Sign convention: the largest-magnitude entry of every left singular vector is
positive (ties: the first such entry), and the right vector's sign follows, so
results agree across devices and runs.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, get_args

import numpy as np
import pandas as pd
import torch

from convsvd import _validate as check
from convsvd._typing import Mode, PathLike
from convsvd.errors import InputError, NotComputedError
from convsvd.io import LayerSpec, ModelWeights, SkippedParam
from convsvd.io.spec import tensor_digest
from convsvd.layers import unfolded
from convsvd.target import TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["LayerSVD", "Decomposition", "decompose", "MODES", "METHODS"]

MODES: tuple[str, ...] = get_args(Mode)
METHODS = ("auto", "svd", "gram", "gram32", "lanczos", "randomized")
_CACHE_VERSION = "convsvd-svd-3"  # 3: entries carry their identity and an XXH3-128 of their tensors
_BATCH_BYTES = 256 * 2**20  # largest stacked batch handed to one LAPACK call


@dataclass(frozen=True, eq=False)
class LayerSVD:
    """The SVD of one layer, group by group.

    Attributes
    ----------
    name, kind : str
    groups : int
    shape : tuple of int
        ``(m, n)`` of each group's unfolded matrix ``W̄_j``.
    weight_shape : tuple of int
    S : torch.Tensor
        ``(g, r)`` singular values, descending within each group (float64 for
        ``method="gram32"``, whose eigenvalues come from a float64 solver).
    U : torch.Tensor or None
        ``(g, m, r)`` left singular vectors (columns); None for values only.
    Vh : torch.Tensor or None
        ``(g, r, n)`` right singular vectors (rows); None for values only.
    fro2 : torch.Tensor
        ``(g,)`` float64 ``‖W̄_j‖²_F``, so energy shares are exact also for top-k.
    mode, method : str
    folded : str or None
        The BatchNorm folded in, if any.
    """

    name: str
    kind: str
    groups: int
    shape: tuple[int, int]
    weight_shape: tuple[int, ...]
    S: torch.Tensor = field(repr=False)
    U: torch.Tensor | None = field(default=None, repr=False)
    Vh: torch.Tensor | None = field(default=None, repr=False)
    fro2: torch.Tensor = field(default=None, repr=False)  # type: ignore[assignment]
    mode: str = "full"
    method: str = "svd"
    folded: str | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.S.dtype

    @property
    def device(self) -> torch.device:
        return self.S.device

    @property
    def complete(self) -> bool:
        """True when every singular value is known (not top-k)."""
        return self.S.shape[-1] == min(self.shape)

    def singular_values(self) -> torch.Tensor:
        """All known singular values of the layer, groups pooled, descending. ``(g·r,)``."""
        return torch.sort(self.S.reshape(-1), descending=True).values

    @property
    def sigma_max(self) -> float:
        return float(self.S.max()) if self.S.numel() else float("nan")

    @property
    def sigma_min(self) -> float:
        """Smallest singular value (NaN when only the top-k are known)."""
        return float(self.S.min()) if self.complete and self.S.numel() else float("nan")

    @property
    def rank(self) -> int | None:
        """Numerical rank: values above ``max(m, n)·ε·σ_max`` (NumPy's rule), summed over groups."""
        if not self.complete:
            return None
        eps = torch.finfo(torch.float32 if self.method == "gram32" else self.S.dtype).eps
        tol = self.S.amax(dim=-1, keepdim=True) * max(self.shape) * eps
        return int((self.S > tol).sum())

    @property
    def stable_rank(self) -> float:
        """``‖W̄‖²_F / σ_max²`` (groups pooled)."""
        return float(self.fro2.sum() / self.S.double().max() ** 2) if self.S.numel() else float("nan")

    def energy(self, k: int) -> float:
        """Share of ``‖W̄‖²_F`` in the ``k`` largest singular values (groups pooled)."""
        s = self.singular_values().double()[:k]
        return float((s**2).sum() / self.fro2.sum())

    def _need_vectors(self) -> None:
        if self.U is None or self.Vh is None:
            raise NotComputedError(f"layer {self.name!r}: singular vectors were not computed (mode={self.mode!r}); use mode='full' or 'topk'")

    def filters(self) -> torch.Tensor:
        """Right singular vectors as filters: ``(g, r, *weight_shape[1:])``.

        For a conv, each is a ``(c/g, k1, …)`` "singular filter"; for a
        transposed conv ``(d/g, k1, …)``; for linear ``(in,)``.
        """
        self._need_vectors()
        return self.Vh.reshape(self.groups, self.Vh.shape[1], *self.weight_shape[1:])  # type: ignore[union-attr]

    def reconstruct(self, rank: int | None = None) -> torch.Tensor:
        """``U Σ Vᵀ`` per group, optionally from the leading ``rank`` triplets. ``(g, m, n)``."""
        self._need_vectors()
        r = self.S.shape[-1] if rank is None else rank
        U, S, Vh = self.U[..., :r], self.S[..., :r], self.Vh[:, :r]  # type: ignore[index]
        return U @ torch.diag_embed(S) @ Vh

    def to(self, device: str | torch.device) -> "LayerSVD":
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return LayerSVD(self.name, self.kind, self.groups, self.shape, self.weight_shape, self.S.to(device),
                        mv(self.U), mv(self.Vh), self.fro2.to(device), self.mode, self.method, self.folded)

    def _row(self, top_k: int = 10) -> dict[str, object]:
        m, n = self.shape
        top_k = min(top_k, self.S.numel())  # top-k mode knows only its k leading values
        return dict(
            name=self.name, kind=self.kind, groups=self.groups, m=m, n=n, unfolded_shape=f"{m}×{n}",
            rank=self.rank, sigma_max=self.sigma_max, sigma_min=self.sigma_min,
            stable_rank=self.stable_rank, top_k=top_k, energy_top_k=self.energy(top_k),
        )

    def to_frame(self, top_k: int = 10) -> pd.DataFrame:
        """A one-row table (see :meth:`Decomposition.to_frame`)."""
        return pd.DataFrame([self._row(top_k)], columns=_FRAME_COLUMNS)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"S": self.S, "fro2": self.fro2}
        if self.U is not None:
            out["U"] = self.U
            out["Vh"] = self.Vh  # type: ignore[assignment]
        return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}


_FRAME_COLUMNS = ["name", "kind", "groups", "m", "n", "unfolded_shape", "rank", "sigma_max", "sigma_min",
                  "stable_rank", "top_k", "energy_top_k"]


@dataclass(frozen=True, eq=False)
class Decomposition(Mapping):
    """Ordered ``{layer name: LayerSVD}`` of a model, plus what was skipped."""

    layers: dict[str, LayerSVD]
    skipped: tuple[SkippedParam, ...] = ()
    source: str = ""
    options: dict[str, object] = field(default_factory=dict)
    weights: ModelWeights | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()
    """What the user should know about how the result was obtained (e.g. damaged cache entries recomputed)."""

    @functools.cached_property
    def weights_hash(self) -> str:
        """Digest (XXH3-128) of the decomposed weights (computed on first use: hashing a large model takes time)."""
        return self.weights.content_hash() if self.weights is not None else ""

    def __getitem__(self, name: str) -> LayerSVD:
        try:
            return self.layers[name]
        except KeyError:
            raise InputError(f"layer {name!r}: not decomposed (layers: {', '.join(list(self.layers)[:8])})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def to_frame(self, top_k: int = 10) -> pd.DataFrame:
        """One row per layer: ``name, kind, groups, m, n, unfolded_shape, rank, sigma_max,
        sigma_min, stable_rank, top_k, energy_top_k`` (share of ``‖W̄‖²_F`` in the top-k)."""
        return pd.DataFrame([l._row(top_k) for l in self.layers.values()], columns=_FRAME_COLUMNS)

    def save(self, out_dir: PathLike, top_k: int = 10) -> list[Path]:
        """Write ``svd.safetensors`` (``NAME/S``, ``NAME/U``, ``NAME/Vh``, ``NAME/fro2``),
        ``svd.parquet``, ``svd.csv`` and ``svd.json`` (run metadata) into the existing
        folder ``out_dir`` (plain writes: the CLI publishes the folder whole with
        :class:`convsvd._atomic.OutputSet`).

        >>> import tempfile
        >>> from torch import nn
        >>> [p.name for p in decompose(nn.Linear(4, 3)).save(tempfile.mkdtemp())]
        ['svd.safetensors', 'svd.parquet', 'svd.csv', 'svd.json']
        """
        from safetensors.torch import save_file

        from convsvd._meta import run_metadata
        from convsvd._results import folder, write_frame, write_text

        out = folder(out_dir)
        tensors = {f"{name}/{k}": v for name, l in self.layers.items() for k, v in l.tensors().items()}
        save_file(tensors, str(out / "svd.safetensors"))
        paths = [out / "svd.safetensors", *write_frame(out, "svd", self.to_frame(top_k), ("parquet", "csv"))]
        meta = run_metadata(self.source, self.weights_hash, self.options,
                            skipped=[dict(name=s.name, shape=list(s.shape), code=s.code, reason=s.reason)
                                     for s in self.skipped])
        return paths + [write_text(out / "svd.json", meta)]

    def __repr__(self) -> str:
        return (f"Decomposition({self.source!r}, {len(self.layers)} layers, mode={self.options.get('mode')!r}, "
                f"{len(self.skipped)} skipped)")

    def _repr_html_(self) -> str:
        from convsvd._results import html_table

        frame = self.to_frame()[["name", "kind", "unfolded_shape", "rank", "sigma_max", "sigma_min", "stable_rank"]]
        return html_table(f"SVD of {len(self.layers)} layers of {self.source}", frame)


# --------------------------------------------------------------------------- kernels


def _fix_signs(U: torch.Tensor, Vh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Make the largest-|·| entry of each column of U positive; flip Vh rows alike."""
    idx = U.abs().argmax(dim=-2, keepdim=True)  # (B, 1, r)
    sign = torch.sign(torch.gather(U, -2, idx))
    sign[sign == 0] = 1
    U = U * sign
    if Vh is not None:
        Vh = Vh * sign.transpose(-1, -2)
    return U, Vh


def _gram_eigh(A: torch.Tensor, vectors: bool) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Eigen-decomposition of the smaller float64 Gram matrix, descending. Returns (λ, Q, left)."""
    m, n = A.shape[-2:]
    A64 = A.to(torch.float64)
    left = m <= n
    G = A64 @ A64.mT if left else A64.mT @ A64
    if vectors:
        lam, Q = torch.linalg.eigh(G)
        return lam.flip(-1), Q.flip(-1), left
    return torch.linalg.eigvalsh(G).flip(-1), None, left


_SYRK_MIN_MACS = 1e10
"""Gram matrices of at least this many multiply–adds use SciPy's ``ssyrk`` on the CPU.

Smaller ones use torch's float32 product: waking SciPy's BLAS thread pool costs more
than ``ssyrk`` saves on them, and its spinning threads slow torch's next operation.
"""


def _gram32_eigvalsh(A: torch.Tensor, solver: torch.dtype = torch.float64) -> torch.Tensor:
    """Eigenvalues (descending, in ``solver`` precision) of the smaller Gram matrix of each ``A[b]``, formed in float32."""
    m, n = A.shape[-2:]
    A32 = A.to(torch.float32)
    if A32.device.type != "cpu" or float(min(m, n)) ** 2 * max(m, n) < _SYRK_MIN_MACS:
        G = A32 @ A32.mT if m <= n else A32.mT @ A32
        return torch.linalg.eigvalsh(G.to(solver)).flip(-1)
    from scipy.linalg.blas import ssyrk

    # a.T is the Fortran-order view of a C-order (m, n) block: ssyrk reads it without a
    # copy; trans=1 gives (aᵀ)ᵀaᵀ = a aᵀ, trans=0 gives aᵀa. Only the lower triangle is filled.
    k = min(m, n)
    Gn = np.empty((A32.shape[0], k, k), dtype=np.float32 if solver == torch.float32 else np.float64)
    for b, a in enumerate(A32.contiguous().numpy()):
        Gn[b] = ssyrk(1.0, a.T, trans=int(m <= n), lower=1)
    return torch.linalg.eigvalsh(torch.from_numpy(Gn), UPLO="L").flip(-1)


_STREAM_BYTES = 256 * 2**20
"""A values-only ``"gram"`` matrix whose float64 copy would be larger than this is streamed (:func:`_streamed_gram_eigvalsh`)."""
_BLOCK_BYTES = 32 * 2**20
"""Size of one float64 column block of a streamed matrix."""
_EIG_COST = 6.0
"""Time of the in-place eigenvalue solver in blocks of Gram work (times k/L), for the progress estimate: measured
≈ 6.5 on a 6144×6144 layer (40 s for the 10 blocks, 260 s for ``dsyevd``)."""


def _streamed(shape: tuple[int, ...], mode: str, method: str) -> bool:
    m, n = shape[-2:]
    return mode == "values" and method == "gram" and m * n * 8 > _STREAM_BYTES


def _stream_plan(m: int, n: int) -> tuple[bool, int, int, int]:
    """``(left, k, step, units)``: Gram side ``k``, block width ``step``, progress units (blocks + solver)."""
    left = m <= n
    k, long = (m, n) if left else (n, m)
    step = max(1, _BLOCK_BYTES // (8 * k))
    blocks = -(-long // step)
    return left, k, step, blocks + max(1, round(_EIG_COST * blocks * k / long))


def _streamed_gram_eigvalsh(a: torch.Tensor, advance: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """Eigenvalues (descending, float64) of the smaller Gram matrix of one ``(m, n)`` matrix, in bounded memory.

    ``G = W̄W̄ᵀ`` (or ``W̄ᵀW̄``) is accumulated in float64 over column (row) blocks of
    ``_BLOCK_BYTES``, each converted to float64 on its own — never a float64 copy of the
    whole matrix — with BLAS ``dsyrk`` on the CPU (one triangle, in place) and a
    float64 ``addmm_`` elsewhere. The eigenvalues are taken in place (LAPACK ``dsyevd``,
    values only, workspace ``O(k)``). Peak memory beyond the weight: the ``k×k`` float64
    Gram matrix and one block. Each ``dsyrk`` sums in float64 like the one-shot product,
    so the result agrees with :func:`_gram_eigh` to rounding. ``advance(units)`` is
    called after every block and once after the solver.
    """
    m, n = a.shape
    left, k, step, units = _stream_plan(m, n)
    long = n if left else m
    blocks = -(-long // step)
    if a.device.type == "cpu":
        from scipy.linalg import eigvalsh
        from scipy.linalg.blas import dsyrk

        an = a.detach().numpy()
        G = np.zeros((k, k), dtype=np.float64, order="F")
        for lo in range(0, long, step):
            if left:  # G += B Bᵀ with B = W̄[:, lo:hi], an F-ordered float64 copy of the block
                x = np.asarray(an[:, lo:lo + step], dtype=np.float64, order="F")
            else:     # G += BᵀB with B = W̄[lo:hi, :]; Bᵀ of a C-ordered block is F-ordered
                x = np.asarray(an[lo:lo + step, :], dtype=np.float64, order="C").T
            G = dsyrk(1.0, x, beta=1.0, c=G, trans=0, lower=1, overwrite_c=1)
            del x
            advance(1)
        lam = torch.from_numpy(eigvalsh(G, lower=True, overwrite_a=True, check_finite=False, driver="evd"))
    else:
        Gt = torch.zeros(k, k, dtype=torch.float64, device=a.device)
        for lo in range(0, long, step):
            b = (a[:, lo:lo + step] if left else a[lo:lo + step, :].mT).to(torch.float64)
            Gt.addmm_(b, b.mT)
            del b
            advance(1)
        lam = torch.linalg.eigvalsh(Gt)
    advance(units - blocks)
    return lam.flip(-1)


def _values(A: torch.Tensor, method: str, solver32: bool = False) -> torch.Tensor:
    if method == "gram32":
        return _gram32_eigvalsh(A, torch.float32 if solver32 else torch.float64).clamp_min(0).sqrt()
    if method == "svd":
        m, n = A.shape[-2:]
        return torch.linalg.svdvals(A.mT.contiguous() if m < n else A)
    lam, _, _ = _gram_eigh(A, vectors=False)
    return lam.clamp_min(0).sqrt().to(A.dtype)


def _full(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m, n = A.shape[-2:]
    if m < n:  # LAPACK is several times faster on the tall transpose: Aᵀ = V Σ Uᵀ
        V, S, Uh = torch.linalg.svd(A.mT.contiguous(), full_matrices=False)
        return Uh.mT, S, V.mT
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    return U, S, Vh


def _topk_gram(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lam, Q, left = _gram_eigh(A, vectors=True)
    lam, Q = lam[..., :k], Q[..., :k]  # type: ignore[index]
    S = lam.clamp_min(0).sqrt()
    A64 = A.to(torch.float64)
    safe = torch.where(S > 0, S, torch.ones_like(S))
    if left:
        U = Q
        Vh = (A64.mT @ U / safe.unsqueeze(-2)).mT
    else:
        Vh = Q.mT
        U = A64 @ Q / safe.unsqueeze(-2)
    return U.to(A.dtype), S.to(A.dtype), Vh.to(A.dtype)


def _topk_lanczos(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from scipy.sparse.linalg import svds

    Us, Ss, Vs = [], [], []
    for a in A:
        u, s, vh = svds(a.detach().cpu().numpy().astype(np.float64), k=k, random_state=0)
        order = np.argsort(s)[::-1]
        Us.append(torch.from_numpy(u[:, order].copy()))
        Ss.append(torch.from_numpy(s[order].copy()))
        Vs.append(torch.from_numpy(vh[order].copy()))
    cast = lambda xs: torch.stack(xs).to(device=A.device, dtype=A.dtype)  # noqa: E731
    return cast(Us), cast(Ss), cast(Vs)


def _topk_randomized(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # reproducible sketch, without touching the caller's stream
    try:
        U, S, V = torch.svd_lowrank(A, q=min(k + 10, min(A.shape[-2:])), niter=4)
    finally:
        torch.random.set_rng_state(gen_state)
    return U[..., :k], S[..., :k], V[..., :k].mT


#: What one layer's SVD yields: U (None for values only), S, Vh (None for values only), ‖W̄‖²_F per group.
_Parts = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None, torch.Tensor]


def _run_batch(A: torch.Tensor, mode: str, method: str, k: int | None,
               solver32: bool = False) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    m, n = A.shape[-2:]
    r = min(m, n)
    if mode == "values":
        return None, _values(A, method, solver32), None
    if mode == "full" or (k is not None and k >= r):
        U, S, Vh = _full(A)
    elif method == "gram":
        U, S, Vh = _topk_gram(A, k)  # type: ignore[arg-type]
    elif method == "lanczos":
        U, S, Vh = _topk_lanczos(A, k)  # type: ignore[arg-type]
    elif method == "randomized":
        U, S, Vh = _topk_randomized(A, k)  # type: ignore[arg-type]
    else:
        U, S, Vh = _full(A)
    if mode == "topk":
        U, S, Vh = U[..., :k], S[..., :k], Vh[..., :k, :]
    U_fixed, Vh_fixed = _fix_signs(U, Vh)
    return U_fixed, S, Vh_fixed


def _resolve_method(mode: str, method: str, m: int, n: int, device: torch.device) -> str:
    if method != "auto":
        return method
    if mode == "values":
        return "gram"
    if mode == "topk":
        return "svd" if min(m, n) <= 1024 else "gram"
    return "svd"


# --------------------------------------------------------------------------- cache


def _cache_key(digest: str, mode: str, method: str, k: int | None) -> str:
    h = hashlib.sha256()
    h.update(f"{_CACHE_VERSION}|{mode}|{method}|{k}|".encode())
    h.update(digest.encode())
    return h.hexdigest()


def _cache_identity(name: str, A: torch.Tensor, digest: str, mode: str, method: str, k: int | None) -> dict[str, str]:
    """What a cache entry must have been computed from: written into its metadata, checked on every read."""
    return {"format": _CACHE_VERSION, "layer": name, "shape": "x".join(map(str, A.shape)),
            "dtype": str(A.dtype).removeprefix("torch."), "weight_digest": digest,
            "route": f"mode={mode} method={method} k={k}"}


def _payload_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """XXH3-128 of a cache entry's tensors: names, dtypes, shapes and bytes, in name order."""
    import xxhash

    h = xxhash.xxh3_128()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # numpy declares the buffer protocol only for Python >= 3.12
    return h.hexdigest()


def _expected_shapes(A: torch.Tensor, mode: str, k: int | None) -> dict[str, tuple[int, ...]]:
    g, m, n = A.shape
    r = min(m, n) if mode != "topk" or k is None else min(k, m, n)
    shapes: dict[str, tuple[int, ...]] = {"S": (g, r), "fro2": (g,)}
    if mode != "values":
        shapes.update(U=(g, m, r), Vh=(g, r, n))
    return shapes


def _cache_read(path: Path, identity: Mapping[str, str],
                shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """A cache entry that passes every check, or ``(None, why not)``; ``(None, None)`` when there is none.

    Checked: the XXH3-128 of the tensors against the one in the entry's metadata (flipped
    or truncated bytes), the identity it was written for (weight digest, shape, dtype,
    route; an entry copied under another key), the tensors' names, shapes and finiteness.
    The layer name is recorded but not compared: layers with identical weights share an entry.
    """
    from safetensors import safe_open

    if not path.is_file():
        return None, None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # a damaged cache entry is recomputed, never trusted
        return None, f"unreadable ({type(exc).__name__})"
    if meta.get("xxh3_128") != _payload_digest(tensors):
        return None, "its contents do not match their XXH3-128 checksum"
    for key, want in identity.items():
        if key != "layer" and meta.get(key) != want:
            return None, f"it was written for {key} {meta.get(key)!r}, not {want!r}"
    if set(tensors) != set(shapes) or any(tuple(tensors[n].shape) != s for n, s in shapes.items()):
        return None, "its tensors do not have the layer's shapes"
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
        return None, "it holds non-finite values"
    return tensors, None


def _cache_write(path: Path, tensors: dict[str, torch.Tensor], identity: Mapping[str, str]) -> None:
    from safetensors.torch import save_file

    from convsvd._meta import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**identity, "xxh3_128": _payload_digest(cpu)}
    write_atomic(path, lambda p: save_file(cpu, str(p), metadata=meta))


def _fro2(A: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm of each group's matrix (float64).

    float64 matrices are summed in float64. float32 ones (the only other kind) take each row's norm in
    float32 (vectorised pairwise sums: relative error a few ``u = 2⁻²⁴``) and add the
    squared row norms in float64 — about 15× faster than converting the matrix to
    float64, with a relative error below 1e-6.
    """
    if A.dtype == torch.float64:
        return torch.linalg.vector_norm(A, dim=(-2, -1)).pow(2).cpu()
    rows = torch.linalg.vector_norm(A, dim=-1).to(torch.float64)
    return rows.pow(2).sum(dim=-1).cpu()


# --------------------------------------------------------------------------- public entry


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def decompose(
    source: object,
    *,
    mode: str = "full",
    k: int | None = None,
    method: str = "auto",
    cache_dir: PathLike | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
    **options: Unpack[TargetOptions],
) -> Decomposition:
    """SVD of every (or every selected) linear map of a model.

    Parameters
    ----------
    source : Target, nn.Module, ModelWeights, path, built-in name (``"digits-cnn@5"``) or ``"pkg.mod:factory"``
        Anything :func:`convsvd.target.resolve` accepts.
    mode : {"full", "values", "topk"}
    k : int, optional
        Number of leading triplets for ``mode="topk"``.
    method : {"auto", "svd", "gram", "gram32", "lanczos", "randomized"}
        See the module docstring for what each route does and when it is accurate.
    cache_dir : path, optional
        Reuse results keyed by a digest of the matrix bytes (XXH3-128) and the options.
    progress : bool, None or callable
        Progress bar (None: automatic for many layers) or ``fn(done, total, what)``.
    **options
        Checked by :func:`convsvd.target.resolve` (or carried by a Target): ``layers`` (glob
        patterns of layer names, comma-separated in a string); ``dtype`` ({"float32", "float64"}:
        precision of the SVD; default the weights' own, half precisions → float32); ``device``
        (default: CUDA when present, else CPU; results stay there); ``fold_bn`` (fold a BatchNorm
        that directly follows a layer into it; the model is unchanged).

    Returns
    -------
    Decomposition
        ``{name: LayerSVD}`` in model order.

    >>> from torch import nn
    >>> d = decompose(nn.Conv2d(3, 8, 3), mode="values")
    >>> d["<root>"].S.shape
    torch.Size([1, 8])
    """
    check.choice(mode, "mode", MODES)
    check.choice(method, "method", METHODS)
    target = resolve(source, **options)
    dtype = target.dtype
    if method == "gram32" and mode != "values":
        raise InputError(f"method 'gram32': computes singular values only; expected mode='values', got {mode!r}")
    if method == "gram32" and dtype in ("float64", torch.float64):
        raise InputError("dtype float64: method 'gram32' forms the Gram matrix in float32; use method='gram' for float64")
    solver32 = method == "gram32" and dtype in ("float32", torch.float32)
    if mode == "topk":
        k = check.integer(k, "k", minimum=1)
    fold_bn = target.fold_bn
    layers = None if target.layers is None else list(target.layers)  # as written into the run metadata
    dev = target.device if target.device is not None else default_device()
    mw = target.selected

    def target_dtype(spec: LayerSpec) -> torch.dtype:
        if method == "gram32":
            return torch.float32
        if dtype is not None:
            return dtype
        return spec.weight.dtype if spec.weight.dtype in (torch.float32, torch.float64) else torch.float32

    mats = {s.name: unfolded(s, target_dtype(s)) for s in mw.layers}
    specs = {s.name: s for s in mw.layers}
    methods = {n: _resolve_method(mode, method, *specs[n].unfolded_shape, dev) for n in mats}
    results: dict[str, _Parts] = {}

    cache = Path(cache_dir) if cache_dir is not None else None
    keys: dict[str, str] = {}
    identities: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    if cache is not None:
        for n, A in mats.items():
            route = methods[n] + ("/f32" if solver32 else "")
            digest = tensor_digest(A)
            keys[n] = _cache_key(digest, mode, route, k)
            identities[n] = _cache_identity(n, A, digest, mode, route, k)
            path = cache / f"{keys[n]}.safetensors"
            hit, why = _cache_read(path, identities[n], _expected_shapes(A, mode, k))
            if hit is not None:
                results[n] = (hit.get("U"), hit["S"], hit.get("Vh"), hit["fro2"])
            elif why is not None:
                notes.append(f"cache entry {path} for layer {n!r} not used: {why}; recomputed and rewritten")

    from convsvd._progress import progress as _progress

    todo = [n for n in mats if n not in results]
    stream = [n for n in todo if _streamed(mats[n].shape, mode, methods[n])]
    todo = [n for n in todo if n not in stream]
    units = {n: specs[n].groups * _stream_plan(*mats[n].shape[1:])[3] for n in stream}
    buckets: dict[tuple, list[str]] = {}
    for n in todo:
        A = mats[n]
        buckets.setdefault((tuple(A.shape[1:]), A.dtype, methods[n]), []).append(n)

    with _progress(len(todo) + sum(units.values()), "SVD", progress) as bar:
        for n in stream:  # big values-only layers: one at a time, in bounded memory, progress within the layer
            A = mats[n].to(dev)
            what = f"{n} {A.shape[1]}×{A.shape[2]}"
            lam = torch.stack([_streamed_gram_eigvalsh(A[j], lambda u: bar.advance(u, what)) for j in range(len(A))])
            res: _Parts = (None, lam.clamp_min(0).sqrt().to(A.dtype), None, _fro2(mats[n]))
            results[n] = res
            if cache is not None:
                _cache_write(cache / f"{keys[n]}.safetensors", {"S": res[1], "fro2": res[3]}, identities[n])
        for (shape, dt, meth), names in buckets.items():
            per = max(1, _BATCH_BYTES // max(1, math.prod(shape) * 8))
            chunk: list[str] = []
            groups_in_chunk = 0
            for i, n in enumerate(names):
                chunk.append(n)
                groups_in_chunk += specs[n].groups
                if groups_in_chunk >= per or i == len(names) - 1:
                    A = (mats[chunk[0]] if len(chunk) == 1 else torch.cat([mats[c] for c in chunk])).to(dev)
                    U, S, Vh = _run_batch(A, mode, meth, k, solver32)
                    off = 0
                    for c in chunk:
                        g = specs[c].groups
                        sl = slice(off, off + g)
                        res = (None if U is None else U[sl], S[sl], None if Vh is None else Vh[sl], _fro2(mats[c]))
                        results[c] = res
                        if cache is not None:
                            _cache_write(cache / f"{keys[c]}.safetensors",
                                         {kk: v for kk, v in zip(("U", "S", "Vh", "fro2"), res) if v is not None},
                                         identities[c])
                        off += g
                    bar.advance(len(chunk), f"{shape[0]}×{shape[1]}")
                    chunk, groups_in_chunk = [], 0

    out: dict[str, LayerSVD] = {}
    for n, A in mats.items():
        U, S, Vh, fro2 = results[n]
        spec = specs[n]
        out[n] = LayerSVD(
            name=n, kind=spec.kind, groups=spec.groups, shape=spec.unfolded_shape,
            weight_shape=tuple(spec.weight.shape),
            S=S.to(dev), U=None if U is None else U.to(dev), Vh=None if Vh is None else Vh.to(dev),
            fro2=fro2.to(dev),
            mode=mode, method=methods[n], folded=spec.folded,
        )
    recorded: dict[str, object] = dict(
                   mode=mode, k=k, dtype=str(dtype) if dtype else "weights", device=str(dev), method=method,
                   fold_bn=fold_bn, layers=layers)
    return Decomposition(out, mw.skipped, mw.source, recorded, mw, tuple(notes))
