"""The package type-checks: mypy with the project's own configuration (pyproject.toml) finds nothing in src/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # a whole mypy run: ~20 s with a warm cache, a minute without


def test_mypy_finds_no_error_in_src() -> None:
    pytest.importorskip("mypy")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "mypy", "src/"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, report
    assert report.startswith("Success: no issues found"), report
