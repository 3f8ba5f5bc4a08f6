"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: str | torch.device = "cuda") -> None:
    """Wait for queued CUDA work when ``device`` is a CUDA device (so a timer sees all of it)."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], repeat: int, device: str | torch.device = "cuda") -> float:
    """Median wall time of ``repeat`` calls of ``fn``, each waiting for ``device``'s queued work."""
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stub_modules(prefixes: tuple[str, ...] = ("torchvision", "lucent")) -> None:
    """Make ``import X`` succeed with an empty placeholder for every top-level package in ``prefixes``.

    DeepDataProfiler imports torchvision and torch-lucent when it is imported, but its profilers
    use neither; the peers' environment (and the child processes that time it) need not hold them.
    Attributes of a placeholder are classes or callables that return None.
    """
    import importlib.abc
    import importlib.machinery
    import sys
    import types

    class _Any:  # stands for any attribute of a placeholder module
        def __getattr__(self, name: str) -> object:
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

        def __call__(self, *a: object, **k: object) -> None:
            return None

    def attr(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any()

    class _Placeholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
            if name.split(".")[0] in prefixes:
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
            m = types.ModuleType(spec.name)
            m.__path__ = []
            m.__getattr__ = attr  # type: ignore[method-assign]
            return m

        def exec_module(self, module: types.ModuleType) -> None:
            pass

    sys.meta_path.insert(0, _Placeholders())
