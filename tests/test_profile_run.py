"""A whole run: shards, manifest, resume after an interruption, torchrun, the CLI, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from convsvd import zoo
from convsvd.cli import main
from convsvd.data import ArrayData
from convsvd.errors import InputError, NotComputedError
from convsvd.signals import SignalTable, influence, profile, signals

KEY = ["id", "layer", "group", "neuron"]


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def tiny_net() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    ).double()


def tiny_data(n: int = 40) -> ArrayData:
    g = torch.Generator().manual_seed(12)
    x = torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    return ArrayData(x, torch.arange(n) % 3, torch.arange(100, 100 + n), classes=["a", "b", "c"], name="tiny")


def sorted_frame(table: SignalTable) -> pd.DataFrame:
    return table.to_frame().sort_values(KEY).reset_index(drop=True)


class Recorder(nn.Module):
    """Keeps every (input, output) pair its inner model produced."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        self.seen.append((x.clone(), y.clone()))
        return y


def test_table_holds_the_signals_and_influence_of_every_input(tmp_path):
    net = tiny_net().eval()
    data = tiny_data(10)
    table = profile(net, data, batch_size=4, shard_size=4, out=tmp_path / "run", threshold=0.3)
    assert table.layers == ["0", "3", "6"] and table.n_inputs == 10
    frame = sorted_frame(table)
    assert len(frame) == 10 * (4 + 6 + 5)
    s = signals(net, data.inputs)
    for layer, v in s.values.items():
        part = frame[frame.layer == layer]
        got = torch.tensor(part.signal.to_numpy()).reshape(10, -1)
        torch.testing.assert_close(got, v.reshape(10, -1), rtol=0, atol=1e-12)
        inf = influence(v.reshape(10, -1), threshold=0.3)
        assert np.array_equal(part.influential.to_numpy().reshape(10, -1), inf.mask.numpy())
        np.testing.assert_allclose(part.weight.to_numpy().reshape(10, -1), inf.weight.numpy(), rtol=0, atol=1e-12)
    assert frame.id.unique().tolist() == list(range(100, 110))
    assert (frame.groupby("id").label.first().to_numpy() == np.arange(10) % 3).all()
    assert set(frame[frame.layer == "3"].group) == {0, 1}
    assert frame.signal.dtype == np.float64
    # queries
    assert set(table.for_class("b").id) == {101, 104, 107}
    m = table.matrix("3", labels=["b"])  # dense: 2 groups × 3 neurons, the rows of class "b" only
    assert m.ids.tolist() == [101, 104, 107] and m.signal.shape == (3, 6) and m.groups.tolist() == [0, 0, 0, 1, 1, 1]
    part = frame[(frame.layer == "3") & frame.id.isin([101, 104, 107])]
    assert np.array_equal(m.signal.reshape(-1), part.signal.to_numpy()) and m.signal.dtype == np.float64
    assert np.array_equal(m.mask.reshape(-1), part.influential.to_numpy())
    assert len(table.neuron("3", 2, group=1)) == 10
    assert table.influential(layer="6").influential.all()
    prof = table.class_profile("6")
    assert len(prof) == 3 * 5 and prof.groupby("label").influential_count.sum().sum() == \
        int(frame[(frame.layer == "6")].influential.sum())
    summary = table.summary()
    assert summary.mean_influential.tolist() == pytest.approx(
        [frame[frame.layer == l].influential.sum() / 10 for l in ["0", "3", "6"]])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["model_hash"] and len(manifest["shards"]) == 3
    assert manifest["options"]["threshold"] == 0.3 and "torch" in manifest["versions"]


def test_outputs_unchanged_during_and_after_and_no_hook_left(tmp_path):
    inner = tiny_net()  # train mode: the run must use eval mode and leave it in train mode
    with torch.no_grad():
        inner[1].running_mean.uniform_(-1, 1)
    state = {k: v.clone() for k, v in inner.state_dict().items()}
    model = Recorder(inner)
    profile(model, tiny_data(12), batch_size=5, out=tmp_path / "a")
    assert len(model.seen) == 3
    inner.eval()
    for x, y in model.seen:
        assert torch.equal(inner(x), y)  # bitwise: what the model returned inside the run
    inner.train()
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, inner.state_dict()[k]) for k, v in state.items())  # BN statistics untouched
    assert hook_count(model) == 0
    with pytest.raises(InputError):
        profile(model, torch.randn(4, 1, 9, 9, dtype=torch.float64), out=tmp_path / "b")
    assert hook_count(model) == 0
    assert all(m.training for m in model.modules())


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_clean_table(tmp_path):
    net, data = tiny_net().eval(), tiny_data(40)
    clean = profile(net, data, batch_size=4, shard_size=4, out=tmp_path / "clean", aggregate="l2")
    calls: list[int] = []

    def stop_after_five(done, total, what):
        calls.append(done)
        if done == 5:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        profile(net, data, batch_size=4, shard_size=4, out=out, aggregate="l2", progress=stop_after_five)
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert shards == [f"shard-{i:06d}.arrow" for i in range(4)]  # the 5th batch's shard was never written
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    with pytest.raises(NotComputedError):
        SignalTable.open(out)
    (out / "shards" / ".shard-000007.arrow.x1y2.tmp").write_bytes(b"half a shard")  # as if killed mid-write
    calls.clear()
    resumed = profile(net, data, batch_size=4, shard_size=4, out=out, aggregate="l2", progress=lambda d, t, w: calls.append(t))
    assert calls and set(calls) == {6} and len(calls) == 6  # only the 6 missing batches were computed
    assert not list((out / "shards").glob(".*"))
    pd.testing.assert_frame_equal(sorted_frame(resumed), sorted_frame(clean), check_exact=True)
    # a finished run started again computes nothing and gives the same table
    calls.clear()
    again = profile(net, data, batch_size=4, shard_size=4, out=out, aggregate="l2", progress=lambda d, t, w: calls.append(d))
    assert calls == []
    pd.testing.assert_frame_equal(sorted_frame(again), sorted_frame(clean), check_exact=True)


def test_other_options_in_the_same_folder_are_refused_unless_restarted(tmp_path):
    net, data = tiny_net().eval(), tiny_data(8)
    profile(net, data, out=tmp_path, batch_size=4)
    with pytest.raises(InputError, match=r"holds a run with influence threshold=0.3 \(this run: top_k=2\)"):
        profile(net, data, out=tmp_path, batch_size=4, top_k=2)
    with pytest.raises(InputError, match="batch_size=4"):
        profile(net, data, out=tmp_path, batch_size=8)
    table = profile(net, data, out=tmp_path, batch_size=4, top_k=2, restart=True)
    assert table.manifest["options"]["top_k"] == 2
    assert (table.to_frame().groupby(["id", "layer"]).influential.sum() == 2).all()


def test_folded_batchnorm_and_transposed_convs_in_a_run(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ConvTranspose2d(3, 2, 3)).double().eval()
    table = profile(net, tiny_data(6), fold_bn=True, out=tmp_path)
    assert table.layers == ["0"]
    assert table.manifest["layers"][0]["folded"] == "1"
    assert table.manifest["not_profiled"][0]["layer"] == "2"
    ref = signals(net, tiny_data(6).inputs, fold_bn=True).values["0"].reshape(-1)
    got = torch.tensor(sorted_frame(table).signal.to_numpy())
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("data,kwargs,message", [
    (torch.randn(4, 3, 8, 8), {}, r"tiny inputs: are 3×8×8 \(channels first\), model expects 1 channel "
                                  r"\(first layer 'conv1' takes 1 channel\)"),
    (torch.randn(4, 1, 16, 16), {"input_shape": (1, 8, 8)},
     r"inputs: images are 16×16, model expects 1×8×8"),
    (torch.randn(4, 1, 16, 16), {},
     r"model 'DigitsCNN': fails on inputs of shape 1×16×16 at layer 'fc1' \(expects 256 input features, got 1024\)"),
])
def test_bad_data_gives_one_line_saying_what_the_model_expects(tmp_path, data, kwargs, message):
    model = zoo.load("digits-cnn")
    src = ArrayData(data, name="tiny") if data.shape[2] == 8 and data.shape[1] == 3 else data
    with pytest.raises(InputError, match=message) as e:
        profile(model, src, out=tmp_path, **kwargs)
    assert "\n" not in str(e.value)
    assert hook_count(model) == 0


def test_bad_options(tmp_path):
    net = tiny_net()
    for kwargs, msg in [(dict(layers="nope*"), "layer pattern 'nope\\*'"), (dict(aggregate="median"), "aggregate"),
                        (dict(batch_size=0), "batch_size"), (dict(shard_size=-1), "shard_size"),
                        (dict(threshold=0.2, top_k=3), "not both")]:
        with pytest.raises(InputError, match=msg):
            profile(net, tiny_data(4), out=tmp_path, **kwargs)


# --------------------------------------------------------------------------- CLI and torchrun


@pytest.mark.slow
def test_cli_profile_prints_a_summary_and_resumes(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["profile", "digits-cnn", "digits:test", "--out", str(out), "--batch-size", "128", "--top-k", "3"]) == 0
    text = capsys.readouterr().out
    assert "451 inputs, 5 layers" in text and "mean influential" in text and "conv3" in text
    assert "wrote" in text and "1 shards" in text
    table = SignalTable.open(out)
    assert table.summary().mean_influential.tolist() == [3.0] * 5
    assert main(["profile", "digits-cnn", "digits:test", "--out", str(out), "--batch-size", "128"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a run with influence top_k=3" in err


@pytest.mark.parametrize("argv,message", [
    (["--layers", "conv9"], "layer pattern 'conv9': matches no layer"),
    (["--batch-size", "0"], "batch_size"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main(["profile", "digits-cnn", "digits:test", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and err.count("\n") == 0


def test_cli_bad_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    for folder, message in [("empty", "is empty"), ("flat", "has no class subfolders"), ("missing", "not found")]:
        code = main(["profile", "digits-cnn", str(tmp_path / folder), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and err.count("\n") == 0, err


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path):
    one = profile(zoo.load("digits-cnn"), "digits:test", batch_size=32, shard_size=32, out=tmp_path / "one")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "convsvd.cli",
           "profile", "digits-cnn", "digits:test", "--batch-size", "32", "--shard-size", "32", "--out", str(tmp_path / "two")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("451 inputs") == 1  # only rank 0 prints the summary
    two = SignalTable.open(tmp_path / "two")
    assert two.manifest["world_size"] == 2
    assert [s["rank"] for s in two.manifest["shards"]] == [i % 2 for i in range(15)]  # rank r: shards r, r+2, …
    pd.testing.assert_frame_equal(sorted_frame(two), sorted_frame(one), check_exact=True)
    assert two.manifest["layers"] == one.manifest["layers"]



def _write_shard(writer, batches: int, B: int = 4) -> dict[str, list[np.ndarray]]:
    """Add ``batches`` batches of two sites ("a": 3 neurons, "b": 2 groups of 2) to ``writer``; the values added."""
    from convsvd.signals import store

    sites = [store.SiteInfo("a", 1, 3, (3.0, 2.0, 1.0)), store.SiteInfo("b", 2, 2, (4.0, 3.0, 2.0, 1.0))]
    added: dict[str, list[np.ndarray]] = {"id": [], "label": [], "s:a": [], "s:b": []}
    for b in range(batches):
        ids = np.arange(b * B, (b + 1) * B, dtype=np.int64)
        sig = {s.layer: (ids[:, None] * 100 + np.arange(s.neurons)[None, :]).astype(np.float32) + (0.5 if s.layer == "b" else 0)
               for s in sites}
        writer.batches.append(b)
        writer.add(ids, ids % 3, sig, sites, {"a": 1, "b": 2})
        for k, v in (("id", ids), ("label", ids % 3), ("s:a", sig["a"]), ("s:b", sig["b"])):
            added[k].append(v)
    return added


def test_shard_writer_writes_dense_batches_with_identity_and_checksums(tmp_path):
    from convsvd.signals import store

    path = tmp_path / "shards" / "shard-000003.arrow"
    w = store.ShardWriter(path, 3, "float32", dict(run_key="k"))
    added = _write_shard(w, batches=7)
    footer = w.commit({"note": "x"})
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    header = store.read_header(path)
    assert header.identity["run_key"] == "k" and header.identity["shard"] == 3 and header.identity["format"] == store.FORMAT
    assert [(s.layer, s.groups, s.neurons_per_group, s.sigma) for s in header.sites] == \
        [("a", 1, 3, (3.0, 2.0, 1.0)), ("b", 2, 2, (4.0, 3.0, 2.0, 1.0))]
    assert header.footer == footer and footer["inputs"] == 28 and footer["batches"] == list(range(7))
    assert footer["influential"] == {"a": 7, "b": 14} and footer["id_range"] == [0, 27] and footer["note"] == "x"
    got = store.read_columns(path, ["id", "label", "s:a", "s:b"])
    for k, parts in added.items():
        assert np.array_equal(got[k], np.concatenate(parts)) and got[k].dtype == np.concatenate(parts).dtype
    data = 28 * (8 + 8 + 4 * (3 + 4))
    assert data < path.stat().st_size < data + 7 * 400 + 4096  # a few hundred bytes per batch, plus the header


def test_shard_writer_float16_halves_the_signals(tmp_path):
    from convsvd.signals import store

    path = tmp_path / "shard-000000.arrow"
    w = store.ShardWriter(path, 0, "float16", dict(run_key="k"))
    added = _write_shard(w, batches=2)
    w.commit({})
    got = store.read_columns(path, ["s:b"])["s:b"]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), np.concatenate(added["s:b"]), rtol=2**-11, atol=0)


def test_shard_writer_error_in_the_background_is_raised_and_no_file_is_left(tmp_path, monkeypatch):
    from convsvd.signals import store

    path = tmp_path / "shards" / "shard-000000.arrow"
    w = store.ShardWriter(path, 0, "float32", dict(run_key="k"))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.ShardWriter, "_write", lambda self, cols: full_disk())
    with pytest.raises(OSError, match="No space left"):
        _write_shard(w, batches=3)  # the second batch waits for the first, and raises its error
    w.abort()
    assert not path.exists()
    assert list(path.parent.iterdir()) == []
