"""Feature visualisation of SVD neurons: optimise an input for a singular direction.

For SVD neuron ``(layer, group j, index i)`` with left singular vector ``u_i``
the objective of an image ``x`` is its signal ``d · u_iᵀ (y_p(x) − b)``, where
``y`` is the layer's own output, ``b`` its bias and ``d = ±1`` the direction:
singular vectors have no intrinsic sign, so both ``+u_i`` and ``−u_i`` are
features. Over the locations ``p`` the signal is averaged (``location="mean"``)
or read at the centre location (``location="centre"``).

Method (in the manner of Lucid, Olah et al. 2017, "Feature Visualization"):

- **Image parameterisation.** ``kind="fourier"`` (default): each channel is
  ``irfft2(s ⊙ c) / 4`` with learnable complex coefficients ``c`` (``norm="ortho"``)
  and the fixed frequency scaling ``s(f) = 1 / max(f, 1/max(h, w))^decay`` where
  ``f`` is the radial frequency in cycles per pixel; so low frequencies move
  fastest and the optimiser is not dominated by high-frequency noise.
  ``kind="pixel"``: the pixels themselves.
- **Colour.** For 3-channel models the three parameterised channels are mixed by
  :func:`colour_matrix` (decorrelated colour: the square root of the ImageNet
  RGB covariance), then squashed by a sigmoid. One-channel (grayscale) models
  and other channel counts use independent channels and the sigmoid only.
  The sigmoid's ``[0, 1]`` is the model's input range; pass ``preprocess`` (for
  example an ImageNet normalisation) when the model expects something else.
- **Clipping to the data range.** ``value_range=(lo, hi)`` (per channel, or one
  value for all): the model sees ``lo + (hi − lo) · image`` (then ``preprocess``),
  so every input it is shown lies inside the range of the data it was trained on
  (for a normalised dataset, the range of the normalised pixels) and the optimiser
  cannot push pixels past what a real input can hold. ``images`` stay in ``[0, 1]``.
- **Transformation robustness.** At every step each image is randomly
  translated (``jitter``, a share of its side), scaled and rotated in one
  bilinear resampling (``F.affine_grid`` + ``F.grid_sample``, reflected at the
  borders, output the size of the image), then resized to the model's input
  size (bilinear, antialiased when shrinking): transforms never change the
  shape the model sees.
- **Optimiser.** Adam (learning rate ``lr``) on the parameters; the forward pass
  stops at the target layer (later layers do not matter for the objective).
- **Diversity** (optional, ``copies > 1`` and ``diversity > 0``): the copies of one
  neuron and direction are pushed apart by ``diversity · Σ_{a≠b} cos(G_a, G_b) / copies``
  where ``G`` is the Gram matrix (channels × channels) of the layer's output.

**Batched and reproducible.** All neurons × directions × copies are optimised in
one forward pass per step (``batch_size`` caps the images per pass). Every image
draws its initial parameters and every step's transform from its own
``torch.Generator`` seeded from ``(seed, flat neuron index, direction, copy)``
(:func:`image_seed`), on the CPU in float64, and nothing in the objective mixes
images (the model runs in eval mode; the diversity term only mixes the copies of
one neuron and direction, which always share a pass). So a neuron's images do
not depend on which other neurons share its batch: batched results equal one
by one results; exactly in float64, and up to float32 rounding differences
between batched and single-image kernels otherwise.

Why not torch-lucent: it has not been released since 2021, pulls torchvision
(and with it a CUDA torch), optimises one objective at a time at a fixed size,
and knows neither SVD neurons nor 8×8 inputs; this module is a small own
implementation of the same method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast, get_args

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from convsvd import _validate as check
from convsvd._progress import Bar, progress as _progress
from convsvd._results import LayerResult
from convsvd._typing import Direction, Location
from convsvd.decompose import Decomposition
from convsvd.errors import ConvSVDError, InputError
from convsvd.signals.hooks import capture, eval_mode
from convsvd.signals.project import Projector, ProjectionPlan, plan_projection
from convsvd.target import TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DIRECTIONS",
    "LOCATIONS",
    "FeatureVisualization",
    "ImageParam",
    "Transforms",
    "colour_matrix",
    "featureviz",
    "image_seed",
]

#: Accepted ``directions`` and the signs they optimise, in order.
DIRECTIONS: dict[str, tuple[int, ...]] = {"+": (1,), "-": (-1,), "both": (1, -1)}

#: Side of the images of a model whose input side no source states and ``size`` does not give.
GUESSED_SIDE = 224
#: Accepted ``location``: the signal averaged over locations, or at the centre location.
LOCATIONS: tuple[str, ...] = get_args(Location)

#: Eigenvalues and eigenvectors (columns) of the covariance of ImageNet RGB pixels in ``[0, 1]``,
#: as published with the "PCA colour augmentation" of Krizhevsky, Sutskever & Hinton (2012), §4.1.
IMAGENET_RGB_EIGENVALUES: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_RGB_EIGENVECTORS: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
_FOURIER_GAIN = 0.25  # keeps the first steps in the sigmoid's near-linear range


def colour_matrix(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The fixed colour-decorrelation matrix ``M`` (3×3): RGB ``= M · z``.

    ``M = E Λ^{1/2}`` is a square root of the ImageNet RGB covariance ``E Λ Eᵀ``
    (eigen-pairs :data:`IMAGENET_RGB_EIGENVALUES`, :data:`IMAGENET_RGB_EIGENVECTORS`),
    divided by its largest column norm: independent channels ``z`` of unit scale
    become colours with ImageNet's correlations, the brightest direction
    (``≈ (1, 1, 1)/√3``) at unit scale. The first column's sign is flipped so
    that it is positive (a square root's column signs are free).

    Returns
    -------
    torch.Tensor
        ``(3, 3)``.

    >>> M = colour_matrix()
    >>> [round(float(v), 3) for v in M.norm(dim=0)]  # √(λ_k / λ_1)
    [1.0, 0.294, 0.144]
    """
    E = torch.tensor(IMAGENET_RGB_EIGENVECTORS, dtype=torch.float64)
    lam = torch.tensor(IMAGENET_RGB_EIGENVALUES, dtype=torch.float64)
    M = E * lam.sqrt()
    M[:, 0] = M[:, 0].abs()
    return (M / M.norm(dim=0).max()).to(dtype)


@dataclass(frozen=True)
class ImageParam:
    """How the optimised image is parameterised.

    Parameters
    ----------
    kind : {"fourier", "pixel"}
    decay : float
        Exponent of the frequency scaling ``1/f^decay`` (Fourier only; 0 = none).
    decorrelate : bool
        Mix 3-channel images with :func:`colour_matrix` (ignored for other channel counts).
    init_std : float
        Standard deviation of the initial parameters.
    tv : float
        Total-variation penalty: each step subtracts ``tv · |s| · TV(x)`` from the objective ``s`` of
        an image ``x`` (``TV`` = mean absolute difference of neighbouring pixels, in the image's
        ``[0, 1]`` range; ``|s|`` detached, so the penalty scales with the objective and the same
        ``tv`` serves every layer). It trades a little signal for smooth, structured images instead
        of saturated pixel noise; 0 turns it off.
    """

    kind: str = "fourier"
    decay: float = 1.0
    decorrelate: bool = True
    init_std: float = 0.01
    tv: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fourier", "pixel"):
            raise InputError(f"ImageParam kind {self.kind!r}: expected 'fourier' or 'pixel'")
        if not (self.decay >= 0 and self.init_std >= 0 and self.tv >= 0):
            raise InputError(f"ImageParam decay={self.decay!r}, init_std={self.init_std!r}, tv={self.tv!r}: "
                             f"expected values ≥ 0")


@dataclass(frozen=True)
class Transforms:
    """Random transformations applied to every image at every step.

    Parameters
    ----------
    jitter : float
        Largest translation, as a share of the image side (uniform in ``±jitter``).
    scale : (float, float)
        Range of the zoom factor (uniform).
    degrees : float
        Largest rotation in degrees (uniform in ``±degrees``).
    """

    jitter: float = 0.05
    scale: tuple[float, float] = (0.95, 1.05)
    degrees: float = 5.0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (0 <= self.jitter < 1 and 0 < lo <= hi and self.degrees >= 0):
            raise InputError(f"Transforms(jitter={self.jitter!r}, scale={self.scale!r}, degrees={self.degrees!r}): "
                             f"expected 0 ≤ jitter < 1, 0 < scale[0] ≤ scale[1], degrees ≥ 0")


@dataclass(frozen=True, eq=False)
class FeatureVisualization(LayerResult):
    """Images optimised for SVD neurons of one layer, one row per image.

    Rows are ordered neuron by neuron (as requested), then direction (``+`` before
    ``−``), then copy.

    Attributes
    ----------
    layer : str
    group, neuron : numpy.ndarray
        ``(n,)`` int: SVD neuron ``(group j, index i)`` of each image.
    direction : numpy.ndarray
        ``(n,)`` int, ``+1`` for ``+u_i``, ``−1`` for ``−u_i``.
    copy : numpy.ndarray
        ``(n,)`` int, index among the copies of one neuron and direction.
    images : torch.Tensor
        ``(n, c, h, w)`` float32 on the CPU, in ``[0, 1]`` (before ``preprocess``).
    signal : numpy.ndarray
        ``(n,)`` float64: the signal ``u_iᵀ(y − b)`` (aggregated by ``location``) of
        each final image, untransformed, resized to the model's input size.
    sigma : numpy.ndarray
        ``(n,)`` float64, ``σ_i`` of each image's neuron.
    trace : numpy.ndarray
        ``(steps, n)`` float64: the objective ``direction · signal`` of the
        transformed image at every step.
    steps, seed : int
    location : str
        ``"mean"`` or ``"centre"``.
    input_size : (int, int)
        What the model saw.
    neurons_per_group : int
        ``r``: SVD neurons in each group of the layer.
    value_range : ((float, ...), (float, ...)) or None
        Per channel ``(lo, hi)``: the model saw ``lo + (hi − lo) · images`` (None: ``images`` themselves).
    """

    layer: str
    group: np.ndarray = field(repr=False)
    neuron: np.ndarray = field(repr=False)
    direction: np.ndarray = field(repr=False)
    copy: np.ndarray = field(repr=False)
    images: torch.Tensor = field(repr=False)
    signal: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)
    trace: np.ndarray = field(repr=False)
    steps: int = 0
    seed: int = 0
    location: str = "mean"
    input_size: tuple[int, int] = (0, 0)
    neurons_per_group: int = 0
    value_range: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    _stem = "featureviz"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {"images": self.images, "trace": torch.from_numpy(np.ascontiguousarray(self.trace))}
        if self.value_range is not None:
            out["value_range"] = torch.tensor(self.value_range, dtype=torch.float64)  # (2, c): lo, hi
        return out

    def model_inputs(self) -> torch.Tensor:
        """``(n, c, h, w)``: the images as the model saw them, before ``preprocess`` and resizing
        (``lo + (hi − lo) · images`` with :attr:`value_range`)."""
        return _scale_to_range(self.images, self.value_range)

    def flat_neurons(self) -> list[int]:
        """The flat indices ``j·r + i`` of the visualised neurons, in row order, each once."""
        return list(dict.fromkeys((self.group * self.neurons_per_group + self.neuron).tolist()))

    @property
    def objective(self) -> np.ndarray:
        """``(n,)`` float64: ``direction · signal``, the final value of what was maximised."""
        return self.direction * self.signal

    def index(self, neuron: int, direction: int = 1, copy: int = 0, group: int = 0) -> int:
        """Row of one image; :class:`InputError` when it was not optimised."""
        hit = np.flatnonzero((self.group == group) & (self.neuron == neuron) & (self.direction == direction)
                             & (self.copy == copy))
        if not hit.size:
            raise InputError(f"neuron {neuron} (group {group}, direction {direction:+d}, copy {copy}): "
                             f"not in this visualisation of {self.layer!r}")
        return int(hit[0])

    def to_frame(self) -> pd.DataFrame:
        """One row per image: ``layer, group, neuron, direction ("+"/"-"), copy, sigma, signal, objective, steps, seed, location``."""
        return pd.DataFrame(dict(
            layer=self.layer, group=self.group.astype("int32"), neuron=self.neuron.astype("int32"),
            direction=np.where(self.direction > 0, "+", "-"), copy=self.copy.astype("int32"), sigma=self.sigma,
            signal=self.signal, objective=self.objective, steps=self.steps, seed=self.seed, location=self.location,
        ), columns=["layer", "group", "neuron", "direction", "copy", "sigma", "signal", "objective", "steps", "seed",
                    "location"])


# --------------------------------------------------------------------------- pure helpers


def image_seed(seed: int, neuron: int, direction: int, copy: int) -> int:
    """Seed of one image's random stream, from ``(seed, flat neuron index, direction, copy)`` only.

    >>> image_seed(0, 3, 1, 0) == image_seed(0, 3, 1, 0) != image_seed(0, 3, -1, 0)
    True
    """
    words = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, int(neuron), 0 if direction > 0 else 1, int(copy)]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])


def _frequency_scale(h: int, w: int, decay: float) -> torch.Tensor:
    """``(h, w//2 + 1)`` float64: ``1 / max(f, 1/max(h, w))^decay`` for the radial frequency ``f`` of each rfft2 bin."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = torch.sqrt(fy**2 + fx**2)
    return f.clamp_min(1.0 / max(h, w)) ** (-decay)


class _Renderer:
    """Parameters ``(B, C, …)`` → images ``(B, C, h, w)`` in ``[0, 1]``."""

    def __init__(self, param: ImageParam, channels: int, size: tuple[int, int], dtype: torch.dtype,
                 device: torch.device) -> None:
        self.param, self.channels, self.size = param, channels, size
        h, w = size
        self.shape = (channels, h, w // 2 + 1, 2) if param.kind == "fourier" else (channels, h, w)
        self.scale = (_frequency_scale(h, w, param.decay) * _FOURIER_GAIN).to(dtype=dtype, device=device)
        self.mix = colour_matrix(dtype).to(device) if (channels == 3 and param.decorrelate) else None

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        if self.param.kind == "fourier":
            z = torch.fft.irfft2(torch.view_as_complex(p) * self.scale, s=self.size, norm="ortho")
        else:
            z = p
        if self.mix is not None:
            z = torch.einsum("ij,bjhw->bihw", self.mix, z)
        return torch.sigmoid(z)


def _affine(moves: torch.Tensor, t: Transforms, h: int, w: int) -> torch.Tensor:
    """``(B, 2, 3)`` sampling matrices from uniforms ``moves`` ``(B, 4)`` in ``[0, 1)``: translate, zoom, rotate."""
    tx = (2 * moves[:, 0] - 1) * t.jitter * 2  # normalised coordinates span 2 per side
    ty = (2 * moves[:, 1] - 1) * t.jitter * 2
    zoom = t.scale[0] + moves[:, 2] * (t.scale[1] - t.scale[0])
    angle = (2 * moves[:, 3] - 1) * math.radians(t.degrees)
    c, s = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    row0 = torch.stack([c, -s * (h / w), tx], dim=1)
    row1 = torch.stack([s * (w / h), c, ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def check_value_range(value_range: object, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(lo, hi)`` (numbers, or one per channel) → per-channel tuples with ``lo < hi``; None stays None."""
    if value_range is None:
        return None
    try:
        lo, hi = cast("tuple[Any, Any]", value_range)  # unpacking checks there are two; float() the rest
        lo_t = tuple(float(v) for v in (lo if isinstance(lo, (list, tuple)) else [lo] * channels))
        hi_t = tuple(float(v) for v in (hi if isinstance(hi, (list, tuple)) else [hi] * channels))
    except (TypeError, ValueError):
        raise check.fail("value_range", value_range, "(lo, hi): two numbers, or two sequences of one number "
                                                        "per channel") from None
    if len(lo_t) != channels or len(hi_t) != channels or not all(math.isfinite(a) and math.isfinite(b) and a < b
                                                                  for a, b in zip(lo_t, hi_t)):
        raise check.fail("value_range", value_range, f"(lo, hi) with finite lo < hi for each of the {channels} "
                                                      f"channels")
    return lo_t, hi_t


def _scale_to_range(img: torch.Tensor, value_range: tuple[tuple[float, ...], tuple[float, ...]] | None) -> torch.Tensor:
    if value_range is None:
        return img
    lo = torch.tensor(value_range[0], dtype=img.dtype, device=img.device)[:, None, None]
    hi = torch.tensor(value_range[1], dtype=img.dtype, device=img.device)[:, None, None]
    return lo + (hi - lo) * img


def _to_input(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(img.shape[-2:]) == size:
        return img
    shrink = img.shape[-2] > size[0] or img.shape[-1] > size[1]
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _model_failure(plan: ProjectionPlan, x: torch.Tensor, error: Exception) -> InputError:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    what = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    shape = "×".join(map(str, x.shape[1:]))
    return InputError(f"model {plan.source!r}: fails on inputs of shape {shape} (is input_size the size the model "
                      f"takes?): {what}")


class _Reached(Exception):
    """Raised by the hook once the target layer has run: the rest of the forward pass is not needed."""


# --------------------------------------------------------------------------- the objective


class _Objective:
    """Signals of the images' own neurons (and the Gram matrices for diversity), from the layer's output."""

    def __init__(self, projector: Projector, group: torch.Tensor, neuron: torch.Tensor, location: str) -> None:
        self.p = projector
        self.group, self.neuron, self.location = group, neuron, location
        self.u = projector.Ut[group, neuron]  # (B, m)

    def signal(self, y: torch.Tensor) -> torch.Tensor:
        z = self.p.locations(y)  # (B, g, m, L), bias removed
        z = z[torch.arange(z.shape[0], device=z.device), self.group]  # (B, m, L)
        s = torch.einsum("bm,bml->bl", self.u, z)
        if self.location == "mean":
            return s.mean(dim=-1)
        lead = tuple(y.shape[2:]) if self.p.kind != "linear" else (s.shape[-1],)
        centre = int(np.ravel_multi_index(tuple(d // 2 for d in lead), lead))
        return s[:, centre]


def _diversity(y: torch.Tensor, copies: int) -> torch.Tensor:
    """``Σ_units Σ_{a≠b} cos(G_a, G_b) / copies`` over the units of ``copies`` consecutive images."""
    B = y.shape[0]
    f = y.reshape(B, y.shape[1], -1) if y.dim() > 2 else y.reshape(B, -1, 1)
    G = (f @ f.transpose(1, 2) / f.shape[-1]).reshape(B // copies, copies, -1)
    G = G / G.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = G @ G.transpose(1, 2)
    return (sim.sum(dim=(1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(dim=1)).sum() / copies


# --------------------------------------------------------------------------- the run


def _model_call(model: nn.Module, dtype: torch.dtype, device: torch.device) -> Callable[[torch.Tensor], object]:
    """The model as a function of its input, run in ``dtype`` on ``device``; the module itself is never changed.

    When the model's own parameters already have that dtype and device it is
    called as it is; otherwise through :func:`torch.func.functional_call` with
    converted copies of its floating parameters and buffers.
    """
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    need = [n for n, t in tensors.items() if t.is_floating_point() and (t.dtype != dtype or t.device != device)]
    if not need:
        return model
    swapped = {n: t.detach().to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
               for n, t in tensors.items()}
    return lambda x: torch.func.functional_call(model, swapped, (x,))


def _check_neurons(neurons: int | Sequence[int] | None, total: int, layer: str) -> list[int]:
    if neurons is None:
        return list(range(min(8, total)))
    given: list[object] = [neurons] if check.is_int(neurons) else list(neurons)  # type: ignore[arg-type]  # is_int: not a sequence
    if not given or not all(check.is_int(n) for n in given):
        raise check.fail("neurons", neurons, "SVD neuron indices (ints)")
    seq = [check.integer(n, "neurons") for n in given]
    bad = [n for n in seq if not 0 <= n < total]
    if bad:
        raise InputError(f"neurons {bad[:5]}: layer {layer!r} has {total} SVD neurons (0–{total - 1})")
    if len(set(seq)) != len(seq):
        raise InputError(f"neurons {seq}: each neuron once")
    return seq


def featureviz(
    model: object,
    layer: str,
    neurons: int | Sequence[int] | None = None,
    *,
    directions: str = "both",
    steps: int = 256,
    size: int | tuple[int, int] | None = None,
    location: str = "mean",
    copies: int = 1,
    diversity: float = 0.0,
    lr: float = 0.05,
    seed: int = 0,
    image: ImageParam = ImageParam(),
    transforms: Transforms | None = Transforms(),
    value_range: tuple[float, float] | tuple[Sequence[float], Sequence[float]] | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int | None = None,
    svd: Decomposition | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
    **options: Unpack[TargetOptions],
) -> FeatureVisualization:
    """Optimise input images that maximise the signals of SVD neurons of one layer.

    Parameters
    ----------
    model : Target, nn.Module, or anything :func:`convsvd.target.resolve` accepts that holds a module
        Run in eval mode (each module's flag restored); never modified.
    layer : str
        A conv or linear layer's name (for a folded BatchNorm, the conv's name).
    neurons : int or sequence of int, optional
        Flat SVD neuron indices ``j·r + i`` (group ``j``, index ``i``; just ``i``
        for an ungrouped layer). Default: the 8 leading ones.
    directions : {"both", "+", "-"}
        Maximise ``u_iᵀ(y − b)`` (``+``), its negative (``−``), or both.
    steps : int
        Adam steps.
    size : int or (int, int), optional
        Side of the optimised image (default: ``input_size``).
    location : {"mean", "centre"}
        The signal averaged over the layer's output locations, or at the centre one.
    copies : int
        Images per neuron and direction (each its own seed).
    diversity : float
        Weight of the diversity penalty among the copies (0: none).
    lr : float
        Adam's learning rate.
    seed : int
        With the neuron, direction and copy, seeds each image's random stream (:func:`image_seed`).
    image : ImageParam
        Parameterisation (Fourier with decorrelated colour by default).
    transforms : Transforms or None
        Random jitter, zoom and rotation per step (None: none).
    value_range : (lo, hi), optional
        The data's range (numbers, or one per channel): the model sees ``lo + (hi − lo) · image``, so
        its inputs never leave it (default: ``[0, 1]``, the images themselves).
    preprocess : callable, optional
        ``(B, C, H, W)`` images in ``[0, 1]`` → model input (e.g. a normalisation).
    batch_size : int, optional
        Most images per forward pass (whole neuron-direction units; default: all in one).
    svd : Decomposition, optional
        A decomposition to reuse (``mode="full"``/``"topk"``, ``fold_bn`` as here).
    progress : bool, None or callable
        Progress bar over the steps (None: automatic) or ``fn(done, total, what)``.
    **options
        Checked by :func:`convsvd.target.resolve` (or carried by a Target): ``input_size`` (int or
        (int, int): the spatial size the model takes; default what the model states — a built-in
        model's input, an ONNX graph's, the one square side a shape trace finds — else ``size``,
        else 224; images of another ``size`` are resized to it after the transforms); ``fold_bn``
        (target the BatchNorm output of a ``conv → BatchNorm`` pair, with the folded SVD);
        ``device`` (default: where the model's parameters are); ``dtype`` (precision of the
        optimisation; default the model's).

    Returns
    -------
    FeatureVisualization
        ``images`` ``(len(neurons) · len(directions) · copies, C, h, w)``.

    Raises
    ------
    InputError
        Unknown layer, neuron index out of range, bad option, a model that fails
        on images of the given size, or a layer the forward pass never reaches.

    >>> from convsvd import zoo
    >>> fv = featureviz(zoo.load("digits-cnn"), "conv2", [0, 1], steps=8, size=8)
    >>> tuple(fv.images.shape), fv.to_frame().direction.tolist()
    ((4, 1, 8, 8), ['+', '-', '+', '-'])
    """
    check.choice(directions, "directions", Direction)
    check.choice(location, "location", LOCATIONS)
    steps = check.integer(steps, "steps", minimum=1)
    copies = check.integer(copies, "copies", minimum=1)
    seed = check.integer(seed, "seed", minimum=0)
    batch_size = check.optional_integer(batch_size, "batch_size", minimum=1)
    diversity = check.number(diversity, "diversity", low=0)
    lr = check.number(lr, "lr", low=0, low_open=True)
    if not isinstance(image, ImageParam):
        raise check.fail("image", image, "an ImageParam")
    if not (transforms is None or isinstance(transforms, Transforms)):
        raise check.fail("transforms", transforms, "a Transforms or None")
    if not isinstance(layer, str):
        raise check.fail("layer", layer, "one layer name")
    target = resolve(model, **options)
    target.weights[layer]  # one-line error naming the layers when unknown
    if target.weights.format == "onnx":
        raise InputError(f"model {target.source!r}: feature visualisation needs gradients through the model, and "
                         f"an ONNX file runs in ONNX Runtime without them; load the torch model "
                         f"('package.module:factory' with --weights) for features, the ONNX file serves profile, "
                         f"exemplars and report")
    hw, in_hw = check.size(size, "size"), target.input_size
    if in_hw is None:  # the model's own input side (zoo, ONNX graph, shape trace), else the image's, else 224
        in_hw = target.input_side() or hw or (GUESSED_SIDE, GUESSED_SIDE)
    hw = hw or in_hw
    plan = plan_projection(target, layers=[layer], svd=svd)
    first = plan.weights.layers[0]
    if first.kind != "conv2d":
        raise InputError(f"model {plan.source!r}: feature visualisation needs images, but its first layer "
                         f"{first.name!r} is {first.kind}, not conv2d")
    proj = plan.projectors[layer]
    value_range = check_value_range(value_range, first.in_channels)
    flat = _check_neurons(neurons, proj.neurons, layer)
    rows = [(n // proj.rank, n % proj.rank, d, c, n) for n in flat for d in DIRECTIONS[directions] for c in range(copies)]
    unit = copies
    per_pass = len(rows) if batch_size is None else max(unit, batch_size // unit * unit)
    chunks = [rows[i:i + per_pass] for i in range(0, len(rows), per_pass)]

    run_dtype = proj.Ut.dtype
    renderer = _Renderer(image, first.in_channels, hw, run_dtype, plan.device)
    call = _model_call(plan.model, run_dtype, plan.device)
    job = _Job(plan, layer, proj, call, renderer, steps, hw, in_hw, location, copies, float(diversity), float(lr),
               seed, transforms, preprocess, value_range)
    images, signals, traces = [], [], []
    with eval_mode(plan.model), _progress(steps * len(chunks), f"features {layer}", progress) as bar:
        for chunk in chunks:
            img, sig, tr = _optimise(job, chunk, bar)
            images.append(img)
            signals.append(sig)
            traces.append(tr)
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    sigma = proj.sigma.detach().double().cpu()[arr[:, 0], arr[:, 1]].numpy()
    return FeatureVisualization(
        layer=layer, group=arr[:, 0], neuron=arr[:, 1], direction=arr[:, 2], copy=arr[:, 3],
        images=torch.cat(images), signal=np.concatenate(signals), sigma=sigma, trace=np.concatenate(traces, axis=1),
        steps=steps, seed=seed, location=location, input_size=in_hw, neurons_per_group=proj.rank,
        value_range=value_range,
    )


@dataclass(frozen=True, eq=False)
class _Job:
    """What every pass of one :func:`featureviz` call shares (checked there)."""

    plan: ProjectionPlan
    layer: str
    proj: Projector
    call: Callable[[torch.Tensor], object]
    render: _Renderer
    steps: int
    hw: tuple[int, int]
    in_hw: tuple[int, int]
    location: str
    copies: int
    diversity: float
    lr: float
    seed: int
    transforms: Transforms | None
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None
    value_range: tuple[tuple[float, ...], tuple[float, ...]] | None = None


def _total_variation(img: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels of each image ``(B, C, H, W)`` → ``(B,)``."""
    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().flatten(1).mean(dim=1) if img.shape[-1] > 1 else 0.0
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().flatten(1).mean(dim=1) if img.shape[-2] > 1 else 0.0
    return dx + dy  # type: ignore[return-value]


def _optimise(job: _Job, rows: list[tuple[int, int, int, int, int]],
              bar: Bar) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Optimise one pass worth of images (``rows``: group, neuron, direction, copy, flat neuron);
    returns (images, final signals, trace)."""
    plan, layer, proj, call, render, steps = job.plan, job.layer, job.proj, job.call, job.render, job.steps
    hw, in_hw, location, copies, diversity, lr = job.hw, job.in_hw, job.location, job.copies, job.diversity, job.lr
    seed, transforms, preprocess = job.seed, job.transforms, job.preprocess
    dev, dt = plan.device, proj.Ut.dtype
    B = len(rows)
    inits, moves = [], []
    for g, i, d, c, n in rows:  # every image's own stream: the same whatever else is in the batch
        gen = torch.Generator().manual_seed(image_seed(seed, n, d, c))
        inits.append(torch.randn(render.shape, generator=gen, dtype=torch.float64) * render.param.init_std)
        moves.append(torch.rand(steps, 4, generator=gen, dtype=torch.float64))
    params = torch.stack(inits).to(device=dev, dtype=dt).requires_grad_(True)
    move = torch.stack(moves, dim=1).to(device=dev, dtype=dt)  # (steps, B, 4)
    group = torch.tensor([r[0] for r in rows], device=dev)
    neuron = torch.tensor([r[1] for r in rows], device=dev)
    sign = torch.tensor([r[2] for r in rows], device=dev, dtype=dt)
    objective = _Objective(proj, group, neuron, location)
    opt = torch.optim.Adam([params], lr=lr)
    trace = torch.empty(steps, B, dtype=torch.float64, device=dev)  # kept on the device: no sync per step
    found: dict[str, torch.Tensor] = {}

    def on_output(site: str, key: str, y: torch.Tensor) -> None:
        if site == layer:
            found["y"] = y
            raise _Reached

    def forward(x: torch.Tensor, cap: object) -> torch.Tensor:
        cap.reset()  # type: ignore[attr-defined]
        found.clear()
        try:
            call(x)
        except _Reached:
            pass
        except ConvSVDError:
            raise
        except Exception as e:  # the model's own error, as one line naming the input size
            raise _model_failure(plan, x, e) from None
        if "y" not in found:
            raise InputError(f"layer {layer!r}: not called in the model's forward pass")
        return found["y"]

    def model_input(img: torch.Tensor, t: int | None) -> torch.Tensor:
        if transforms is not None and t is not None:
            theta = _affine(move[t], transforms, *hw)
            grid = F.affine_grid(theta, list(img.shape), align_corners=False)
            img = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = _to_input(_scale_to_range(img, job.value_range), in_hw)
        return preprocess(x) if preprocess is not None else x

    with capture({layer: plan.hooked[layer]}, on_output) as cap:
        tv = render.param.tv
        for t in range(steps):
            img = render(params)
            y = forward(model_input(img, t), cap)
            obj = sign * objective.signal(y)
            loss = -obj.sum()
            if tv > 0:
                loss = loss + tv * (obj.detach().abs() * _total_variation(img)).sum()
            if diversity > 0 and copies > 1:
                loss = loss + diversity * _diversity(y, copies)
            (grad,) = torch.autograd.grad(loss, [params])
            params.grad = grad
            opt.step()
            trace[t] = obj.detach()
            bar.advance(1, f"step {t + 1}/{steps}")
        with torch.no_grad():
            img = render(params)
            final = objective.signal(forward(model_input(img, None), cap))
    return img.detach().float().cpu(), final.double().cpu().numpy(), trace.cpu().numpy()
