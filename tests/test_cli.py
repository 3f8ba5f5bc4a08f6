"""The CLI: tables and files on success; one line and exit 2 on every user mistake."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from convsvd.cli import main
from convsvd.decompose import decompose


def _cnn():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 5),
    ).eval()


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # whole commands
def test_same_singular_values_from_module_state_dict_safetensors_and_onnx(tmp_path):
    model = _cnn()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(tmp_path / "m.onnx"), dynamo=False)
    ref = decompose(model, mode="values", dtype="float64")
    for src in ("m.pt", "m.safetensors", "m.onnx"):
        dec = decompose(tmp_path / src, mode="values", dtype="float64")
        assert list(dec) == list(ref), src
        for name in ref:
            torch.testing.assert_close(dec[name].S, ref[name].S, rtol=1e-12, atol=0)


@pytest.mark.slow  # a whole command
def test_svd_command_writes_tables_and_tensors(tmp_path, capsys):
    model = _cnn()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    out = tmp_path / "out"
    code, stdout, _ = _run(["svd", str(tmp_path / "m.pt"), "--top-k", "3", "--out", str(out)], capsys)
    assert code == 0
    assert "sigma_max" in stdout and "energy_top_k" in stdout
    frame = pd.read_parquet(out / "svd.parquet")
    assert frame.name.tolist() == ["0", "2", "5", "7"]
    csv = pd.read_csv(out / "svd.csv")
    assert csv.name.astype(str).tolist() == frame.name.tolist()
    np.testing.assert_allclose(csv.sigma_max, frame.sigma_max, rtol=1e-12)
    tensors = load_file(str(out / "svd.safetensors"))
    W = model[0].weight.detach().reshape(8, -1).double()
    s = torch.linalg.svdvals(W)
    torch.testing.assert_close(tensors["0/S"][0].double(), s[:3], rtol=1e-5, atol=0)
    assert tensors["0/U"].shape == (1, 8, 3) and tensors["0/Vh"].shape == (1, 3, 27)
    assert frame.loc[0, "energy_top_k"] == pytest.approx(float((s[:3] ** 2).sum() / (W**2).sum()), rel=1e-5)
    meta = json.loads((out / "svd.json").read_text())
    assert meta["options"]["mode"] == "topk" and len(meta["model_hash"]) == 64


def test_describe_command(tmp_path, capsys):
    code, stdout, _ = _run(["describe", "digits-cnn", "--out", str(tmp_path)], capsys)
    assert code == 0
    frame = pd.read_csv(tmp_path / "layers.csv")
    assert (frame.status == "analysed").sum() >= 5
    assert "unfolded_shape" in stdout


def _bad_inputs(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a checkpoint at all")
    (tmp_path / "corrupt.safetensors").write_bytes(b"{garbage")
    (tmp_path / "model.xyz").write_bytes(b"123")
    torch.save(_cnn(), tmp_path / "pickled.pt")  # a whole pickled module
    save_file({"norm.weight": torch.ones(4), "norm.bias": torch.zeros(4)}, str(tmp_path / "nolayers.safetensors"))
    return {
        "missing": ([str(tmp_path / "nope.pt")], "nope.pt"),
        "corrupt-pt": ([str(tmp_path / "corrupt.pt")], "corrupt.pt"),
        "corrupt-st": ([str(tmp_path / "corrupt.safetensors")], "corrupt.safetensors"),
        "unknown-type": ([str(tmp_path / "model.xyz")], "model.xyz"),
        "pickle": ([str(tmp_path / "pickled.pt")], "--trust-pickle"),
        "no-layers": ([str(tmp_path / "nolayers.safetensors")], "nolayers.safetensors"),
        "factory": (["no_such_pkg.models:build"], "no_such_pkg"),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt-pt", "corrupt-st", "unknown-type", "pickle", "no-layers", "factory"])
@pytest.mark.parametrize("cmd", ["describe", "svd"])
def test_bad_input_is_one_line_and_exit_2(case, cmd, tmp_path, capsys):
    argv, needle = _bad_inputs(tmp_path)[case]
    code, stdout, stderr = _run([cmd, *argv], capsys)
    assert code == 2
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert needle in lines[0]
    assert "Traceback" not in stderr


def test_trust_pickle_opt_in(tmp_path, capsys):
    torch.save(_cnn(), tmp_path / "pickled.pt")
    code, stdout, _ = _run(["describe", str(tmp_path / "pickled.pt"), "--trust-pickle"], capsys)
    assert code == 0 and "Linear" in stdout


def test_nan_layer_is_reported_and_skipped(tmp_path, capsys):
    sd = _cnn().state_dict()
    sd["2.weight"][0, 0, 0, 0] = float("nan")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "nan.safetensors"))
    code, stdout, stderr = _run(["svd", str(tmp_path / "nan.safetensors"), "--values-only"], capsys)
    assert code == 0
    assert "skipped 2" in stderr and "NaN" in stderr
    assert " 0 " in stdout or "│ 0 " in stdout


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = _run(["svd", "digits-cnn", "--out", str(blocker / "sub")], capsys)
    assert code == 2 and "--out" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (blocker / "sub").exists()


def test_bad_layer_pattern_and_usage_errors(capsys):
    code, _, stderr = _run(["svd", "digits-cnn", "--layers", "zzz*"], capsys)
    assert code == 2 and "zzz*" in stderr
    with pytest.raises(SystemExit) as e:
        main(["svd"])
    assert e.value.code == 2


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "convsvd")
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("convsvd ")


def test_written_files_get_the_usual_permissions(tmp_path):
    from convsvd._meta import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "f.txt", lambda p: open(p, "w").write("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind


def test_zoo_checkpoint_names_work_in_every_command(tmp_path, capsys):
    from convsvd.target import resolve, zoo_name

    assert zoo_name("digits-cnn@3") == ("digits-cnn", 3) and zoo_name("nope@3") is None
    assert resolve("digits-cnn@3").input_shape == (1, 8, 8)
    code, stdout, stderr = _run(["profile", "digits-cnn@20", "digits:test", "--top-k", "2",
                                 "--out", str(tmp_path / "run")], capsys)
    assert code == 0, stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["source"] == "digits-cnn@20"
    code, _, stderr = _run(["profile", "digits-cnn@x", "digits:test"], capsys)
    assert code == 2 and "NAME@EPOCH" in stderr
