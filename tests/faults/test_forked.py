"""The fault suite's :func:`forked` helper: a child that hangs fails its test with its stack, never holds the run."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest
import torch

from .conftest import forked


def _children() -> set[str]:
    """This process's child processes (zombies included), from /proc."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {c for t in tasks.iterdir() for c in (t / "children").read_text().split()}


def test_a_hung_child_fails_with_its_stack_and_is_gone() -> None:
    before = _children()
    r, w = os.pipe()  # the child blocks in C code (a read nobody answers), where no Python signal handler runs
    t0 = time.monotonic()
    try:
        with pytest.raises(AssertionError, match="still running after 1 s") as err:
            forked(lambda: os.read(r, 1), timeout=1)
    finally:
        os.close(r)
        os.close(w)
    assert "in <lambda>" in str(err.value) and "test_forked.py" in str(err.value)  # the child's own stack
    assert time.monotonic() - t0 < 30
    assert _children() == before  # killed and reaped: no child left behind


def test_a_child_runs_torch_on_one_thread_whatever_the_parent_uses() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(300, 300)
        (a @ a).sum()  # the parent's OpenMP pool is started with two threads
        assert forked(lambda: 0 if torch.get_num_threads() == 1 and torch.linalg.svd(a)[1][0] > 0 else 5) == 0
    finally:
        torch.set_num_threads(before)


class _Cycle:
    """A reference cycle whose finalizer writes the pid of the process that collects it."""

    def __init__(self, marker: Path) -> None:
        self.me, self.marker = self, marker

    def __del__(self) -> None:
        self.marker.write_text(str(os.getpid()))


def test_the_child_never_collects_the_parents_objects(tmp_path: Path) -> None:
    """A finalizer of the parent's objects run in the child could wait for what only the parent has."""
    garbage, held = tmp_path / "garbage", tmp_path / "held"
    gc.disable()  # the parent's cycle stays uncollected until forked() starts
    try:
        _Cycle(garbage)
        keep = [_Cycle(held)]

        def child() -> int:
            keep.clear()  # unreachable in the child only
            gc.collect()
            return 0

        assert forked(child) == 0
    finally:
        gc.enable()
    assert garbage.read_text() == str(os.getpid())  # collected by the parent before the fork
    assert not held.exists()  # not by the child's collector
    keep.clear()
    gc.collect()
    assert held.read_text() == str(os.getpid())
