"""Types the package promises: mypy finds nothing in src/ (the project's own configuration in
pyproject.toml), and every public ``summary()`` returns the same kind of thing, a pandas DataFrame."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import convsvd

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a whole mypy run: ~20 s with a warm cache, one to two minutes without
def test_mypy_finds_no_error_in_src() -> None:
    pytest.importorskip("mypy")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "mypy", "src/"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, report
    assert report.startswith("Success: no issues found"), report


def _public_classes_with_summary() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(convsvd.__path__, "convsvd."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_") \
                    and callable(getattr(obj, "summary", None)):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_public_summary_is_declared_to_return_a_dataframe() -> None:
    classes = _public_classes_with_summary()
    names = {qual.rsplit(".", 1)[1] for qual in classes}
    assert {"SpectrumResult", "SignalTable", "Profile", "AblationResult"} <= names, sorted(names)
    wrong = {qual: inspect.signature(cls.summary).return_annotation for qual, cls in classes.items()
             if inspect.signature(cls.summary).return_annotation not in ("pd.DataFrame", pd.DataFrame)}
    assert not wrong, wrong
