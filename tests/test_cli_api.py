"""Every command and its API function give the same files for the same inputs: one Target, one set of defaults."""

import json
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from convsvd import resolve
from convsvd.cli import main
from convsvd.decompose import decompose
from convsvd.features import featureviz, singular_filters
from convsvd.spectral import compare, spectrum

#: Keys of the run metadata that differ between two runs by nature (time, versions, wall-clock).
_VOLATILE = {"created", "versions", "seconds", "figures", "time_s"}


def _json(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in _VOLATILE}


def _same_tables(cli: Path, api: Path, names: list[str]) -> None:
    for name in names:
        read = pd.read_parquet if name.endswith(".parquet") else pd.read_csv
        pd.testing.assert_frame_equal(read(cli / name), read(api / name), check_exact=True, obj=name)


def _cli(argv: list[str], capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err


SVD_CASES = {
    "defaults": ([], {}),
    "top-k": (["--top-k", "3"], dict(mode="topk", k=3)),
    "values": (["--values-only", "--layers", "conv*"], dict(mode="values", layers="conv*")),
    "float64": (["--dtype", "float64", "--layers", "fc1"], dict(dtype="float64", layers="fc1")),
}


@pytest.mark.parametrize("case", SVD_CASES)
def test_svd(case, tmp_path, capsys):
    argv, kwargs = SVD_CASES[case]
    _cli(["svd", "digits-cnn", *argv, "--out", str(tmp_path / "cli")], capsys)
    (tmp_path / "api").mkdir()
    decompose("digits-cnn", **kwargs).save(tmp_path / "api", top_k=kwargs.get("k") or 10)
    _same_tables(tmp_path / "cli", tmp_path / "api", ["svd.csv", "svd.parquet"])
    assert _json(tmp_path / "cli" / "svd.json") == _json(tmp_path / "api" / "svd.json")
    a, b = load_file(str(tmp_path / "cli" / "svd.safetensors")), load_file(str(tmp_path / "api" / "svd.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


SPECTRUM_CASES = {
    "defaults": ([], {}),
    "mp": (["--mp", "--layers", "conv2,fc1"], dict(mp=True, layers="conv2,fc1")),
    "slices": (["--view", "slices", "--dtype", "float64"], dict(view="slices", dtype="float64")),
    # the operator view's default n is being settled elsewhere: both sides name it here
    "operator": (["--view", "operator", "--n", "8", "--layers", "conv*"], dict(view="operator", n=8, layers="conv*")),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", SPECTRUM_CASES)
def test_spectrum(case, tmp_path, capsys):
    argv, kwargs = SPECTRUM_CASES[case]
    _cli(["spectrum", "digits-cnn", *argv, "--out", str(tmp_path / "cli")], capsys)
    (tmp_path / "api").mkdir()
    spectrum("digits-cnn", **kwargs).save(tmp_path / "api")
    _same_tables(tmp_path / "cli", tmp_path / "api", ["spectrum.csv", "spectrum.parquet"])
    assert _json(tmp_path / "cli" / "spectrum.json") == _json(tmp_path / "api" / "spectrum.json")


def test_describe(tmp_path, capsys):
    _cli(["describe", "digits-resnet", "--out", str(tmp_path / "cli")], capsys)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / "layers.csv"),
                                  pd.read_csv(pd.io.common.StringIO(resolve("digits-resnet").to_frame().to_csv(
                                      index=False))))


@pytest.mark.slow
def test_compare(tmp_path, capsys):
    _cli(["compare", "digits-cnn@0", "digits-cnn", "--out", str(tmp_path / "cli")], capsys)
    frame = compare(["digits-cnn@0", "digits-cnn"])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli" / "compare.parquet"), frame, check_exact=True)


FEATURE_CASES = {
    "defaults": ([], {}),
    "one-direction": (["--neurons", "1,3", "--directions", "+", "--seed", "2"], dict(neurons=[1, 3], directions="+",
                                                                                     seed=2)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", FEATURE_CASES)
def test_features(case, tmp_path, capsys):
    argv, kwargs = FEATURE_CASES[case]
    _cli(["features", "digits-cnn", "--layer", "conv2", "--steps", "4", *argv, "--out", str(tmp_path / "cli")],
         capsys)
    (tmp_path / "api").mkdir()
    neurons = kwargs.pop("neurons", None)
    featureviz("digits-cnn", "conv2", neurons, steps=4, **kwargs).save(tmp_path / "api")
    singular_filters("digits-cnn", "conv2").save(tmp_path / "api")
    _same_tables(tmp_path / "cli", tmp_path / "api", ["featureviz-conv2.csv", "filters-conv2.parquet"])
    a = load_file(str(tmp_path / "cli" / "featureviz-conv2.safetensors"))
    b = load_file(str(tmp_path / "api" / "featureviz-conv2.safetensors"))
    assert a["images"].shape[-2:] == (8, 8)  # the built-in model's side on both sides (not 224)
    assert all(a[k].equal(b[k]) for k in a)
    assert json.loads((tmp_path / "cli" / "features.json").read_text())["options"]["input_size"] == [8, 8]


@pytest.mark.slow
def test_profile(tmp_path, capsys):
    from convsvd.signals import SignalTable, profile

    _cli(["profile", "digits-cnn", "digits:test", "--layers", "fc*", "--top-k", "2", "--out", str(tmp_path / "cli")],
         capsys)
    api = profile("digits-cnn", "digits:test", layers="fc*", top_k=2, out=tmp_path / "api")
    cli = SignalTable.open(tmp_path / "cli")
    pd.testing.assert_frame_equal(cli.summary(), api.summary())
    pd.testing.assert_frame_equal(cli.to_frame(), api.to_frame(), check_exact=True)


def test_help_does_not_import_torch():
    """``convsvd --help`` and every ``convsvd COMMAND --help``: choices and defaults come from modules
    without heavy imports."""
    import os
    import subprocess
    import sys

    import convsvd
    from convsvd.cli import COMMANDS

    src = str(Path(convsvd.__file__).resolve().parents[1])
    code = ("import sys, contextlib, io\nfrom convsvd.cli import main\n"
            "for argv in [[]] + [[name] for name in sys.argv[1:]]:\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n            main(argv + ['--help'])\n        except SystemExit:\n            pass\n"
            "    assert out.getvalue().startswith('usage: convsvd'), argv\n"
            "heavy = [m for m in ('torch', 'matplotlib', 'pandas', 'scipy') if m in sys.modules]\n"
            "assert not heavy, f'imported {heavy}'\n")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code, *COMMANDS], capture_output=True, text=True, timeout=120,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
