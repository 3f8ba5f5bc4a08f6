"""``convsvd profile-graph``: files on success; one line and exit 2 on a user mistake, nothing written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from convsvd.cli import main
from convsvd.profiles import InputProfiles, Profile


def _run(argv: list[str], capsys) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_profile_graph_writes_the_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pg"
    code, stdout, _ = _run(["profile-graph", "digits-cnn", "digits:test", "--limit", "40", "--batch-size", "16",
                            "--out", str(out)], capsys)
    assert code == 0
    for name in ["manifest.json", "summary.csv", "class-similarity.csv", "class-matrix.csv",
                 "profile/profile.json", "profile/profile.npz"]:
        assert (out / name).is_file(), name
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["inputs"] == 40 and man["options"]["neuron_type"] == "channel"
    ps = InputProfiles.open(out)
    assert Profile.open(out / "profile") == ps.profile()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["layer"]) == [l.name for l in ps.layers]
    sim = pd.read_csv(out / "class-similarity.csv")
    assert sim["layer"].iloc[-1] == "all" and sim["accuracy"].between(0, 1).all()
    assert "nearest class profile" in stdout


def test_profile_graph_svd_neurons(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, stdout, _ = _run(["profile-graph", "digits-resnet", "digits:test", "--neuron-type", "svd", "--limit", "16",
                            "--top-k", "2"], capsys)
    assert code == 0 and "svd neurons" in stdout


def test_profile_graph_of_some_layers(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pg"
    code, _, _ = _run(["profile-graph", "digits-cnn", "digits:test", "--limit", "16", "--start", "layers",
                       "--rule", "ddp", "--layers", "conv*", "--out", str(out)], capsys)
    assert code == 0
    ps = InputProfiles.open(out)
    assert ps.options["layers"] == [l.name for l in ps.layers if l.name.startswith("conv")] != []
    for l in ps.layers:
        influential = ps.synapse_counts[l.name].nnz if l.inputs else 0
        assert (influential > 0) == l.name.startswith("conv"), l.name


@pytest.mark.parametrize("argv, word", [
    (["--neuron-type", "pixel"], "neuron_type"),
    (["--rule", "max"], "rule"),
    (["--start", "layers", "--neuron-type", "element"], "start='layers'"),
    (["--threshold", "1.5"], "threshold"),
    (["--limit", "0"], "limit"),
    (["--targets", "truth"], "targets"),
    (["--layers", "conv1"], "start='layers'"),
    (["--start", "layers", "--layers", "nothing*"], "matches no layer"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv: list[str], word: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bad"
    code, _, err = _run(["profile-graph", "digits-cnn", "digits:test", "--out", str(out), *argv], capsys)
    assert code == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err
    assert not (out / "manifest.json").exists()


def test_bad_data_and_model(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _run(["profile-graph", "digits-cnn", str(tmp_path / "none.npz")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = _run(["profile-graph", str(tmp_path / "none.pt"), "digits:test"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
