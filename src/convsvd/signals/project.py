"""Project a layer's output on its left singular vectors: ``U_jᵀ (y − b)``, per group.

For a conv layer with groups ``g``, output ``y ∈ R^{N × d × *spatial}`` and
``W̄_j = U_j Σ_j V_jᵀ`` (see :mod:`convsvd.layers`), the signal of SVD neuron
``(j, i)`` at location ``p`` is ``u_{j,i}ᵀ (y_{j,p} − b_j)`` where ``y_{j,p}``
is the ``d/g`` channels of group ``j`` at ``p``. Since ``y_p − b = W̄ patch_p(x)``
this equals ``σ_i v_iᵀ patch_p(x)``. A linear layer has one location (or one
per leading position, for inputs ``(N, *, in)``). With a BatchNorm folded in,
``y`` is the BatchNorm's output and ``b`` the folded bias.

Aggregations over the locations ``p = 1 … L``:

- ``mean`` (the reference library's default): ``(1/L) Σ_p s_p``; computed as
  ``Uᵀ(mean_p y_p − b)``, which is the same number, without the per-location maps;
- ``max``: ``max_p s_p``;
- ``abs``: ``(1/L) Σ_p |s_p|``;
- ``l2``: ``(Σ_p s_p²)^{1/2}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence, get_args

import pandas as pd
import torch
from torch import nn

from convsvd import _validate as check
from convsvd._typing import Aggregation
from convsvd.data.protocol import ExpectedInput
from convsvd.decompose import Decomposition, LayerSVD, decompose
from convsvd.errors import ConvSVDError, InputError
from convsvd.io import LayerSpec, ModelWeights
from convsvd.io.onnx_io import OnnxModule
from convsvd.layers import as_weights
from convsvd.signals.diagnose import model_failure
from convsvd.signals.hooks import capture, eval_mode, moved_to
from convsvd.target import TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

if TYPE_CHECKING:
    from convsvd.signals.onnx_runner import OnnxRunner

__all__ = ["AGGREGATIONS", "BASES", "Projector", "ProjectionPlan", "Signals", "plan_projection", "signals", "signal_maps"]

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)

BASES: tuple[str, ...] = ("svd", "channel", "random")
"""Bases a layer's ``y − b`` is projected on: its left singular vectors ``U`` (the paper's SVD
neurons, σ their singular values); its raw output channels (the identity, σ = NaN: a channel
has no singular value); a seeded random orthonormal basis of the channel space (QR of a
Gaussian matrix, σ = NaN). Influence and every separation metric use the same code path."""

TRANSPOSED_REASON = ("transposed convolution: its left singular vectors live in its input-channel space, "
                     "not in the space of its output, so Uᵀ(y − b) is not defined; not profiled")


@dataclass(frozen=True, eq=False)
class Projector:
    """``U_jᵀ (y − b)`` for one layer, on the device and in the dtype of the projection.

    Attributes
    ----------
    name, kind : str
    groups : int
    rank : int
        ``r`` singular vectors per group.
    Ut : torch.Tensor
        ``(g, r, m)`` transposed left singular vectors.
    bias : torch.Tensor or None
        ``(g, m, 1)``.
    sigma : torch.Tensor
        ``(g, r)`` singular values.
    """

    name: str
    kind: str
    groups: int
    rank: int
    Ut: torch.Tensor = field(repr=False)
    bias: torch.Tensor | None = field(repr=False)
    sigma: torch.Tensor = field(repr=False)

    @classmethod
    def build(cls, spec: LayerSpec, svd: LayerSVD, dtype: torch.dtype, device: torch.device) -> "Projector":
        if svd.U is None:
            raise InputError(f"layer {spec.name!r}: the decomposition has no singular vectors (mode={svd.mode!r}); "
                             f"profiling needs mode='full' or 'topk'")
        g, m, _ = svd.U.shape
        if (g, m) != (spec.groups, spec.unfolded_shape[0]) or svd.folded != spec.folded:
            raise InputError(f"layer {spec.name!r}: the decomposition given does not match the model's layer "
                             f"(shape or BatchNorm folding differs)")
        Ut = svd.U.to(device=device, dtype=dtype).transpose(1, 2).contiguous()
        b = None if spec.bias is None else spec.bias.detach().to(device=device, dtype=dtype).reshape(g, m, 1)
        return cls(spec.name, spec.kind, g, int(Ut.shape[1]), Ut, b, svd.S.to(device=device, dtype=dtype))

    @property
    def neurons(self) -> int:
        """``g·r``: the SVD neurons of the layer, groups pooled."""
        return self.groups * self.rank

    def in_basis(self, basis: str, seed: int = 0) -> "Projector":
        """The same layer projected on another basis of its channel space (:data:`BASES`).

        ``"channel"``: ``Ut = I`` (``m`` neurons per group = the raw channels of ``y − b``);
        ``"random"``: ``Ut = Qᵀ`` with ``Q`` seeded random orthonormal (``seed`` + group
        drawn in float64 on the CPU); σ is NaN for both.
        """
        if basis == "svd":
            return self
        g, _, m = self.Ut.shape
        if basis == "channel":
            Ut = torch.eye(m, dtype=self.Ut.dtype, device=self.Ut.device).expand(g, m, m).contiguous()
        elif basis == "random":
            gen = torch.Generator().manual_seed(int(seed))
            Q, R = torch.linalg.qr(torch.randn(g, m, m, generator=gen, dtype=torch.float64))
            Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
            Ut = Q.transpose(1, 2).to(dtype=self.Ut.dtype, device=self.Ut.device).contiguous()
        else:
            raise InputError(f"basis {basis!r}: expected one of {', '.join(BASES)}")
        sigma = torch.full((g, m), float("nan"), dtype=self.sigma.dtype, device=self.sigma.device)
        return replace(self, rank=m, Ut=Ut, sigma=sigma)

    def locations(self, y: torch.Tensor) -> torch.Tensor:
        """``y − b`` arranged ``(N, g, m, L)``."""
        N = y.shape[0]
        if self.kind == "linear":
            z = y.reshape(N, -1, y.shape[-1]).transpose(1, 2)  # (N, out, L)
        else:
            z = y.reshape(N, y.shape[1], -1)
        z = z.reshape(N, self.groups, -1, z.shape[-1]).to(self.Ut.dtype)
        return z if self.bias is None else z - self.bias

    def maps(self, y: torch.Tensor) -> torch.Tensor:
        """Per-location signals ``(N, g, r, L)``."""
        z = self.locations(y)
        N, g, m, L = z.shape
        if L >= 16:  # one (r×m)(m×L) product per input and group
            return torch.matmul(self.Ut, z)
        # few locations: one (r×m)(m×N·L) product per group instead of N·g small ones
        s = torch.matmul(self.Ut, z.permute(1, 2, 0, 3).reshape(g, m, N * L))
        return s.reshape(g, self.rank, N, L).permute(2, 0, 1, 3)

    def aggregate(self, y: torch.Tensor, how: str = "mean") -> torch.Tensor:
        """Signals aggregated over locations, ``(N, g·r)`` (group-major)."""
        N = y.shape[0]
        if how == "mean":
            if self.kind == "linear":
                m = y.reshape(N, -1, y.shape[-1]).mean(dim=1)
            else:
                m = y.reshape(N, y.shape[1], -1).mean(dim=-1)
            m = m.reshape(N, self.groups, -1).to(self.Ut.dtype).transpose(0, 1)  # (g, N, m)
            if self.bias is not None:
                m = m - self.bias.transpose(1, 2)
            return torch.matmul(m, self.Ut.transpose(1, 2)).transpose(0, 1).reshape(N, -1)  # (g, N, r) → (N, g·r)
        s = self.maps(y)
        if how == "max":
            out = s.amax(dim=-1)
        elif how == "abs":
            out = s.abs().mean(dim=-1)
        elif how == "l2":
            out = torch.linalg.vector_norm(s, dim=-1)
        else:
            raise InputError(f"aggregate {how!r}: expected one of {', '.join(AGGREGATIONS)}")
        return out.reshape(N, -1)


@dataclass(frozen=True, eq=False)
class ProjectionPlan:
    """Everything a projection needs, decided before any data is read.

    Attributes
    ----------
    model : nn.Module
    weights : ModelWeights
        Every layer of the model (BatchNorm folded when asked), for input checks.
    projectors : dict of str to Projector
        The profiled layers, in model order.
    hooked : dict of str to nn.Module
        Module hooked for each profiled layer (the folded BatchNorm, when there is one);
        empty for an ONNX model.
    not_profiled : tuple of (str, str)
        ``(layer, reason)`` for selected layers that cannot be profiled.
    dtype : torch.dtype
        Of the model's forward pass; the projection's is ``projectors[…].Ut.dtype``.
    device : torch.device
    model_hash : str
    runner : OnnxRunner or None
        For an ONNX model: runs the graph with the layers' outputs as extra outputs
        (:mod:`convsvd.signals.onnx_runner`) instead of hooks.
    """

    model: nn.Module = field(repr=False)
    weights: ModelWeights = field(repr=False)
    projectors: dict[str, Projector]
    hooked: dict[str, nn.Module] = field(repr=False)
    not_profiled: tuple[tuple[str, str], ...]
    dtype: torch.dtype
    device: torch.device
    model_hash: str
    basis: str = "svd"
    runner: "OnnxRunner | None" = field(default=None, repr=False)

    @property
    def source(self) -> str:
        return self.weights.source

    def expected_input(self, input_shape: Sequence[int] | None = None) -> ExpectedInput:
        """What inputs the model takes: from its first layer (registration order) and ``input_shape`` ``(C, *spatial)``
        (default for an ONNX model: the shape its graph declares, when fixed)."""
        if input_shape is None and self.runner is not None:
            input_shape = self.runner.input_shape
        first = self.weights.layers[0]
        if first.transposed:
            return ExpectedInput(first.name, first.kind)
        spatial = tuple(int(s) for s in input_shape[1:]) if input_shape is not None and len(input_shape) > 1 else None
        if input_shape is not None and first.kind != "linear" and int(input_shape[0]) != first.in_channels:
            raise InputError(f"input_shape {tuple(input_shape)}: the model's first layer {first.name!r} takes "
                             f"{first.in_channels} channels")
        return ExpectedInput(first.name, first.kind, first.in_channels, spatial)


def _model_of(source: object) -> tuple[nn.Module, ModelWeights]:
    mw = as_weights(source)
    if mw.model is None:
        raise InputError(f"model {mw.source!r}: profiling runs the model, so it needs an nn.Module, "
                         f"not a weights-only {mw.format} file (load it with its 'package.module:factory')")
    return mw.model, mw


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.float32, torch.device("cpu")


def plan_projection(
    model: object,
    *,
    svd: Decomposition | None = None,
    basis: str = "svd",
    seed: int = 0,
    **options: Unpack[TargetOptions],
) -> ProjectionPlan:
    """Choose the layers, decompose them, and prepare their projectors.

    Parameters
    ----------
    model : Target, nn.Module, or anything :func:`convsvd.target.resolve` accepts that holds a module
        (an ONNX file runs in ONNX Runtime)
    svd : Decomposition, optional
        A decomposition to reuse (``mode="full"`` or ``"topk"``; ``fold_bn`` must match).
    basis : {"svd", "channel", "random"}, default "svd"
        What the "neurons" are (:data:`BASES`, :meth:`Projector.in_basis`).
    seed : int
        Seed of the ``random`` basis (layer ``i`` in model order uses ``seed + i``).
    **options
        Checked by :func:`convsvd.target.resolve` (or carried by a Target): ``layers`` (glob
        patterns of layer names, comma-separated in a string; default all); ``fold_bn`` (profile
        ``conv → BatchNorm`` pairs as one linear map: the BatchNorm's output, folded weights and
        bias); ``dtype`` (precision of the SVD and the projection; default the model's);
        ``device`` (default: where the model's parameters are).
    """
    check.choice(basis, "basis", BASES)
    resolved = resolve(model, **options)
    net, _ = _model_of(resolved)
    mdtype, mdevice = _model_dtype_device(net)
    dev = resolved.device if resolved.device is not None else mdevice
    pdtype = resolved.dtype or (mdtype if mdtype in (torch.float32, torch.float64) else torch.float32)
    mw, chosen = resolved.folded, resolved.selected
    profiled = [s for s in chosen.layers if not s.transposed]
    skipped = tuple((s.name, TRANSPOSED_REASON) for s in chosen.layers if s.transposed)
    if not profiled:
        raise InputError(f"layers {resolved.layers!r}: select only transposed convolutions, which cannot be profiled "
                         f"({TRANSPOSED_REASON.split(': ')[1]})")
    todo = replace(chosen, layers=tuple(profiled))
    if svd is None:
        svd = decompose(todo, mode="full", dtype=pdtype, device=dev, progress=False)
    modules = dict(net.named_modules())
    projectors: dict[str, Projector] = {}
    hooked: dict[str, nn.Module] = {}
    runner = None
    if isinstance(net, OnnxModule):  # the graph's values are read, not hooked
        from convsvd.signals.onnx_runner import OnnxRunner

        runner = OnnxRunner(net, {s.name: net.output_of(s.name, s.folded) for s in profiled}, dev)
    for spec in profiled:
        projectors[spec.name] = Projector.build(spec, svd[spec.name], pdtype, dev).in_basis(
            basis, seed + len(projectors))
        if runner is not None:
            continue
        target = modules.get(spec.folded) if spec.folded else spec.module
        if target is None:
            raise InputError(f"layer {spec.name!r}: its module is not part of the model")
        hooked[spec.name] = target
    return ProjectionPlan(net, mw, projectors, hooked, skipped, mdtype, dev, todo.content_hash(), basis=basis,
                          runner=runner)


# --------------------------------------------------------------------------- in-memory use


@dataclass(frozen=True, eq=False)
class Signals:
    """Aggregated signals of a batch of inputs, per site.

    Attributes
    ----------
    values : dict of str to torch.Tensor
        ``{site: (N, g, r)}`` in call order.
    sigma : dict of str to torch.Tensor
        ``{site: (g, r)}`` singular values.
    aggregate : str
    """

    values: dict[str, torch.Tensor]
    sigma: dict[str, torch.Tensor] = field(repr=False)
    aggregate: str = "mean"

    def to_frame(self) -> pd.DataFrame:
        """Long table: ``input`` (position in the batch), ``layer``, ``group``, ``neuron``, ``sigma``, ``signal``."""
        frames = []
        for site, v in self.values.items():
            N, g, r = v.shape
            frames.append(pd.DataFrame(dict(
                input=torch.arange(N).repeat_interleave(g * r).numpy(),
                layer=site,
                group=torch.arange(g).repeat_interleave(r).repeat(N).numpy().astype("int32"),
                neuron=torch.arange(r).repeat(N * g).numpy().astype("int32"),
                sigma=self.sigma[site].reshape(-1).repeat(N).cpu().double().numpy(),
                signal=v.reshape(-1).cpu().double().numpy(),
            )))
        cols = ["input", "layer", "group", "neuron", "sigma", "signal"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def key_of(site: str) -> str:
    """The layer name of a site (``"conv1#2"`` → ``"conv1"``)."""
    return site.split("#")[0] if "#" in site else site


def run_forward(plan: ProjectionPlan, x: torch.Tensor, on_output) -> list[str]:
    """One hooked forward pass of ``x``; returns the sites in call order. Errors from the model become one-line InputErrors."""
    x = x.to(device=plan.device, dtype=plan.dtype)
    if plan.runner is not None:
        try:
            outputs = plan.runner.run(x)
        except ConvSVDError:
            raise
        except Exception as e:
            raise model_failure(plan, x, e) from None
        for site, y in outputs:
            on_output(site, key_of(site), y)
        return [site for site, _ in outputs]
    with capture(plan.hooked, on_output) as cap:
        cap.reset()
        try:
            with torch.no_grad():
                plan.model(x)
        except ConvSVDError:
            raise
        except Exception as e:
            raise model_failure(plan, x, e) from None
        return list(cap.sites)


def signals(
    model: object,
    inputs: torch.Tensor,
    *,
    layers: str | Sequence[str] | None = None,
    aggregate: str = "mean",
    fold_bn: bool = False,
    svd: Decomposition | None = None,
    dtype: torch.dtype | str | None = None,
    plan: ProjectionPlan | None = None,
) -> Signals:
    """Aggregated SVD-neuron signals of a batch of inputs, in memory.

    Parameters
    ----------
    model : nn.Module
    inputs : torch.Tensor
        ``(N, C, *spatial)``.
    layers, fold_bn, svd, dtype
        As in :func:`plan_projection`.
    aggregate : {"mean", "max", "abs", "l2"}
    plan : ProjectionPlan, optional
        Reuse a plan (then ``layers``, ``fold_bn``, ``svd``, ``dtype`` are ignored).

    Returns
    -------
    Signals
        ``values[site]`` ``(N, g, r)``.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    >>> s = signals(net, torch.randn(5, 1, 8, 8))
    >>> {k: tuple(v.shape) for k, v in s.values.items()}
    {'0': (5, 1, 4), '3': (5, 1, 2)}
    """
    check.choice(aggregate, "aggregate", Aggregation)
    plan = plan or plan_projection(model, layers=layers, fold_bn=fold_bn, svd=svd, dtype=dtype)
    out: dict[str, torch.Tensor] = {}
    sig: dict[str, torch.Tensor] = {}

    def on_output(site: str, key: str, y: torch.Tensor) -> None:
        p = plan.projectors[key]
        out[site] = p.aggregate(y, aggregate).reshape(y.shape[0], p.groups, p.rank)
        sig[site] = p.sigma

    with eval_mode(plan.model), moved_to(plan.model, plan.device):
        run_forward(plan, inputs, on_output)
    return Signals(out, sig, aggregate)


def signal_maps(
    model: object,
    inputs: torch.Tensor,
    *,
    layers: str | Sequence[str] | None = None,
    fold_bn: bool = False,
    svd: Decomposition | None = None,
    dtype: torch.dtype | str | None = None,
    plan: ProjectionPlan | None = None,
) -> dict[str, torch.Tensor]:
    """Per-location signals ``u_iᵀ (y_p − b)`` of chosen inputs, before aggregation.

    Returns
    -------
    dict of str to torch.Tensor
        ``{site: (N, g, r, *out_spatial)}`` for conv layers, ``(N, g, r, *lead)``
        for linear layers applied to ``(N, *lead, in)`` (``(N, g, r)`` for plain ``(N, in)``).

    >>> from torch import nn
    >>> m = signal_maps(nn.Conv2d(2, 3, 3, groups=1), torch.randn(1, 2, 5, 5))
    >>> tuple(m["<root>"].shape)
    (1, 1, 3, 3, 3)
    """
    plan = plan or plan_projection(model, layers=layers, fold_bn=fold_bn, svd=svd, dtype=dtype)
    out: dict[str, torch.Tensor] = {}

    def on_output(site: str, key: str, y: torch.Tensor) -> None:
        p = plan.projectors[key]
        s = p.maps(y)
        lead = tuple(y.shape[2:]) if p.kind != "linear" else tuple(y.shape[1:-1])
        out[site] = s.reshape(*s.shape[:3], *lead)

    with eval_mode(plan.model), moved_to(plan.model, plan.device):
        run_forward(plan, inputs, on_output)
    return out

