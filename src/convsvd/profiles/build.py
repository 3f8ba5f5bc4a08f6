"""Build attribution profiles: backwards from a class (or from every layer, as DeepDataProfiler), batched.

``start="class"`` (default). The profile of an input starts at the model's output
with one neuron, the predicted class (or the given target), weight 1. Going
backwards through the layers in reverse topological order, each neuron ``i`` of a
layer with weight ``w_i`` keeps, by the selection rule, the input neurons ``j``
that contribute most to it: each kept pair is a synapse with weight ``s_ij`` (the
relative contribution; a neuron's synapses sum to 1), and ``j`` receives the
flow ``w_i · s_ij``. A neuron's weight is the sum of the flows it receives (each
layer's weights sum to 1 when every neuron has a contributor); its count is 1.
For ``svd`` neurons the output layer's SVD neurons are chosen by their
contributions ``U[k, i] · s_i`` to the class logit ``k``; for ``spatial`` neurons
of a vector output, by the class's own contributions.

``start="layers"`` (DeepDataProfiler's profiles; channel neurons only). Every
layer but the input has its own influential neurons, chosen from its output by
the rule (per channel the largest value over the positions of its tail output,
where the sign agrees with the layer's own output, negatives as 0), count 1 and
the rule's weight; each of them selects its contributors in the input layers
(synapses as above); a contributor's count grows by one per synapse, its weight
does not change.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from convsvd import _validate as check
from convsvd._progress import progress as _progress
from convsvd._typing import PathLike
from convsvd.data.protocol import DataSource, ExpectedInput, check_batch_size
from convsvd.data.sources import as_source
from convsvd.errors import InputError
from convsvd.profiles.contrib import _ROW_BUDGET, NEURON_TYPES, LayerOp, neuron_count
from convsvd.profiles.graph import LayerGraph, layer_graph
from convsvd.profiles.profile import FORMAT, InputProfiles, LayerInfo, _read_meta, _sha256
from convsvd.profiles.run import ProfileRun
from convsvd.profiles.select import RULES, select
from convsvd.signals.influence import check_influence_options

__all__ = ["Profiler", "profile_graph", "STARTS"]

STARTS = ("class", "layers")


def _svd_basis(U: torch.Tensor, out_channels: int) -> torch.Tensor:
    """``(C, C)`` float64 orthonormal basis: the groups' left singular vectors (block-diagonal), then a completion."""
    g, m, r = U.shape
    blk = torch.zeros(out_channels, g * r, dtype=torch.float64)
    for j in range(g):
        blk[j * m:(j + 1) * m, j * r:(j + 1) * r] = U[j].to("cpu", torch.float64)
    if g * r == out_channels:
        return blk
    q, _ = torch.linalg.qr(blk, mode="complete")
    return torch.cat([blk, q[:, g * r:]], 1)


_LINEAR_TOP = 64  # entries of a row sorted first by DeepDataProfiler's linear rule (all of them if that is not enough)


def _ddp_linear_kept(srt: torch.Tensor, bias: torch.Tensor, goal: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """Rows of values sorted descending: ``(accept, weights)``, entries ``0..accept`` kept (zeros weigh 0)."""
    cum = srt.cumsum(1)
    accept = ((cum + bias.unsqueeze(1)) <= goal.unsqueeze(1)).sum(1)
    accept = torch.where(accept < n, accept, accept - 1)
    keep = torch.arange(srt.shape[1], device=srt.device).unsqueeze(0) <= accept.clamp(max=srt.shape[1] - 1).unsqueeze(1)
    denom = cum.gather(1, accept.clamp(max=srt.shape[1] - 1).unsqueeze(1))
    ws = torch.where(keep & (srt > 0), srt / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(srt))
    return accept, ws


def _ddp_linear_weights(z: torch.Tensor, bias: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """``(M, F)`` weights of DeepDataProfiler's linear rule for rows ``z ≥ 0``: sorted descending (ties by
    position), entries kept while ``Σ_kept + bias ≤ goal``, plus one more; weights ``z / Σ_kept``.

    Usually few entries are kept: the ``_LINEAR_TOP`` largest are put in that order first (``topk``,
    then ties by position), which decides every row whose kept entries all lie strictly above the
    smallest of them; the other rows are sorted whole. Same result as sorting every row.
    """
    M, n = z.shape
    w = torch.zeros_like(z)
    K = min(n, _LINEAR_TOP)
    todo = torch.ones(M, dtype=torch.bool, device=z.device)
    if K < n and M:
        v, i = z.topk(K, dim=1)  # the K largest, descending; equal values in any order
        i, p = i.sort(dim=1)
        srt, p = v.gather(1, p).sort(dim=1, descending=True, stable=True)  # ties by position
        order = i.gather(1, p)
        accept, ws = _ddp_linear_kept(srt, bias, goal, n)
        at = srt.gather(1, accept.clamp(max=K - 1).unsqueeze(1))[:, 0]
        todo = (accept >= K - 1) | ((at <= srt[:, K - 1]) & (at > 0))  # a tie may cross the cut: sort it all
        done = ~todo
        w[done] = torch.zeros_like(z[done]).scatter(1, order[done], ws[done])
    if bool(todo.any()):
        srt, order = torch.sort(z[todo], dim=1, descending=True, stable=True)
        _, ws = _ddp_linear_kept(srt, bias[todo], goal[todo], n)
        w[todo] = torch.zeros_like(srt).scatter(1, order, ws)
    return w


def _count_weight_csr(parts: list[tuple[torch.Tensor, ...]], cols: list[torch.Tensor], at: int,
                      shape: tuple[int, int]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Counts and weights of the records ``(input, ..., count, weight)`` as two CSR matrices, duplicates
    summed (the weights without the entries that sum to 0)."""
    if not parts:
        return sp.csr_matrix(shape, dtype=np.int64), sp.csr_matrix(shape, dtype=np.float64)
    b = torch.cat([p[0] for p in parts]).cpu().numpy().astype(np.int64)
    col = torch.cat(cols).cpu().numpy().astype(np.int64)
    c = torch.cat([p[at] for p in parts]).cpu().numpy()
    w = torch.cat([p[at + 1] for p in parts]).cpu().numpy().astype(np.float64)
    key, inv = np.unique(b * shape[1] + col, return_inverse=True)
    counts = np.bincount(inv, weights=c, minlength=len(key)).round().astype(np.int64)
    weights = np.bincount(inv, weights=w, minlength=len(key))
    rows, cols_ = key // shape[1], key % shape[1]
    indptr = np.concatenate([[0], np.bincount(rows, minlength=shape[0]).cumsum()])
    cm = sp.csr_matrix((counts, cols_, indptr), shape=shape)
    nz = weights != 0
    indptr = np.concatenate([[0], np.bincount(rows[nz], minlength=shape[0]).cumsum()])
    wm = sp.csr_matrix((weights[nz], cols_[nz], indptr), shape=shape)
    return cm, wm


class Profiler:
    """Attribution profiles of a model, batch by batch.

    Parameters
    ----------
    model : nn.Module
    example : torch.Tensor
        One input batch (its shape tells every activation's shape).
    neuron_type : {"channel", "element", "spatial", "svd"}
    rule : {"share", "ddp"}
    threshold : float, optional
        Default 0.1.
    top_k : int, optional
        Keep the ``k`` largest contributions instead (``share`` rule only).
    start : {"class", "layers"}
    unknown : {"refuse", "pass"}
        See :func:`convsvd.profiles.graph.layer_graph`.
    layers : str or sequence of str, optional
        With ``start="layers"``: glob patterns of the layers to profile (DeepDataProfiler's
        ``layers_to_profile``); the others get no influential neurons of their own, but still the
        counts of the contributors a profiled layer finds in them. Default: every layer.
    channels_last : bool, optional
        Run the model on channels-last copies of the inputs (oneDNN's fast layout for CPU
        convolutions; the model itself is not touched). Activations equal the plain forward pass's
        up to float rounding. Default: on for float32 image batches on the CPU when the model accepts
        them (checked on ``example``), else off.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    >>> p = Profiler(net, torch.zeros(1, 1, 4, 4)).run(torch.rand(5, 1, 4, 4))
    >>> len(p), p.layer_names
    (5, ['x_in', '0', '3'])
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, *, neuron_type: str = "channel", rule: str = "share",
                 threshold: float | None = None, top_k: int | None = None, start: str = "class",
                 unknown: str = "refuse", svd: object = None, channels_last: bool | None = None,
                 layers: str | Sequence[str] | None = None) -> None:
        if neuron_type not in NEURON_TYPES:
            raise InputError(f"neuron_type: expected one of {', '.join(NEURON_TYPES)}, got {neuron_type!r}")
        if rule not in RULES:
            raise InputError(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")
        if start not in STARTS:
            raise InputError(f"start: expected one of {', '.join(STARTS)}, got {start!r}")
        if start == "layers" and neuron_type != "channel":
            raise InputError(f"start='layers' (DeepDataProfiler's profiles) is defined for channel neurons, "
                             f"got neuron_type={neuron_type!r}")
        if rule == "ddp" and neuron_type not in ("channel", "element"):
            raise InputError(f"rule='ddp' is defined for channel and element neurons, got {neuron_type!r}")
        if rule == "ddp" and top_k is not None:
            raise InputError("top_k: DeepDataProfiler's rule takes a threshold, not top_k")
        self.threshold, self.top_k = check_influence_options(threshold, top_k)
        self.model, self.neuron_type, self.rule, self.start = model, neuron_type, rule, start
        self.graph: LayerGraph = layer_graph(model, example, unknown=unknown)
        g = self.graph
        if g.layers[g.output].positions != 1:
            raise InputError(f"model output {g.layers[g.output].name!r} has shape {g.layers[g.output].shape}: "
                             "expected (N, classes)")
        names = {l.index: l.name for l in g.layers}
        self.layers = tuple(LayerInfo(l.name, l.kind, neuron_count(l, neuron_type),
                                      tuple(names[i] for i in l.inputs), l.shape) for l in g.layers)
        self.profiled = self._profiled(layers)
        self.channels_last = self._channels_last_ok(example) if channels_last is None else bool(channels_last)
        # layers whose own output no later operation of theirs rewrites (no tail: their output is their head)
        self._untailed = {k for name, k in g._node_layer.items() if name == g.layers[k].node}
        # the head outputs a run reads (the others are freed during the forward pass, as in a plain one):
        # untailed layers' (their tail), sign-changing tails' own layers', DeepDataProfiler's linear rule's
        self._keep_heads = set(self._untailed)
        if start == "layers":
            self._keep_heads |= g.sign_changing
        if rule == "ddp":
            self._keep_heads |= {l.index for l in g.layers if l.kind == "linear"}
        self._heads: dict[int, torch.Tensor] = {}
        self._step: Callable[[str], None] = lambda what: None
        self.rot: dict[int, torch.Tensor] = {}
        if neuron_type == "svd":
            self._bases(svd)

    def _profiled(self, layers: str | Sequence[str] | None) -> tuple[str, ...] | None:
        """Names of the layers ``start="layers"`` profiles (None: all), checked against the graph."""
        pats = check.globs(layers, "layers")
        if pats is None:
            return None
        if self.start != "layers":
            raise InputError("layers: only with start='layers' (a profile from the class passes through every layer)")
        names = [l.name for l in self.graph.layers[1:] if l.inputs]
        for pat in pats:
            if not any(check.glob_match(n, pat) for n in names):
                raise InputError(f"layers: pattern {pat!r} matches no layer with inputs "
                                 f"(layers: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})")
        return tuple(n for n in names if any(check.glob_match(n, p) for p in pats))

    def _bases(self, svd: object) -> None:
        from convsvd.decompose import decompose

        weighted = [l for l in self.graph.layers if l.kind in ("conv", "linear")]
        if svd is None:
            svd = decompose(self.model, mode="full", device="cpu", dtype="float64")
        for l in weighted:
            name = l.name.split("#")[0]
            try:
                ls = svd[name]  # type: ignore[index]
            except Exception:  # noqa: BLE001 - Decomposition raises InputError; a dict KeyError
                raise InputError(f"layer {name!r}: not in the decomposition given") from None
            if ls.U is None or not ls.complete:
                raise InputError(f"layer {name!r}: svd neurons need the full SVD (mode='full')")
            self.rot[l.index] = _svd_basis(ls.U, l.channels)

    def _channels_last_ok(self, example: torch.Tensor) -> bool:
        if example.dim() != 4 or example.device.type != "cpu" or example.dtype != torch.float32:
            return False
        try:
            with torch.no_grad():
                self.graph.activations(example.contiguous(memory_format=torch.channels_last))
        except Exception:  # noqa: BLE001 - e.g. a .view() that needs contiguous activations: run as given
            return False
        return True

    def _activations(self, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict, dict]:
        """The graph's activations of ``x``, in the layout the model ran in (every use is layout-agnostic;
        converting them all back would cost more than the channels-last convolutions save)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self.graph.activations(x, heads=self._keep_heads, tails=self.start == "layers")

    @property
    def layer_names(self) -> list[str]:
        return [l.name for l in self.layers]

    def options(self) -> dict[str, object]:
        return dict(neuron_type=self.neuron_type, rule=self.rule, threshold=self.threshold, top_k=self.top_k,
                    start=self.start, layers=list(self.profiled) if self.profiled is not None else None,
                    notes=self.graph.notes)

    # ------------------------------------------------------------------ one batch

    def _op(self, k: int, ins: dict[int, list[torch.Tensor]]) -> LayerOp:
        L = self.graph.layers[k]
        in_layers = [self.graph.layers[i] for i in L.inputs]
        rot_in = rot_out = None
        if self.neuron_type == "svd":
            rot_in = [self.rot.get(i) for i in L.inputs]
            rot_out = self.rot.get(k)
        head = self._heads.get(k) if k in self._untailed else None
        return LayerOp(L, ins[k], in_layers, rot_in, rot_out, head)

    def _select(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return select(rows, self.rule, self.threshold, self.top_k)

    def run(self, x: torch.Tensor, targets: torch.Tensor | None = None, ids: torch.Tensor | None = None,
            labels: torch.Tensor | None = None, step: Callable[[str], None] | None = None) -> InputProfiles:
        """Profiles of a batch ``x`` ``(B, ...)``, from ``targets`` (default: the predicted classes).

        ``step(what)``, when given, is called once after the forward pass and once per layer after it
        (``len(layer_names)`` calls in all): progress within a batch, which can take minutes for
        element neurons of a large model.
        """
        g = self.graph
        B = x.shape[0]
        out, ins, tails, heads = self._activations(x)
        self._heads = heads
        self._step = step or (lambda what: None)
        self._step("forward pass")
        pred = out.reshape(B, -1).argmax(1)
        if targets is None:
            targets = pred
        targets = torch.as_tensor(targets, dtype=torch.int64).reshape(-1)
        K = g.layers[g.output].channels
        if targets.shape != (B,) or (B and (int(targets.min()) < 0 or int(targets.max()) >= K)):
            raise InputError(f"targets: expected {B} classes in [0, {K}), got {targets.tolist()[:8]}")
        nrec: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        srec: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        with torch.no_grad():
            if self.start == "class":
                self._backward(B, ins, targets, nrec, srec)
            else:
                self._layers(B, ins, tails, heads, nrec, srec)
        ids = torch.arange(B) if ids is None else ids
        labels = torch.full((B,), -1, dtype=torch.int64) if labels is None else labels
        return self._assemble(B, nrec, srec, ids, labels, targets, pred)

    def _merge(self, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], n: int) -> tuple[torch.Tensor, ...]:
        b = torch.cat([p[0] for p in parts])
        i = torch.cat([p[1] for p in parts])
        w = torch.cat([p[2] for p in parts])
        key, inv = torch.unique(b * n + i, return_inverse=True)
        tot = torch.zeros(len(key), dtype=w.dtype, device=w.device).index_add_(0, inv, w)
        return key // n, key % n, tot

    def _backward(self, B: int, ins: dict[int, list[torch.Tensor]], targets: torch.Tensor,
                  nrec: dict, srec: dict) -> None:
        g = self.graph
        k0 = g.output
        L0 = g.layers[k0]
        dev = ins[k0][0].device if L0.inputs else targets.device
        dt = torch.float64
        b = torch.arange(B, device=dev)
        t = targets.to(dev)
        pending: dict[int, list] = {}
        if self.neuron_type == "svd" and k0 in self.rot:
            s = self._op(k0, ins).channel().sum(-1)  # (B, C): s_i = u_iᵀ(y − b)
            contrib = self.rot[k0].to(s.device, s.dtype)[t] * s
            mask, w = self._select(contrib)
            bb, nn_ = mask.nonzero(as_tuple=True)
            pending[k0] = [(bb, nn_, w[bb, nn_].to(dt))]
        elif self.neuron_type == "spatial":
            pending[k0] = [(b, torch.zeros_like(t), torch.ones(B, dtype=dt, device=dev))]
        else:
            pending[k0] = [(b, t, torch.ones(B, dtype=dt, device=dev))]
        for k in reversed(range(len(g.layers))):
            if k > 0:
                self._step(f"layer {g.layers[k].name}")
            if k not in pending:
                continue
            L = g.layers[k]
            n_k = self.layers[k].neurons
            bk, nk, wk = self._merge(pending.pop(k), n_k)
            nrec.setdefault(k, []).append((bk, nk, torch.ones_like(nk), wk))
            if not L.inputs or len(bk) == 0:
                continue
            op = self._op(k, ins)
            if self.neuron_type == "spatial" and k == k0:
                C, H, W = g.layers[L.inputs[0]].shape
                mask, s = self._select(op.element_rows(bk, t[bk]).reshape(len(bk), C, H * W).sum(1))
                m, i = mask.nonzero(as_tuple=True)
                sv = s[m, i]
            elif self.rule == "ddp":
                m, i, sv = self._ddp_contributors(op, bk, nk, ins, k)
            else:
                m, i, sv = self._contributors(op, bk, nk, self.rule)
            sv = sv.to(dt)
            srec.setdefault(k, []).append((bk[m], nk[m], i, torch.ones_like(i), sv))
            flow = wk[m] * sv
            off = 0
            for a in L.inputs:
                width = self.layers[a].neurons
                sel = (i >= off) & (i < off + width)
                pending.setdefault(a, []).append((bk[m][sel], i[sel] - off, flow[sel]))
                off += width

    def _contributors(self, op: LayerOp, b: torch.Tensor, n: torch.Tensor, rule: str
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The contributors the rule keeps for rows ``(b, n)``: ``(row, input neuron, weight)``.

        Rows are computed a block at a time (at most ``_ROW_BUDGET`` entries), as sparse rows for
        element and spatial neurons (a few contributors among many input neurons), so that memory
        stays bounded whatever the number of rows and the width of the layer.
        """
        ntype = self.neuron_type
        step = max(1, _ROW_BUDGET // max(1, op.entries(ntype)))
        ms, cs, ws = [], [], []
        for lo in range(0, len(b), step):
            vals, cols = op.sparse_rows(ntype, b[lo:lo + step], n[lo:lo + step], rule)
            mask, s = self._select(vals)
            m, j = mask.nonzero(as_tuple=True)
            ms.append(m + lo)
            cs.append(cols[m, j])
            ws.append(s[m, j])
        if not ms:
            e = torch.zeros(0, dtype=torch.int64, device=b.device)
            return e, e, torch.zeros(0, dtype=torch.float64, device=b.device)
        return torch.cat(ms), torch.cat(cs), torch.cat(ws)

    def _ddp_contributors(self, op: LayerOp, b: torch.Tensor, n: torch.Tensor, ins: dict, k: int
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DeepDataProfiler's contributors of rows ``(b, n)``: its rule for each kind of layer."""
        L = self.graph.layers[k]
        if L.kind == "linear":
            mask, s = self._ddp_linear(op, b, n, ins, k)
        elif self.neuron_type == "channel" and L.kind == "add" and len(L.inputs) == 2:
            mask, s = self._ddp_add(b, n, ins, k)
        elif self.neuron_type == "channel" and L.kind in ("maxpool", "avgpool"):  # a channel passes to itself
            return torch.arange(len(b), device=b.device), n, torch.ones(len(b), dtype=torch.float64, device=b.device)
        else:
            return self._contributors(op, b, n, "ddp")
        m, i = mask.nonzero(as_tuple=True)
        return m, i, s[m, i]

    def _ddp_linear(self, op: LayerOp, b: torch.Tensor, o: torch.Tensor, ins: dict, k: int):
        """DeepDataProfiler's linear rule: per input entry ``x_j W_oj`` (negatives as 0), kept while
        ``Σ_kept + b_o ≤ threshold · y_o`` plus one more; weights summed per input channel."""
        L = self.graph.layers[k]
        m = cast(nn.Linear, L.module)  # a linear layer's module
        assert self.threshold is not None  # DeepDataProfiler's rule takes a threshold, never top_k (__init__)
        x = ins[k][0]
        B, C = x.shape[:2]
        z = (x.flatten(1)[b] * m.weight.detach()[o]).clamp(min=0)  # (M, F)
        y = self._heads[k].flatten(1)[b, o]
        bias = m.bias.detach()[o] if m.bias is not None else torch.zeros_like(y)
        w = _ddp_linear_weights(z, bias, self.threshold * y)
        if self.neuron_type == "channel":
            w = w.reshape(len(b), C, -1).sum(2)
        return w > 0, w

    def _layers(self, B: int, ins: dict, tails: dict, heads: dict, nrec: dict, srec: dict) -> None:
        g = self.graph
        self._heads = heads
        for k in range(1, len(g.layers)):
            L = g.layers[k]
            self._step(f"layer {L.name}")
            if self.profiled is not None and L.name not in self.profiled:
                continue
            # DDP: per channel max(0, max_p t_p), t_p = tail_p where head_p and tail_p have the same sign, else 0.
            # Only positive t_p can reach the maximum, and those are the tail_p > 0 with head_p > 0: so
            # max(0, max_p [head_p > 0] · tail_p), exactly; that is max(0, max_p tail_p) when the layer has
            # no tail, or a tail under which tail_p > 0 implies head_p > 0 (ReLU, tanh, flatten, ...).
            plain = k in self._untailed or k not in g.sign_changing
            t = tails[k] if plain else torch.where(heads[k] > 0, tails[k], 0.0)
            val = t.amax((2, 3)).clamp_(min=0)  # (B, C)
            mask, w = self._select(val)
            bk, nk = mask.nonzero(as_tuple=True)
            nrec.setdefault(k, []).append((bk, nk, torch.ones_like(nk), w[bk, nk].to(torch.float64)))
            if len(bk) == 0:
                continue
            op = self._op(k, ins)
            if self.rule == "ddp":
                m, i, sv = self._ddp_contributors(op, bk, nk, ins, k)
            else:
                m, i, sv = self._contributors(op, bk, nk, self.rule)
            srec.setdefault(k, []).append((bk[m], nk[m], i, torch.ones_like(i), sv.to(torch.float64)))
            off = 0
            for a in L.inputs:
                width = self.layers[a].neurons
                sel = (i >= off) & (i < off + width)
                nrec.setdefault(a, []).append((bk[m][sel], i[sel] - off, torch.ones_like(i[sel]),
                                               torch.zeros(int(sel.sum()), dtype=torch.float64, device=i.device)))
                off += width

    def _ddp_add(self, b: torch.Tensor, o: torch.Tensor, ins: dict, k: int):
        """DeepDataProfiler's residual sum: all of a channel goes to the summand with the larger maximum (ties: the second)."""
        x1, x2 = ins[k][0], ins[k][1]
        C = x1.shape[1]
        m1 = x1.flatten(2).amax(2)[b, o]
        m2 = x2.flatten(2).amax(2)[b, o]
        M = len(b)
        w = torch.zeros(M, 2 * C, dtype=x1.dtype, device=x1.device)
        first = m1 > m2
        w[torch.arange(M, device=b.device), torch.where(first, o, C + o)] = 1.0
        return w > 0, w

    def _assemble(self, B: int, nrec: dict, srec: dict, ids: torch.Tensor, labels: torch.Tensor,
                  targets: torch.Tensor, pred: torch.Tensor) -> InputProfiles:
        by = {l.name: l for l in self.layers}
        nc, nw, sc, sw = {}, {}, {}, {}
        for k, l in enumerate(self.layers):
            parts = nrec.get(k, [])
            cols = [p[1] for p in parts]
            nc[l.name], nw[l.name] = _count_weight_csr(parts, cols, 2, (B, l.neurons))
            if l.inputs:
                width = sum(by[i].neurons for i in l.inputs)
                parts = srec.get(k, [])
                cols = [p[1] * width + p[2] for p in parts]
                sc[l.name], sw[l.name] = _count_weight_csr(parts, cols, 3, (B, l.neurons * width))
        return InputProfiles(self.layers, ids.cpu().numpy().astype(np.int64), labels.cpu().numpy().astype(np.int64),
                             targets.cpu().numpy().astype(np.int64), pred.cpu().numpy().astype(np.int64),
                             nc, nw, sc, sw, self.neuron_type, "", None, self.options())


# --------------------------------------------------------------------------- datasets


def _expected(model: nn.Module, input_shape: Sequence[int] | None) -> ExpectedInput:
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    spatial = tuple(int(s) for s in input_shape[1:]) if input_shape is not None and len(input_shape) > 1 else None
    if isinstance(first, nn.Conv2d):
        return ExpectedInput("first conv", "conv2d", first.in_channels, spatial)
    if isinstance(first, nn.Linear):
        return ExpectedInput("first linear", "linear", first.in_features, None)
    return ExpectedInput()


def profile_graph(
    model: object,
    data: object,
    *,
    neuron_type: str = "channel",
    rule: str = "share",
    threshold: float | None = None,
    top_k: int | None = None,
    start: str = "class",
    targets: str = "predicted",
    batch_size: int = 64,
    chunk_batches: int = 4,
    device: str | torch.device | None = None,
    input_shape: Sequence[int] | None = None,
    unknown: str = "refuse",
    layers: str | Sequence[str] | None = None,
    limit: int | None = None,
    out: PathLike | None = None,
    progress: object = None,
    stream: bool = False,
) -> InputProfiles | ProfileRun:
    """Attribution profiles of every input of a dataset.

    Parameters
    ----------
    model : nn.Module, ModelWeights with a module, or anything :func:`convsvd.io.load` reads into a module
    data : anything :func:`convsvd.data.as_source` accepts (``"digits:test"``, a folder, arrays, a DataLoader)
    neuron_type : {"channel", "element", "spatial", "svd"}
    rule : {"share", "ddp"}
        Selection rule (:mod:`convsvd.profiles.select`).
    threshold, top_k
        As in :func:`convsvd.signals.influence` (default threshold 0.1).
    start : {"class", "layers"}
        Backwards from a class (default), or DeepDataProfiler's per-layer profiles.
    targets : {"predicted", "label"}
        The class each input's profile starts from.
    batch_size : int
    chunk_batches : int
        Batches per chunk file under ``out`` (the unit of resumption).
    device : str or torch.device, optional
    input_shape : sequence of int, optional
        ``(C, H, W)`` the model takes (images are resized to it).
    unknown : {"refuse", "pass"}
    layers : str or sequence of str, optional
        With ``start="layers"``: glob patterns of the layers to profile (default: all).
    limit : int, optional
        Profile only the first ``limit`` inputs.
    out : path, optional
        Folder for ``manifest.json`` and ``chunks/chunk-NNNNNN.npz``; an interrupted run started again
        with the same options computes only the missing chunks.
    progress : bool or None or callable
    stream : bool
        Write each chunk under ``out`` and let it go instead of holding every input's profile: for
        element profiles of a large model on many inputs. Needs ``out``; returns a
        :class:`~convsvd.profiles.run.ProfileRun` that reads the chunks back one at a time (sums,
        class profiles, :func:`~convsvd.profiles.class_similarity`).

    Returns
    -------
    InputProfiles, or ProfileRun with ``stream=True``

    >>> from convsvd import zoo
    >>> ps = profile_graph(zoo.load("digits-cnn"), "digits:test", limit=20)
    >>> ps.class_profiles()[0].num_inputs > 0
    True
    """
    from convsvd.layers import as_weights

    if stream and out is None:
        raise InputError("stream=True: expected a run folder (out=) to write the chunks to")
    mw = as_weights(model)
    if mw.model is None:
        raise InputError(f"model {mw.source!r}: profiles run the model, so they need an nn.Module, not a weights-only "
                         f"{mw.format} file")
    module: nn.Module = mw.model
    batch_size = check_batch_size(batch_size)
    if isinstance(chunk_batches, bool) or not isinstance(chunk_batches, int) or chunk_batches < 1:
        raise InputError(f"chunk_batches: expected a positive int, got {chunk_batches!r}")
    if targets not in ("predicted", "label"):
        raise InputError(f"targets: expected 'predicted' or 'label', got {targets!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit: expected a positive int, got {limit!r}")
    source: DataSource = as_source(data).conform(_expected(module, input_shape))
    dev = torch.device(device) if device is not None else next(
        (p.device for p in module.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    was_training = module.training
    module.eval()
    try:
        return _run(module, mw.content_hash(), source, neuron_type, rule, threshold, top_k, start, targets,
                    batch_size, chunk_batches, dev, dtype, unknown, layers, limit, out, progress, stream)
    finally:
        module.train(was_training)


def _run(module: nn.Module, model_hash: str, source: DataSource, neuron_type: str, rule: str,  # noqa: C901
         threshold: float | None, top_k: int | None, start: str, targets: str, batch_size: int, chunk_batches: int,
         dev: torch.device, dtype: torch.dtype, unknown: str, layers: str | Sequence[str] | None, limit: int | None,
         out: PathLike | None, progress: object, stream: bool = False) -> InputProfiles | ProfileRun:
    original = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.to(dev)
    held = ExitStack()  # the run folder's lock, while it is written
    try:
        batches = source.iter_batches(batch_size)
        first = next(iter(source.iter_batches(batch_size, [0])), None)
        if first is None:
            raise InputError(f"data {source.name!r}: no input")
        prof = Profiler(module, first[1].inputs[:1].to(dev, dtype), neuron_type=neuron_type, rule=rule,
                        threshold=threshold, top_k=top_k, start=start, unknown=unknown, layers=layers)
        n_total = len(source) if limit is None else min(limit, len(source))
        n_batches = -(-n_total // batch_size)
        block = batch_size
        if neuron_type in ("element", "spatial"):
            block = _plan(prof, first[1].inputs[:1].to(dev, dtype), n_total, batch_size, source.name,
                          batch_size * chunk_batches if stream else None)
        options = dict(prof.options(), targets=targets, batch_size=batch_size, chunk_batches=chunk_batches,
                       limit=limit)
        meta: dict = dict(format=FORMAT, neuron_type=neuron_type, model_hash=model_hash,
                          classes=source.classes, options=options, layers=[l.to_json() for l in prof.layers],
                          dataset=source.describe(), chunks={}, complete=False)
        key = hashlib.sha256(json.dumps([model_hash, options, meta["dataset"].get("fingerprint")], sort_keys=True,
                                        default=str).encode()).hexdigest()[:32]
        meta["run_key"] = key
        root = Path(out) if out is not None else None
        if root is not None:
            from convsvd._atomic import folder_lock

            held.enter_context(folder_lock(root, "the profile run"))  # one run per folder: another is refused
            meta = _prepare(root, meta)
        parts: list[InputProfiles] = []  # the chunks' profiles, kept unless streamed
        pending: list[InputProfiles] = []
        n_done = 0
        done = meta["chunks"]
        def units(bi: int) -> int:  # progress of a batch: per block of inputs, its forward pass, then each layer
            return len(prof.layers) * -(-min(batch_size, n_total - bi * batch_size) // block)

        with _progress(sum(units(bi) for bi in range(n_batches)), "profiles", progress) as bar:
            for bi, batch in batches:
                if bi >= n_batches:
                    break
                ci = bi // chunk_batches
                name = f"chunk-{ci:06d}.npz"
                if name in done:
                    bar.advance(units(bi), f"chunk {ci} done before")
                    if (bi % chunk_batches == chunk_batches - 1 or bi == n_batches - 1) and not stream:
                        # checked against its checksum by _prepare already (under the lock): not hashed twice
                        parts.append(InputProfiles.read_chunk(root / "chunks" / name, meta, ""))  # type: ignore[operator]
                    n_done += min(batch_size, n_total - bi * batch_size)
                    continue
                lo = bi * batch_size
                keep = min(len(batch.ids), n_total - lo)
                x = batch.inputs[:keep].to(dev, dtype)
                tg = batch.labels[:keep].to(dev) if targets == "label" else None
                if tg is not None and bool((tg < 0).any()):
                    raise InputError(f"data {source.name!r}: targets='label' needs labels, some inputs have none")
                at = f"batch {bi + 1}/{n_batches}"
                blocks = [prof.run(x[i:i + block], None if tg is None else tg[i:i + block], batch.ids[i:min(keep, i + block)],
                                   batch.labels[i:min(keep, i + block)], step=lambda what: bar.advance(1, f"{at} · {what}"))
                          for i in range(0, keep, block)]
                pending.append(blocks[0] if len(blocks) == 1 else InputProfiles.concat(blocks, consume=True))
                if bi % chunk_batches == chunk_batches - 1 or bi == n_batches - 1:
                    part = InputProfiles.concat(pending, consume=True)
                    pending = []
                    part = _with(part, model_hash, source.classes)
                    if root is not None:
                        try:
                            done[name] = part.write_chunk(root / "chunks" / name)
                            _write_manifest(root, meta)
                        except OSError as e:  # a full disk, a read-only folder: the chunks written stay for a rerun
                            raise _environment_error(e, f"chunk {name}", root) from None
                    n_done += len(part)
                    if not stream:
                        parts.append(part)
                    del part
        if n_done == 0:
            raise InputError(f"data {source.name!r}: no input")
        result = None if stream else _with(InputProfiles.concat(parts, consume=True), model_hash, source.classes)
        parts.clear()
        if root is not None:
            meta["complete"] = True
            meta["inputs"] = n_done
            meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            try:
                _write_manifest(root, meta)
            except OSError as e:
                raise _environment_error(e, "manifest.json", root) from None
        if result is None:
            held.close()  # the run is finished: its folder is read back unlocked
            return ProfileRun(root, progress=progress)  # type: ignore[arg-type]
        return result
    finally:
        held.close()
        module.to(original)


_WORK_BUDGET = 4 << 30  # bytes a block of inputs may take while its element or spatial profiles are built


def _available_memory() -> int | None:
    """Bytes a new allocation may take: the system's available memory (Linux ``MemAvailable``), or less
    under a cgroup memory limit; None where unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max" and avail is not None:
            avail = min(avail, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return avail


def _plan(prof: Profiler, x1: torch.Tensor, n_total: int, batch_size: int, name: str,
          chunk: int | None = None) -> int:
    """Element and spatial profiles of a large model are large (a 224×224 ResNet-18: ~75 MB per input):
    profile the first input alone, refuse a run whose profiles would not fit in memory (held until the
    end; streamed, ``chunk`` inputs at a time: one chunk's), and return how many inputs to profile at once (at most ``batch_size``)
    so that a block stays within ``_WORK_BUDGET``."""
    per = max(1, prof.run(x1[:1]).nbytes)
    held = n_total if chunk is None else min(n_total, chunk)
    need = 3 * per * held  # the inputs' profiles, their sums and similarities (2.1× measured with the CLI's tables)
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        fit = max(1, int(0.8 * avail) // (3 * per))
        raise InputError(f"data {name!r}: {prof.neuron_type} profiles of {held} inputs need about "
                         f"{need / 2**30:.1f} GiB of memory ({per / 2**20:.0f} MiB per input, measured on the first), "
                         f"{avail / 2**30:.1f} GiB available: profile at most {fit} inputs at once "
                         + ("(--batch-size, batch_size=)" if chunk is not None else
                            "(--limit, limit=), or stream them through a run folder (--out DIR --stream; out=, stream=True)"))
    return max(1, min(batch_size, _WORK_BUDGET // (8 * per)))


def _with(p: InputProfiles, model_hash: str, classes: list[str] | None) -> InputProfiles:
    from dataclasses import replace

    return replace(p, model_hash=model_hash, classes=classes)


def _prepare(root: Path, meta: dict) -> dict:
    """Resume a run in ``root`` with the same key, or start one in an empty (or absent) folder."""
    man = root / "manifest.json"
    if man.exists():
        old = _read_meta(man, "profile run")
        if old.get("run_key") != meta["run_key"]:
            raise InputError(f"{root}: holds another profile run (other model, data or options); "
                             "use another folder or delete it")
        old_chunks, repaired = {}, []
        for n, sha in old.get("chunks", {}).items():  # a damaged chunk is removed, computed again and listed
            f = root / "chunks" / n
            if f.is_file() and _sha256(f) == sha:
                old_chunks[n] = sha
            elif f.exists() or f.is_symlink():
                f.unlink()
                repaired.append(n)
        meta["chunks"] = old_chunks
        meta["repaired_chunks"] = sorted(set(old.get("repaired_chunks", [])) | set(repaired))
        return meta
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root}: exists and is not a profile run; use an empty folder")
    try:
        (root / "chunks").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{root}: cannot create the folder ({e.strerror})") from None
    _write_manifest(root, meta)
    return meta


def _environment_error(e: OSError, what: str, root: Path) -> InputError:
    """One line for a fault of the machine (full disk, read-only folder) while writing the run folder."""
    from convsvd._atomic import environment_error, os_error

    return environment_error(os_error(e) or e, what, root, kept="the chunks written are kept: run again to resume")


def _write_manifest(root: Path, meta: dict) -> None:
    from convsvd._meta import write_atomic

    write_atomic(root / "manifest.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2, default=str)))
