"""Turn a model's failure on a batch into one line that says what the model expects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from convsvd.errors import InputError
from convsvd.io import LayerSpec
from convsvd.signals.hooks import capture

if TYPE_CHECKING:
    from convsvd.signals.project import ProjectionPlan

__all__ = ["model_failure"]


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _expectation(spec: LayerSpec, x: object) -> str | None:
    if not isinstance(x, torch.Tensor):
        return None
    if spec.kind == "linear":
        if x.shape[-1] != spec.in_channels:
            return f"expects {spec.in_channels} input features, got {x.shape[-1]}"
        return None
    if x.dim() < 2 or x.shape[1] != spec.in_channels:
        return f"expects {spec.in_channels} input channels, got {x.shape[1] if x.dim() >= 2 else 'none'}"
    if x.dim() != spec.spatial_dims + 2:
        return f"expects {spec.spatial_dims}-d inputs (N, C, {', '.join('…' * spec.spatial_dims)}), got shape {tuple(x.shape)}"
    return None


def model_failure(plan: "ProjectionPlan", x: torch.Tensor, error: BaseException) -> InputError:
    """An :class:`InputError` naming the input shape, the layer that failed and what it expects.

    The failing layer is found by running one input again with every conv and
    linear layer hooked (only on this error path).
    """
    shape = "×".join(map(str, x.shape[1:]))
    where = ""
    inputs: dict[str, object] = {}

    def on_input(site: str, key: str, args: tuple) -> None:
        inputs[site] = args[0] if args else None

    modules = {s.name: s.module for s in plan.weights.layers if s.module is not None}
    specs = {s.name: s for s in plan.weights.layers}
    try:
        with capture(modules, on_output=lambda *a: None, on_input=on_input) as cap:
            cap.reset()
            try:
                with torch.no_grad():
                    plan.model(x[:1])
            except Exception:
                pass
            failing = cap.open[-1] if cap.open else None
            done = cap.sites[-1] if cap.sites else None
    except Exception:  # diagnosis is best effort: the original error is reported anyway
        failing = done = None
    if failing is not None:
        spec = specs[failing.split("#")[0]]
        exp = _expectation(spec, inputs.get(failing))
        where = f" at layer {failing!r}" + (f" ({exp})" if exp else "")
    elif done is not None:
        where = f" after layer {done!r}"
    hint = ""
    first = plan.weights.layers[0] if plan.weights.layers else None
    if failing is None and first is not None and not first.transposed:
        unit = "input features" if first.kind == "linear" else "channels"
        hint = f" (its first layer {first.name!r} takes {first.in_channels} {unit})"
    return InputError(f"model {plan.source!r}: fails on inputs of shape {shape}{where}{hint}: {_first_line(error)}")
