"""The fault suite's :func:`forked` helper: a child that hangs fails its test with its stack, never holds the run."""

from __future__ import annotations

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
