"""Helpers of the fault-injection suite: run the CLI in a child process (to kill it), snapshot folders."""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[2] / "src"


def run_cli(args: list[str], *, kill_at: str | None = None, no_exchange: bool = False,
            cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``convsvd ARGS`` in a child process; ``kill_at``: the step at which it SIGKILLs itself.

    ``no_exchange`` makes the platform look as if it had no ``renameat2`` (the two-rename fallback).
    """
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        import torch
        torch.set_num_threads(1)
        if {no_exchange!r}:
            import convsvd._atomic as A
            A.exchange = lambda a, b: False
        from convsvd.cli import main
        sys.exit(main({args!r}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "CONVSVD_TEST_KILL_AT"}
    if kill_at is not None:
        env["CONVSVD_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def killed(proc: subprocess.CompletedProcess | int) -> bool:
    return (proc if isinstance(proc, int) else proc.returncode) == -signal.SIGKILL


def forked(fn, *, kill_at: str | None = None, no_exchange: bool = False, timeout: float = 300) -> int:  # type: ignore[no-untyped-def]
    """Run ``fn()`` in a forked child (torch already imported: no start-up cost); its exit code, or −9 if killed.

    ``kill_at``: the step (:func:`convsvd._atomic.kill_point`) at which the child SIGKILLs itself;
    ``no_exchange``: as if the platform had no ``renameat2`` (the two-rename fallback).

    A forked child must not enter an OpenMP pool that the parent started (GNU OpenMP's threads do
    not survive a fork: the child waits for them for ever), so it runs torch on one thread. A child
    still running after ``timeout`` seconds is asked for its stack (SIGUSR1, answered by faulthandler
    in C, so also from inside C code) and killed; the test then fails with that stack instead of
    waiting for ever. (``faulthandler.dump_traceback_later`` would hang in a child whose parent has
    a timer armed, as pytest's ``faulthandler_timeout`` does: it waits for the parent's watchdog.)
    """
    fd, trace = tempfile.mkstemp(prefix="convsvd-forked-", suffix=".txt")
    # The parent's objects are frozen out of the child's garbage collector: a finalizer of the
    # parent's garbage run in the child may wait for a lock or a thread of the parent, which the
    # child does not have (seen: a child stuck "Garbage-collecting" for 300 s).
    gc.collect()
    gc.freeze()
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:  # the parent (or no fork): collect its objects again
            gc.unfreeze()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            faulthandler.register(signal.SIGUSR1, file=fd, all_threads=True)
            torch.set_num_threads(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.environ.pop("CONVSVD_TEST_KILL_AT", None)
            if kill_at is not None:
                os.environ["CONVSVD_TEST_KILL_AT"] = kill_at
            if no_exchange:
                import convsvd._atomic as A

                A.exchange = lambda a, b: False
            code = int(fn() or 0)
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(fd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGUSR1)
                time.sleep(2)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                stack = Path(trace).read_text(errors="replace")
                raise AssertionError(f"the forked child was still running after {timeout:.0f} s; its stack:\n{stack}")
            time.sleep(0.01)
    finally:
        os.unlink(trace)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def cli(args: list[str]):  # type: ignore[no-untyped-def]
    """``convsvd ARGS`` as a function for :func:`forked`."""
    def run() -> int:
        from convsvd.cli import main

        return main(args)

    return run


def report_fn(out: Path, neurons: int):  # type: ignore[no-untyped-def]
    """A cheap report of the built-in digits CNN (no data) to ``out``, as a function for :func:`forked`."""
    def run() -> int:
        from convsvd import zoo
        from convsvd.io import from_module
        from convsvd.report import report

        report(from_module(zoo.load("digits-cnn"), source="digits-cnn"), None, out=out, quick=True,
               neurons=neurons, steps=2, k=2, input_shape=(1, 8, 8), progress=False)
        return 0

    return run


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (following links), by relative path, with its bytes."""
    out = {}
    for dirpath, _, names in os.walk(root, followlinks=True):
        for n in names:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def hidden(root: Path) -> list[str]:
    """Hidden entries in ``root`` (staging folders, temporary files…), lock files aside."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    """Assert exit 2, one line ``convsvd COMMAND: error: …`` on stderr, no traceback; return the line."""
    err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith(f"convsvd {command}: error: "), err
    return err[0]


@pytest.fixture()
def cli_inproc(capsys: pytest.CaptureFixture[str]):
    """``convsvd ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    from convsvd.cli import main

    def run(args: list[str]) -> tuple[int, str, str]:
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run
