"""Contributions of a layer's input neurons to its output neurons, batched over inputs.

Every layer computes its output entries ``y[o, p]`` (channel ``o``, position ``p``)
from the entries ``x_a[c, q]`` of its inputs ``a``. The *element contribution* of
``x_a[c, q]`` to ``y[o, p]`` is the term it adds (the bias is nobody's):

- linear / conv: ``W[o, c, tap] · x[c, q]`` where ``q`` is the position the tap
  reads for ``p`` (stride, padding, dilation and groups included; a linear layer
  after a flatten is the conv whose kernel covers its whole input);
- average pooling (plain or adaptive): ``A[p, q] · x[c, q]`` with ``A`` the pooling
  weights, for the same channel;
- max pooling: ``x[c, q*]`` for the entry ``q*`` the maximum came from, 0 elsewhere;
- residual sum: ``x_a[o, p]`` from each summand; concatenation: the entry it copies.

A neuron is a set of entries: one entry (``element``), one channel (``channel``),
one position across channels (``spatial``), or one direction of the channel space
(``svd``: the left singular vectors ``u_i`` of a conv/linear layer, completed to an
orthonormal basis; other layers keep their channels). The contribution of input
neuron ``j`` to output neuron ``i`` is the sum of the element contributions from
the entries of ``j`` to the entries of ``i``; for ``svd``, the input is written in
its layer's basis, ``x = Σ_j q_j (q_jᵀ x)``, so neuron ``j`` contributes the terms of
``q_j (q_jᵀ x)``, and an output SVD neuron sums ``u_iᵀ`` of its output channels'
terms.

DeepDataProfiler's channel contribution of a conv (``rule="ddp"``) is instead the
largest positive per-position term ``max_p max(0, Σ_tap W[o, c, tap] x[c, q])``.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from convsvd.profiles import _kernels
from convsvd.profiles.graph import Layer

__all__ = ["LayerOp", "NEURON_TYPES", "neuron_count"]

#: Neuron types.
NEURON_TYPES = ("channel", "element", "spatial", "svd")

_ROW_BUDGET = 1 << 23  # entries of a dense block of rows computed at once
_DDP_BUDGET = 1 << 19  # input entries of one depthwise call on the CPU (small: it and its output stay in cache)
_DDP_BUDGET_GPU = 1 << 25  # on a GPU: few, large calls (each launch costs more than its memory)


def _window_sums(x: torch.Tensor, dim: int, k: int, d: int, n: int) -> torch.Tensor:
    """Along ``dim`` (length ``L``): for tap ``t < k``, the float64 sum of entries ``t·d … t·d + n − 1``.

    ``L − n = (k − 1)·d``, so a tap leaves out ``t·d`` entries at the start and ``(k − 1 − t)·d`` at
    the end: the total minus two short running sums.
    """
    L = x.shape[dim]
    E = L - n
    total = x.sum(dim, keepdim=True, dtype=torch.float64)
    if E == 0:
        return total
    head = torch.cat([torch.zeros_like(total), x.narrow(dim, 0, E).to(torch.float64).cumsum(dim)], dim)
    tail = torch.cat([torch.zeros_like(total), x.narrow(dim, L - E, E).to(torch.float64).flip(dim).cumsum(dim)], dim)
    t = torch.arange(k, device=x.device)
    return total - head.index_select(dim, t * d) - tail.index_select(dim, (k - 1 - t) * d)


def _strided_window_sums(x: torch.Tensor, dim: int, k: int, d: int, s: int, n: int, pad: int) -> torch.Tensor:
    """Along ``dim`` of an unpadded ``x`` (zero padding ``pad`` before it): for tap ``t < k``, the sum of
    the entries ``t·d + j·s − pad`` for ``j < n`` that lie inside ``x``.

    With stride 1 a difference of prefix sums; with a stride, the same on each residue class mod ``s``.
    """
    L = x.shape[dim]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    t = torch.arange(k, device=x.device)
    start = t * d - pad  # first index read by tap t (may be < 0: padding)
    if s == 1:  # the total minus the few entries a tap misses at each end (short running sums only)
        lo = start.clamp(0, L)
        hi = (start + n).clamp(0, L)
        a, e = int(lo.max()), int(L - hi.min())
        total = x.sum(dim, keepdim=True, dtype=acc)
        zero = torch.zeros_like(total)
        head = torch.cat([zero, x.narrow(dim, 0, a).to(acc).cumsum(dim)], dim)
        tail = torch.cat([zero, x.narrow(dim, L - e, e).to(acc).flip(dim).cumsum(dim)], dim)
        return total - head.index_select(dim, lo) - tail.index_select(dim, L - hi)
    out = []
    for tt in range(k):
        idx = start[tt] + torch.arange(n, device=x.device) * s
        idx = idx[(idx >= 0) & (idx < L)]
        out.append(x.index_select(dim, idx).to(acc).sum(dim, keepdim=True))
    return torch.cat(out, dim)


def neuron_count(layer: Layer, ntype: str) -> int:
    """Neurons of ``layer`` for a neuron type (``svd`` keeps the channel count: a complete basis)."""
    C, H, W = layer.shape
    return {"channel": C, "svd": C, "spatial": H * W, "element": C * H * W}[ntype]


def _unique_columns(vals: torch.Tensor, cols: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse rows with their columns ascending, the values of a repeated column summed (in slot order);
    the slots left over get column ``width`` and value 0."""
    cols, order = cols.sort(dim=1, stable=True)
    vals = vals.gather(1, order)
    first = torch.ones_like(cols, dtype=torch.bool)
    first[:, 1:] = cols[:, 1:] != cols[:, :-1]
    slot = first.cumsum(1) - 1
    out_v = torch.zeros_like(vals).scatter_add_(1, slot, vals)
    return out_v, torch.full_like(cols, width).scatter_(1, slot, cols)


def _dense(vals: torch.Tensor, cols: torch.Tensor, width: int) -> torch.Tensor:
    """``(M, width)`` rows from sparse rows (column ``width``: nothing)."""
    out = vals.new_zeros(vals.shape[0], width + 1)
    return out.scatter_(1, cols, vals)[:, :width]


class LayerOp:
    """The contributions of one layer for one batch.

    Parameters
    ----------
    layer : Layer
    inputs : list of torch.Tensor
        ``(B, C_a, H_a, W_a)`` per input layer ``a``, as the layer read them.
    in_layers : list of Layer
    rot_in : list of torch.Tensor or None
        For ``svd``: the ``(C_a, C_a)`` orthonormal basis of each input layer (None: its channels).
    rot_out : torch.Tensor or None
        For ``svd``: the ``(C, C)`` basis of this layer's output channels (conv/linear only).
    head : torch.Tensor or None
        The layer's own output ``(B, C, H, W)`` when the caller has it (spares a max pooling its
        recomputation when only the pooled values are needed).
    """

    def __init__(self, layer: Layer, inputs: list[torch.Tensor], in_layers: list[Layer],
                 rot_in: list[torch.Tensor | None] | None = None, rot_out: torch.Tensor | None = None,
                 head: torch.Tensor | None = None) -> None:
        self.layer, self.xs, self.in_layers = layer, inputs, in_layers
        self.rot_in = rot_in or [None] * len(inputs)
        self.rot_out = rot_out
        self.B = inputs[0].shape[0] if inputs else 0
        self._cache: dict[str, object] = {}
        self._head = head
        self._pool: tuple[torch.Tensor, torch.Tensor] | None = None
        if layer.kind == "conv":
            self._conv_setup()
        elif layer.kind == "avgpool":
            self.A = self._pool_matrix()

    # ------------------------------------------------------------------ max pooling, computed when asked

    def _maxpool(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pool is None:
            y, idx = self.layer.fn(self.xs[0])  # type: ignore[misc]
            self._pool = (y.flatten(2), idx.flatten(2))
        return self._pool

    @property
    def y(self) -> torch.Tensor:
        """``(B, C, P)`` max-pooled values."""
        if self._pool is None and self._head is not None:
            return self._head.flatten(2)
        return self._maxpool()[0]

    @property
    def idx(self) -> torch.Tensor:
        """``(B, C, P)`` flat input position each maximum came from."""
        return self._maxpool()[1]

    # ------------------------------------------------------------------ geometry

    def _conv_setup(self) -> None:
        m = cast(nn.Conv2d, self.layer.module)  # a conv layer's module
        x = self.xs[0]
        C, H, W = x.shape[1:]
        pad: tuple[int, ...] | None
        if isinstance(m.padding, str):  # "same" / "valid"
            if m.padding == "valid":
                pad = (0, 0)
            else:
                tot = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
                pad = None
                self._pads = (tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2)
        else:
            pad = m.padding
        if pad is not None:
            self._pads = (pad[1], pad[1], pad[0], pad[0])
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        self._mode = mode
        self.kk, self.Q = m.kernel_size[0] * m.kernel_size[1], H * W

    @property
    def idxmap(self) -> torch.Tensor:
        """``(kk, P)``: the input position each tap of a conv reads for each output position, or -1
        (zero padding); built when element or spatial rows first ask for it."""
        got = self._cache.get("idxmap")
        if got is None:
            m = cast(nn.Conv2d, self.layer.module)  # a conv layer's module
            H, W = self.xs[0].shape[2:]
            pos = torch.arange(H * W, dtype=torch.float64, device=self.xs[0].device).view(1, 1, H, W) + 1
            pos = F.pad(pos, self._pads, mode=self._mode) if self._mode != "constant" else F.pad(pos, self._pads)
            kw = dict(kernel_size=m.kernel_size, dilation=m.dilation, stride=m.stride)
            got = self._cache["idxmap"] = F.unfold(pos, **kw).view(self.kk, -1).round().long() - 1
        return cast(torch.Tensor, got)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self._pads, mode=self._mode) if self._mode != "constant" else F.pad(x, self._pads)

    def _tap_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, kk)``: for each tap, the sum over output positions of the input entry it reads.

        Equals the sum over positions of the conv's patches (im2col) without building them: for stride 1, the sum of
        every row (column) minus the few rows (columns) a tap never reads; else a convolution with
        a kernel of ones.
        """
        m = cast(nn.Conv2d, self.layer.module)  # a conv layer's module
        (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
        if self._mode == "constant":  # zero padding: windows of prefix sums of the unpadded input, any stride
            B, C, H, W = x.shape
            left, _, top, _ = self._pads
            Hp, Wp = H + self._pads[2] + self._pads[3], W + self._pads[0] + self._pads[1]
            Ho, Wo = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
            rows = _strided_window_sums(x, 2, kh, dh, sh, Ho, top)  # (B, C, kh, W)
            return _strided_window_sums(rows, 3, kw, dw, sw, Wo, left).reshape(B, C, kh * kw).to(x.dtype)
        xp = self._pad(x)
        B, C, Hp, Wp = xp.shape
        Ho, Wo = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
        if (sh, sw) == (1, 1):
            rows = _window_sums(xp, 2, kh, dh, Ho)  # (B, C, kh, Wp)
            return _window_sums(rows, 3, kw, dw, Wo).reshape(B, C, kh * kw).to(x.dtype)
        ones = xp.new_ones(1, 1, Ho, Wo)
        out = F.conv2d(xp.reshape(B * C, 1, Hp, Wp), ones, stride=(dh, dw), dilation=(sh, sw))
        return out[:, :, :kh, :kw].reshape(B, C, kh * kw)

    def _weight_full(self) -> torch.Tensor:
        """``(O, C, kk)`` weight of a conv with its groups written out (zeros across groups)."""
        if self.layer.kind == "linear":
            lin = cast(nn.Linear, self.layer.module)
            C, H, W = self.in_layers[0].shape
            return lin.weight.detach().reshape(lin.out_features, C, H * W)
        m = cast(nn.Conv2d, self.layer.module)  # a conv layer's module
        Wt = m.weight.detach()
        O, Cg = Wt.shape[:2]
        g = m.groups
        if g == 1:
            return Wt.reshape(O, Cg, -1)
        full = Wt.new_zeros(O, Cg * g, Wt[0, 0].numel())
        og = O // g
        for j in range(g):
            full[j * og:(j + 1) * og, j * Cg:(j + 1) * Cg] = Wt[j * og:(j + 1) * og].reshape(og, Cg, -1)
        return full

    def _pool_matrix(self) -> torch.Tensor:
        """``(P, Q)`` weights of a (adaptive) average pooling: the Jacobian of the pooling of one channel.

        Exact for every kernel, stride, padding and ``count_include_pad``; costs ``P`` reverse passes
        (vectorised), never a ``Q × Q`` identity.
        """
        _, _, H, W = self.xs[0].shape
        x0 = torch.zeros(1, 1, H, W, dtype=self.xs[0].dtype, device=self.xs[0].device)
        fn = self.layer.fn
        with torch.enable_grad():
            J = torch.autograd.functional.jacobian(lambda z: fn(z).reshape(-1), x0, vectorize=True)  # type: ignore[misc]
        return J.reshape(J.shape[0], H * W).contiguous()

    def _x(self, a: int) -> torch.Tensor:
        """Input ``a`` as ``(B, C, Q)``, in its layer's basis for ``svd``."""
        x = self.xs[a].flatten(2)
        R = self.rot_in[a]
        return x if R is None else torch.einsum("bcq,cj->bjq", x, R.to(x.device, x.dtype))

    # ------------------------------------------------------------------ channel / svd

    def _weighted_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv / linear: ``(O, J, kk)`` weights (in the SVD bases for ``svd``) and ``(B, J, kk)`` tap sums
        of the input, so that the contribution of input neuron ``j`` to output neuron ``o`` is
        ``Σ_k W[o, j, k] · S[b, j, k]``."""
        parts = self._cache.get("parts")
        if parts is None:
            kind = self.layer.kind
            Wf = self._weight_full()
            if self.rot_out is not None:
                Wf = torch.einsum("oi,ock->ick", self.rot_out.to(Wf.device, Wf.dtype), Wf)
            R = self.rot_in[0]
            if R is not None:
                Wf = torch.einsum("ock,cj->ojk", Wf, R.to(Wf.device, Wf.dtype))
            x = self.xs[0]
            if R is not None:
                x = torch.einsum("bchw,cj->bjhw", x, R.to(x.device, x.dtype))
            S = x.flatten(2) if kind == "linear" else self._tap_sums(x)
            parts = self._cache["parts"] = (Wf, S)
        return parts  # type: ignore[return-value]

    def channel(self) -> torch.Tensor:
        """``(B, O, I)`` contributions between channel (or SVD) neurons, inputs concatenated."""
        L, kind = self.layer, self.layer.kind
        if kind in ("conv", "linear"):
            Wf, S = self._weighted_parts()
            return torch.einsum("ojk,bjk->boj", Wf, S)
        B, C = self.B, L.channels
        if kind == "maxpool":
            R = self.rot_in[0]
            if R is None:
                return torch.diag_embed(self.y.sum(-1))
            xr = self._x(0)  # (B, J, Q)
            J = xr.shape[1]
            g = torch.gather(xr.unsqueeze(1).expand(B, C, J, xr.shape[2]), 3,
                             self.idx.unsqueeze(2).expand(B, C, J, self.idx.shape[2]))
            return R.to(xr.device, xr.dtype).unsqueeze(0) * g.sum(-1)
        if kind == "avgpool":
            w = self.A.sum(0)
            xr = self._x(0)
            s = (xr * w).sum(-1)  # (B, J)
            R = self.rot_in[0]
            return torch.diag_embed(s) if R is None else R.to(s.device, s.dtype).unsqueeze(0) * s.unsqueeze(1)
        parts = []
        off = 0
        for a, il in enumerate(self.in_layers):
            s = self._x(a).sum(-1)  # (B, J_a)
            R = self.rot_in[a]
            blk = s.new_zeros(B, C, s.shape[1])
            lo = off if kind == "cat" else 0
            hi = lo + il.channels
            if R is None:
                blk[:, lo:hi] = torch.diag_embed(s)
            else:
                blk[:, lo:hi] = R.to(s.device, s.dtype).unsqueeze(0) * s.unsqueeze(1)
            parts.append(blk)
            off += il.channels
        return torch.cat(parts, 2)

    def ddp_channel_rows(self, b: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """``(M, I)`` DeepDataProfiler's channel contributions of rows ``(b, o)`` (``max_p`` of positive terms).

        For a conv on the CPU, the compiled kernel of :mod:`convsvd.profiles._kernels`; elsewhere the
        per-channel terms of a few rows at a time are one depthwise convolution: each row's input
        channels (those of its output channel's group), gathered once per row, with the filters
        ``W[o, c]``; the chunks are small enough to stay in cache.
        ``max_p max(0, z_p) = max(0, max_p z_p)``: the maximum is taken first.
        """
        if self.layer.kind != "conv":
            return self.channel()[b, o]
        m = self.layer.module
        assert isinstance(m, nn.Conv2d)
        Wt = m.weight.detach()  # (O, C/g, kh, kw)
        O, Cg = Wt.shape[:2]
        g = m.groups
        M = len(b)
        out = Wt.new_zeros(M, Cg * g)
        if M == 0:
            return out
        left, _, top, _ = self._pads
        grp = o // (O // g)  # each row reads its group's channels only
        if _kernels.available(self.xs[0]):
            zero = self._mode == "constant"
            z_max = _kernels.ddp_conv_max(self.xs[0] if zero else self._pad(self.xs[0]), Wt, b, o,
                                          stride=tuple(m.stride), dilation=tuple(m.dilation),
                                          top=top if zero else 0, left=left if zero else 0,
                                          out_size=self.layer.shape[1:], groups=g).to(out.device)
        else:
            z_max = out if g == 1 else Wt.new_empty(M, Cg)
            self._ddp_depthwise(b, o, grp, z_max)
        z_max.clamp_(min=0)
        if g == 1:
            return z_max
        return out.scatter_(1, (grp * Cg).unsqueeze(1) + torch.arange(Cg, device=b.device), z_max)

    def _ddp_depthwise(self, b: torch.Tensor, o: torch.Tensor, grp: torch.Tensor, z_max: torch.Tensor) -> None:
        """``z_max[r, c] = max_p`` of row ``r``'s terms from its group's channel ``c``, by depthwise
        convolutions of a few rows at a time."""
        m = cast(nn.Conv2d, self.layer.module)  # a conv layer's module
        (kh, kw), stride, dilation = m.kernel_size, tuple(m.stride), tuple(m.dilation)
        Wt = m.weight.detach()
        Cg, g, M = Wt.shape[1], m.groups, len(b)
        left, right, top, bottom = self._pads
        if self._mode == "constant" and left == right and top == bottom:  # the convolution pads, no copy
            xp, padding = self.xs[0].contiguous(), (top, left)
        else:
            xp, padding = self._pad(self.xs[0]).contiguous(), (0, 0)
        B, _, Hp, Wp = xp.shape
        src = xp.view(B * g, Cg, Hp, Wp)  # an input's group of channels, one per row
        idx = b * g + grp
        filt = Wt.index_select(0, o).view(M * Cg, 1, kh, kw)
        budget = _DDP_BUDGET if xp.device.type == "cpu" else _DDP_BUDGET_GPU
        step = min(M, max(1, budget // max(1, Cg * Hp * Wp)))
        rows = xp.new_empty(step, Cg, Hp, Wp)  # one buffer for every chunk's rows
        for lo in range(0, M, step):
            hi = min(M, lo + step)
            n = hi - lo
            xr = torch.index_select(src, 0, idx[lo:hi], out=rows[:n])
            z = F.conv2d(xr.view(1, n * Cg, Hp, Wp), filt[lo * Cg:hi * Cg], stride=stride, padding=padding,
                         dilation=dilation, groups=n * Cg)  # (1, n·Cg, Ho, Wo)
            torch.amax(z.view(n, Cg, -1), -1, out=z_max[lo:hi])

    # ------------------------------------------------------------------ element and spatial: sparse rows
    #
    # An element (spatial) neuron has few contributors among many input neurons (a conv's window, a
    # pooling's window, one entry per summand): its row is given as ``(values, columns)``, both
    # ``(M, K)``, the columns ascending along each row but for the slots of column ``width``
    # (no contributor, value 0), no column twice.

    def width(self, ntype: str) -> int:
        """Input neurons of the layer (all its inputs, concatenated) for a neuron type."""
        return sum(neuron_count(il, ntype) for il in self.in_layers)

    def entries(self, ntype: str) -> int:
        """``K``: the slots of one sparse row of :meth:`sparse_rows`."""
        kind, L = self.layer.kind, self.layer
        if ntype in ("channel", "svd"):
            return self.width(ntype)
        if kind == "conv":
            m = cast(nn.Conv2d, L.module)  # a conv layer's module
            return self.kk * (m.in_channels // m.groups if ntype == "element" else 1)
        if kind == "linear":
            return self.width(ntype)
        if kind == "maxpool":
            return 1 if ntype == "element" else L.channels
        if kind == "avgpool":
            return self._avg_support()[0].shape[1]
        return len(self.in_layers)

    def _flat_padded(self, a: int = 0) -> torch.Tensor:
        """``(B, C, Q + 1)``: input ``a`` flattened, with a zero at position ``Q`` (what a padding tap reads)."""
        key = f"flat{a}"
        xf = self._cache.get(key)
        if xf is None:
            x = self.xs[a].flatten(2)
            xf = self._cache[key] = torch.cat([x, x.new_zeros(x.shape[0], x.shape[1], 1)], 2)
        return xf  # type: ignore[return-value]

    def _position_sums(self, a: int = 0) -> torch.Tensor:
        """``(B, Q + 1)``: input ``a`` summed over its channels, position by position (0 at ``Q``)."""
        key = f"possum{a}"
        ps = self._cache.get(key)
        if ps is None:
            x = self.xs[a].flatten(2).sum(1)
            ps = self._cache[key] = torch.cat([x, x.new_zeros(x.shape[0], 1)], 1)
        return ps  # type: ignore[return-value]

    def _avg_support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, w)`` input positions each average-pooled position reads (ascending; ``Q`` past the end)
        and their pooling weights (0 there)."""
        sup = self._cache.get("avg_support")
        if sup is None:
            P, Q = self.A.shape
            nz = self.A != 0
            w = max(1, int(nz.sum(1).max()))
            pos = torch.where(nz, torch.arange(Q, device=self.A.device), Q).sort(1).values[:, :w]
            wt = torch.cat([self.A, self.A.new_zeros(P, 1)], 1).gather(1, pos)
            sup = self._cache["avg_support"] = (pos, wt)
        return sup  # type: ignore[return-value]

    def _spatial_taps(self) -> torch.Tensor:
        """Conv: ``(B, kk, P)``, for each tap the sum over channels (and output channels) of what it adds
        at each output position: a convolution with one output channel per tap."""
        V = self._cache.get("taps")
        if V is None:
            m = cast(nn.Conv2d, self.layer.module)  # a conv layer's module
            Wsum = self._weight_full().sum(0)  # (C, kk)
            C, kk = Wsum.shape
            kh, kw = m.kernel_size
            sel = Wsum.new_zeros(kk, C, kk)
            t = torch.arange(kk, device=Wsum.device)
            sel[t, :, t] = Wsum.T
            left, right, top, bottom = self._pads
            if self._mode == "constant" and left == right and top == bottom:
                x, padding = self.xs[0], (top, left)
            else:
                x, padding = self._pad(self.xs[0]), (0, 0)
            V = F.conv2d(x, sel.view(kk, C, kh, kw), stride=m.stride, padding=padding, dilation=m.dilation)
            V = self._cache["taps"] = V.flatten(2)
        return V  # type: ignore[return-value]

    def sparse_rows(self, ntype: str, b: torch.Tensor, n: torch.Tensor,
                    rule: str = "share") -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, columns)``, both ``(M, K)``: contributions to output neurons ``n`` of inputs ``b``,
        as sparse rows (see above); for ``channel``/``svd`` the dense rows of :meth:`rows`, every column."""
        if ntype in ("channel", "svd"):
            vals = self.rows(ntype, b, n, rule)
            return vals, torch.arange(vals.shape[1], device=vals.device).expand(vals.shape[0], -1)
        if ntype == "spatial":
            return self._spatial_sparse(b, n)
        return self._element_sparse(b, n)

    def _spatial_sparse(self, b: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kind = self.layer.kind
        M = len(b)
        width = self.width("spatial")
        if kind == "conv":
            vals = self._spatial_taps()[b, :, p]  # (M, kk)
            q = self.idxmap[:, p].T
            cols = torch.where(q >= 0, q, width)
            return (vals, cols) if self._mode == "constant" else _unique_columns(vals, cols, width)
        if kind == "linear":
            Wsum = self._weight_full().sum(0)  # (C, Q)
            vals = (self.xs[0].flatten(2)[b] * Wsum).sum(1)
            return vals, torch.arange(width, device=b.device).expand(M, -1)
        if kind == "maxpool":
            return _unique_columns(self.y[b, :, p], self.idx[b, :, p], width)
        if kind == "avgpool":
            pos, wt = self._avg_support()
            return wt[p] * self._position_sums()[b.unsqueeze(1), pos[p]], pos[p]
        pv, pc, off = [], [], 0
        for a, il in enumerate(self.in_layers):  # add, cat: position p of every operand
            pv.append(self._position_sums(a)[b, p])
            pc.append(p + off)
            off += il.positions
        return torch.stack(pv, 1), torch.stack(pc, 1)

    def _element_sparse(self, b: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L, kind = self.layer, self.layer.kind
        P = L.positions
        o, p = e // P, e % P
        M = len(b)
        width = self.width("element")
        if kind == "linear":
            Wf = self._weight_full().flatten(1)  # (O, F)
            return self.xs[0].flatten(1)[b] * Wf[o], torch.arange(width, device=b.device).expand(M, -1)
        if kind == "conv":  # the rows' group channels × taps
            m = cast(nn.Conv2d, L.module)  # a conv layer's module
            Wt = m.weight.detach()
            O, Cg = Wt.shape[:2]
            ch = (o // (O // m.groups)).unsqueeze(1) * Cg + torch.arange(Cg, device=b.device)  # (M, Cg)
            q = self.idxmap[:, p].T  # (M, kk)
            q = torch.where(q >= 0, q, self.Q).unsqueeze(1)  # (M, 1, kk), Q: padding
            xf = self._flat_padded()  # (B, C, Q + 1): one flat index per entry read
            at = (b.view(M, 1, 1) * xf.shape[1] + ch.unsqueeze(2)) * (self.Q + 1) + q
            vals = Wt.reshape(O, Cg, -1)[o] * xf.view(-1)[at]
            cols = torch.where(q < self.Q, ch.unsqueeze(2) * self.Q + q, width)
            vals, cols = vals.flatten(1), cols.flatten(1)
            return (vals, cols) if self._mode == "constant" else _unique_columns(vals, cols, width)
        if kind == "maxpool":
            Q = self.xs[0].shape[2] * self.xs[0].shape[3]
            return self.y[b, o, p].unsqueeze(1), (o * Q + self.idx[b, o, p]).unsqueeze(1)
        if kind == "avgpool":
            Q = self.xs[0].shape[2] * self.xs[0].shape[3]
            pos, wt = self._avg_support()
            vals = wt[p] * self._flat_padded()[b.unsqueeze(1), o.unsqueeze(1), pos[p]]
            return vals, torch.where(pos[p] < Q, o.unsqueeze(1) * Q + pos[p], width)
        pv, pc = [], []
        off = ch0 = 0
        for a, il in enumerate(self.in_layers):
            x = self.xs[a].flatten(1)  # (B, C_a·P)
            if kind == "add":
                pv.append(x[b, e])
                pc.append(e + off)
            else:  # cat: the one operand that holds channel o
                inside = (o >= ch0) & (o < ch0 + il.channels)
                j = ((o - ch0) * P + p).clamp(0, x.shape[1] - 1)
                pv.append(torch.where(inside, x[b, j], 0.0))
                pc.append(torch.where(inside, j + off, width))
            off += il.channels * il.positions
            ch0 += il.channels
        return torch.stack(pv, 1), torch.stack(pc, 1)

    def spatial_rows(self, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``(M, I)`` contributions of input positions to output positions ``p`` of inputs ``b``."""
        return _dense(*self._spatial_sparse(b, p), self.width("spatial"))

    def element_rows(self, b: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``(M, I)`` contributions of input entries to output entries ``e`` (flat ``c·P + p``) of inputs ``b``."""
        return _dense(*self._element_sparse(b, e), self.width("element"))

    def rows(self, ntype: str, b: torch.Tensor, n: torch.Tensor, rule: str = "share") -> torch.Tensor:
        """``(M, I)`` contributions to output neurons ``n`` of inputs ``b`` for a neuron type."""
        if ntype in ("channel", "svd"):
            if rule == "ddp":
                return self.ddp_channel_rows(b, n)
            if self.layer.kind in ("conv", "linear"):  # only the rows asked for, not the (B, O, I) matrix
                Wf, S = self._weighted_parts()
                return torch.einsum("mjk,mjk->mj", Wf[n], S[b])
            full = self._cache.get("channel")
            if full is None:
                full = self._cache["channel"] = self.channel()
            return full[b, n]  # type: ignore[index]
        if ntype == "spatial":
            return self.spatial_rows(b, n)
        return self.element_rows(b, n)
