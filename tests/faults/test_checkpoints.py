"""Damaged checkpoints and misbehaving factories: one line, exit 2, never wrong numbers."""

from __future__ import annotations

import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from convsvd import zoo
from convsvd.errors import InputError
from convsvd.io import load


@pytest.fixture(scope="module")
def good_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    torch.save(zoo.load("digits-cnn").state_dict(), path)
    return path


def _flip(src: Path, dst: Path, at: float, n: int = 200) -> Path:
    data = bytearray(src.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + n):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_flipped_bytes_in_a_tensor_are_refused(good_pt: Path, tmp_path: Path, cli_inproc) -> None:
    bad = _flip(good_pt, tmp_path / "bad.pt", 0.5)
    with zipfile.ZipFile(bad) as zf:  # the damage is one Python's zipfile also sees
        assert zf.testzip() is not None
    code, out, err = cli_inproc(["svd", str(bad)])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "damaged PyTorch checkpoint" in lines[0] and "CRC-32" in lines[0], lines
    assert str(bad) in lines[0]


def test_undamaged_checkpoint_still_loads_the_same_numbers(good_pt: Path) -> None:
    mw = load(good_pt)
    ref = zoo.load("digits-cnn").state_dict()
    assert torch.equal(mw["conv3"].weight, ref["conv3.weight"])


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_checkpoint_is_one_line(good_pt: Path, tmp_path: Path, cut: float) -> None:
    data = good_pt.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InputError, match=r"cut\.pt: (damaged|not a readable)"):
        load(bad)


def test_damaged_weights_of_a_factory_are_refused(good_pt: Path, tmp_path: Path) -> None:
    bad = _flip(good_pt, tmp_path / "w.pt", 0.6)
    from convsvd.io.factory import load_factory

    with pytest.raises(InputError, match="CRC-32"):
        load_factory("convsvd.zoo.models:DigitsCNN", bad)


def _factory_module(tmp_path: Path, body: str, at_import: str = "") -> str:
    pkg = tmp_path / "badfactories"
    pkg.mkdir(exist_ok=True)
    name = f"mod_{abs(hash(body + at_import)) % 10**8}"
    (pkg / f"{name}.py").write_text(textwrap.dedent(f"""
        import sys
        {at_import}
        def make():
            {body}
    """))
    sys.path.insert(0, str(pkg))
    return f"{name}:make"


@pytest.mark.parametrize("body, words", [
    ("raise SystemExit(7)", r"called sys\.exit\(7\)"),
    ("sys.exit('bye')", r"called sys\.exit\('bye'\)"),
    ("raise KeyboardInterrupt", r"raised KeyboardInterrupt"),
])
def test_factory_that_exits_is_one_line_naming_it(tmp_path: Path, cli_inproc, body: str, words: str) -> None:
    spec = _factory_module(tmp_path, body)
    try:
        code, out, err = cli_inproc(["svd", spec])
    finally:
        sys.path.pop(0)
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith(f"convsvd svd: error: {spec}: calling the factory "), lines
    import re

    assert re.search(words, lines[0]), lines[0]


def test_module_that_exits_at_import_is_one_line(tmp_path: Path, cli_inproc) -> None:
    spec = _factory_module(tmp_path, "return None", at_import="sys.exit(3)")
    try:
        code, _, err = cli_inproc(["describe", spec])
    finally:
        sys.path.pop(0)
    assert code == 2 and "importing module" in err and "sys.exit(3)" in err and len(err.strip().splitlines()) == 1
