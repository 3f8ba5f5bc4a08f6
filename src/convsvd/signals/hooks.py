"""Capture the outputs of chosen modules during a forward pass; hooks always removed.

A *site* is one call of a module in a forward pass. The first call of the
module registered as ``name`` is site ``name``, the second ``name#1``, the
third ``name#2``, …; counting restarts with :meth:`Capture.reset` (once per
forward pass). So a module used twice (weight sharing, a loop in ``forward``)
gives one site per call, and a model whose ``forward`` is functional code,
returns tuples or dicts, or is not an ``nn.Sequential`` works the same: only the
chosen modules are hooked, the model's output is never touched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

__all__ = ["Capture", "capture", "eval_mode", "moved_to", "site_name"]

#: ``fn(site, key, output)``: called with each output right after the module returns.
OutputFn = Callable[[str, str, torch.Tensor], None]
#: ``fn(site, key, inputs)``: called with a module's positional inputs before it runs.
InputFn = Callable[[str, str, tuple], None]


def site_name(name: str, call: int) -> str:
    """``name`` for a module's first call in a pass, ``name#k`` for call ``k`` (0-based).

    >>> site_name("conv1", 0), site_name("conv1", 2)
    ('conv1', 'conv1#2')
    """
    return name if call == 0 else f"{name}#{call}"


class Capture:
    """What :func:`capture` yields: the outputs of one forward pass, by site.

    Attributes
    ----------
    outputs : dict of str to torch.Tensor
        ``{site: output}`` of the last pass, in call order (detached clones;
        empty when an ``on_output`` callback consumes them instead).
    sites : list of str
        Sites of the last pass, in call order.
    open : list of str
        Sites whose module was entered but has not returned (set during a pass;
        after a failed forward, the last one is where it failed).
    """

    def __init__(self, keep: bool) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.sites: list[str] = []
        self.open: list[str] = []
        self._calls: dict[str, int] = {}
        self._keep = keep

    def reset(self) -> None:
        """Start a new forward pass: call counts, sites and outputs cleared."""
        self.outputs, self.sites, self.open, self._calls = {}, [], [], {}


@contextmanager
def capture(
    modules: Mapping[str, nn.Module],
    on_output: OutputFn | None = None,
    on_input: InputFn | None = None,
) -> Iterator[Capture]:
    """Hook ``modules`` for the duration of the ``with`` block.

    Parameters
    ----------
    modules : mapping of str to nn.Module
        ``{key: module}``; a module listed under several keys is hooked once,
        under its first key.
    on_output : callable, optional
        ``fn(site, key, output)`` called as soon as the module returns, before
        any later (possibly in-place) operation changes the output. Without it,
        detached clones are kept in :attr:`Capture.outputs`.
    on_input : callable, optional
        ``fn(site, key, inputs)`` called before the module runs.

    Yields
    ------
    Capture
        Call :meth:`Capture.reset` before each forward pass.

    Notes
    -----
    The hooks return None, so outputs are unchanged; every handle is removed in
    ``finally``, also when the forward pass (or ``on_output``) raises.

    >>> model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    >>> shared = model[0]
    >>> with capture({"lin": shared}) as cap:
    ...     cap.reset()
    ...     _ = model(model(torch.zeros(1, 3)))
    >>> cap.sites, len(shared._forward_hooks)
    (['lin', 'lin#1'], 0)
    """
    cap = Capture(keep=on_output is None)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    seen: set[int] = set()

    def make(key: str) -> tuple[Callable, Callable]:
        def pre(_module: nn.Module, inputs: tuple) -> None:
            k = cap._calls.get(key, 0)
            cap._calls[key] = k + 1
            cap.open.append(site_name(key, k))
            if on_input is not None:
                on_input(cap.open[-1], key, inputs)

        def post(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            site = cap.open.pop() if cap.open else site_name(key, cap._calls.get(key, 1) - 1)
            cap.sites.append(site)
            if on_output is not None:
                on_output(site, key, output)
            elif cap._keep:
                cap.outputs[site] = output.detach().clone() if isinstance(output, torch.Tensor) else output

        return pre, post

    try:
        for key, module in modules.items():
            if id(module) in seen:
                continue
            seen.add(id(module))
            pre, post = make(key)
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        yield cap
    finally:
        for h in handles:
            h.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode for the block; restore each one's flag in ``finally``.

    >>> net = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2).eval())
    >>> with eval_mode(net):
    ...     inside = [m.training for m in net.modules()]
    >>> inside, [m.training for m in net.modules()]
    ([False, False, False], [True, True, False])
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def moved_to(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Run the block with ``model`` on ``device``; move it back where it was in ``finally``."""
    params = list(model.parameters()) + list(model.buffers())
    home = params[0].device if params else device
    if home == device:
        yield model
        return
    try:
        model.to(device)
        yield model
    finally:
        model.to(home)
