"""The few array operations the vectorised kernels need, for NumPy and for torch.

Kernels are written once against :class:`Ops`; :func:`ops_for` picks the
implementation. NumPy runs on the CPU without a thread pool, so its timings stay
stable on a busy machine (torch's CPU thread pool can stall for milliseconds per
operation when the cores are oversubscribed); torch is used for CUDA tensors, or on
request.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeAlias, TypeVar

import numpy as np
import torch

from convsvd.errors import InputError

Array: TypeAlias = Any
"""A NumPy array or a torch tensor (the kernels are written for both)."""
A = TypeVar("A", np.ndarray, torch.Tensor)
Backend = Literal["auto", "numpy", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "numpy", "torch")


class Ops(Generic[A]):
    """A operations on 1-D and 2-D float64/int64/bool arrays of one library."""

    name = ""

    def asarray(self, values: Any) -> A:  # float64 vector
        raise NotImplementedError

    def to_numpy(self, a: A) -> np.ndarray:
        raise NotImplementedError

    def arange(self, n: int) -> A:
        raise NotImplementedError

    def ints(self, values: list[int]) -> A:
        raise NotImplementedError

    def true_like(self, a: A) -> A:
        raise NotImplementedError

    def full(self, shape: tuple[int, ...], value: float) -> A:
        raise NotImplementedError

    def stack_padded(self, rows: list[A], width: int) -> A:
        """Stack 1-D rows into (B, width), padding each with its own last value."""
        raise NotImplementedError

    def sort(self, a: A) -> A:
        raise NotImplementedError

    def suffix_sum(self, a: A) -> A:
        """Along axis 1: out[:, k] = Σ_{i ≥ k} a[:, i]."""
        raise NotImplementedError

    def cummax(self, a: A) -> A:
        raise NotImplementedError

    def nonzero(self, mask: A) -> tuple[A, A]:
        raise NotImplementedError

    def take_rows(self, a: A, rows: A) -> A:
        raise NotImplementedError

    def as_float(self, a: A) -> A:
        raise NotImplementedError

    def where(self, cond: A, a: Any, b: Any) -> A:
        raise NotImplementedError

    def log(self, a: A) -> A:
        raise NotImplementedError

    def neg_expm1_of_product(self, a: A, b: A) -> A:
        """−expm1(a·b) (a new array)."""
        raise NotImplementedError

    def clamp0_(self, a: A) -> A:
        raise NotImplementedError

    def expm1_(self, a: A) -> A:
        raise NotImplementedError

    def abs_(self, a: A) -> A:
        raise NotImplementedError

    def rowmax(self, a: A) -> A:
        raise NotImplementedError

    def rowsum(self, a: A) -> A:
        raise NotImplementedError

    def rowany(self, a: A) -> A:
        raise NotImplementedError

    def rowargmin(self, a: A) -> A:
        """First index of the row minimum (NaN-free input)."""
        raise NotImplementedError

    def nan_to_inf(self, a: A) -> A:
        raise NotImplementedError

    def isfinite_all(self, a: A) -> bool:
        raise NotImplementedError


class NumpyOps(Ops[np.ndarray]):
    name = "numpy"

    def asarray(self, values: Any) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            return values.detach().to("cpu", torch.float64).reshape(-1).numpy()
        return np.asarray(values, dtype=np.float64).reshape(-1)

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n)

    def ints(self, values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    def true_like(self, a: np.ndarray) -> np.ndarray:
        return np.ones(a.shape, dtype=bool)

    def full(self, shape: tuple[int, ...], value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float64)

    def stack_padded(self, rows: list[np.ndarray], width: int) -> np.ndarray:
        out = np.empty((len(rows), width), dtype=np.float64)
        for i, r in enumerate(rows):
            out[i, : r.size] = r
            out[i, r.size :] = r[-1]
        return out

    def sort(self, a: np.ndarray) -> np.ndarray:
        return np.sort(a)

    def suffix_sum(self, a: np.ndarray) -> np.ndarray:
        return np.cumsum(a[:, ::-1], axis=1)[:, ::-1]

    def cummax(self, a: np.ndarray) -> np.ndarray:
        return np.maximum.accumulate(a, axis=1)

    def nonzero(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.nonzero(mask)
        return rows, cols

    def take_rows(self, a: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.take(a, rows, axis=0)

    def as_float(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def where(self, cond: np.ndarray, a: Any, b: Any) -> np.ndarray:
        return np.where(cond, a, b)

    def log(self, a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(a)

    def neg_expm1_of_product(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return -np.expm1(a * b)

    def clamp0_(self, a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0.0, out=a)

    def expm1_(self, a: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.expm1(a, out=a)

    def abs_(self, a: np.ndarray) -> np.ndarray:
        return np.abs(a, out=a)

    def rowmax(self, a: np.ndarray) -> np.ndarray:
        return a.max(axis=1)

    def rowsum(self, a: np.ndarray) -> np.ndarray:
        return a.sum(axis=1)

    def rowany(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a.any(axis=1))

    def rowargmin(self, a: np.ndarray) -> np.ndarray:
        return a.argmin(axis=1)

    def nan_to_inf(self, a: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(a), np.inf, a)

    def isfinite_all(self, a: np.ndarray) -> bool:
        return bool(np.isfinite(a).all())


class TorchOps(Ops[torch.Tensor]):
    name = "torch"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def asarray(self, values: Any) -> torch.Tensor:
        if isinstance(values, torch.Tensor):
            return values.detach().to(self.device, torch.float64).reshape(-1)
        arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
        return torch.from_numpy(arr).to(self.device)

    def to_numpy(self, a: torch.Tensor) -> np.ndarray:
        return a.detach().cpu().numpy()

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.device)

    def ints(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def true_like(self, a: torch.Tensor) -> torch.Tensor:
        return torch.ones(a.shape, dtype=torch.bool, device=self.device)

    def full(self, shape: tuple[int, ...], value: float) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.float64, device=self.device)

    def stack_padded(self, rows: list[torch.Tensor], width: int) -> torch.Tensor:
        return torch.stack([torch.cat([r, r[-1:].expand(width - r.numel())]) for r in rows])

    def sort(self, a: torch.Tensor) -> torch.Tensor:
        return torch.sort(a).values

    def suffix_sum(self, a: torch.Tensor) -> torch.Tensor:
        return torch.flip(torch.cumsum(torch.flip(a, [1]), 1), [1])

    def cummax(self, a: torch.Tensor) -> torch.Tensor:
        return torch.cummax(a, dim=1).values

    def nonzero(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        return rows, cols

    def take_rows(self, a: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return a.index_select(0, rows)

    def as_float(self, a: torch.Tensor) -> torch.Tensor:
        return a.to(torch.float64)

    def where(self, cond: torch.Tensor, a: Any, b: Any) -> torch.Tensor:
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(a, dtype=torch.float64, device=self.device)
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(b, dtype=a.dtype, device=self.device)
        return torch.where(cond, a, b)

    def log(self, a: torch.Tensor) -> torch.Tensor:
        return torch.log(a)

    def neg_expm1_of_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(a * b)

    def clamp0_(self, a: torch.Tensor) -> torch.Tensor:
        return a.clamp_(min=0.0)

    def expm1_(self, a: torch.Tensor) -> torch.Tensor:
        return a.expm1_()

    def abs_(self, a: torch.Tensor) -> torch.Tensor:
        return a.abs_()

    def rowmax(self, a: torch.Tensor) -> torch.Tensor:
        return a.amax(dim=1)

    def rowsum(self, a: torch.Tensor) -> torch.Tensor:
        return a.sum(dim=1)

    def rowany(self, a: torch.Tensor) -> torch.Tensor:
        return a.any(dim=1)

    def rowargmin(self, a: torch.Tensor) -> torch.Tensor:
        return torch.argmin(a, dim=1)  # first minimum

    def nan_to_inf(self, a: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(a, nan=float("inf"))

    def isfinite_all(self, a: torch.Tensor) -> bool:
        return bool(torch.isfinite(a).all())


def ops_for(values: list[Any], backend: str, device: str | torch.device | None) -> Ops[Any]:
    """The backend for ``values``: torch when asked, or when the data or ``device`` is CUDA."""
    if backend not in BACKENDS:
        raise InputError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if device is not None:
        dev = torch.device(device)
    else:
        devices = {v.device for v in values if isinstance(v, torch.Tensor)}
        dev = devices.pop() if len(devices) == 1 else torch.device("cpu")
    if backend == "numpy":
        if dev.type != "cpu":
            raise InputError(f"backend: 'numpy' computes on the CPU, but device is {dev}")
        return NumpyOps()
    if backend == "torch" or dev.type != "cpu":
        return TorchOps(dev)
    return NumpyOps()
