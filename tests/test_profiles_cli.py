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


# --------------------------------------------------------------------------- streamed runs


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The same element profiles of a small CNN, held in memory and streamed through a run folder in
    several chunks (some inputs without a label)."""
    import torch

    from convsvd.data import ArrayData
    from convsvd.profiles import ProfileRun, profile_graph
    from torch import nn

    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 2 * 2, 3)).double().eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(23, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(23) % 3
    labels[[4, 17]] = -1
    data = ArrayData(x, labels, torch.arange(23), classes=["a", "b", "c"], name="toy")
    out = tmp_path_factory.mktemp("streamed") / "run"
    opts = dict(neuron_type="element", batch_size=4, chunk_batches=2, threshold=0.3)
    held = profile_graph(net, data, **opts)
    run = profile_graph(net, data, out=out, stream=True, **opts)
    assert isinstance(run, ProfileRun) and len(run) == 23
    assert len(json.loads((out / "manifest.json").read_text())["chunks"]) == 3  # 8 + 8 + 7 inputs
    return held, run


@pytest.mark.parametrize("synapses", [False, True])
@pytest.mark.parametrize("metric, loo, by", [("jaccard", True, "labels"), ("instance", True, "labels"),
                                             ("jaccard", False, "predictions")])
def test_streamed_similarity_equals_the_in_memory_one(streamed, synapses: bool, metric: str, loo: bool,
                                                      by: str) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from convsvd.profiles import class_similarity

    held, run = streamed
    a = class_similarity(held, synapses=synapses, metric=metric, leave_one_out=loo, by=by)
    b = class_similarity(run, synapses=synapses, metric=metric, leave_one_out=loo, by=by)
    assert np.array_equal(a.classes, b.classes) and a.layers == b.layers
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.values, b.values)  # the same counts: the same floats
    assert np.isfinite(a.values).any() and (a.values[np.isfinite(a.values)] < 1).any()


def test_streamed_sums_and_class_profiles_equal_the_in_memory_ones(streamed) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from convsvd.profiles import class_matrix

    held, run = streamed
    assert run.profile() == held.profile()
    got, want = run.class_profiles(), held.class_profiles()
    assert sorted(got) == sorted(want) == [0, 1, 2]
    assert all(got[c] == want[c] for c in want)
    assert np.array_equal(run.labels, held.labels) and np.array_equal(run.ids, held.ids)
    assert np.array_equal(run.predictions, held.predictions)
    pd.testing.assert_frame_equal(class_matrix(run), class_matrix(held))
    assert run.load().profile() == held.profile()


def test_a_damaged_chunk_stops_a_streamed_pass_with_its_name(tmp_path, streamed) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from convsvd.errors import InputError
    from convsvd.profiles import ProfileRun, class_similarity

    _, run = streamed
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    chunk = sorted((copy / "chunks").iterdir())[1]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    damaged = ProfileRun(copy)
    with pytest.raises(InputError, match=chunk.name):
        class_similarity(damaged)
    with pytest.raises(InputError, match=chunk.name):
        damaged.profile()
    assert chunk.read_bytes() == bytes(data)  # reading changes nothing on disk


def test_stream_needs_a_run_folder_and_an_unfinished_run_is_not_read(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from convsvd.errors import InputError
    from convsvd.profiles import ProfileRun, profile_graph

    with pytest.raises(InputError, match="out="):
        profile_graph("digits-cnn", "digits:test", limit=4, stream=True)
    code, _, err = _run(["profile-graph", "digits-cnn", "digits:test", "--limit", "4", "--stream"], capsys)
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(dict(format="convsvd-profile/1", complete=False, chunks={})))
    with pytest.raises(InputError, match="not finished"):
        ProfileRun(out)


def test_cli_stream_writes_the_same_tables(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    held, streamed_out = tmp_path / "held", tmp_path / "streamed"
    argv = ["profile-graph", "digits-cnn", "digits:test", "--limit", "40", "--batch-size", "8", "--neuron-type",
            "spatial"]
    assert _run(argv + ["--out", str(held)], capsys)[0] == 0
    code, stdout, _ = _run(argv + ["--out", str(streamed_out), "--stream"], capsys)
    assert code == 0 and "40 inputs, spatial neurons" in stdout
    for name in ["summary.csv", "class-similarity.csv", "class-matrix.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(held / name), pd.read_csv(streamed_out / name))
    assert Profile.open(held / "profile") == Profile.open(streamed_out / "profile")


def test_streamed_memory_check_counts_one_chunk(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run refused in memory (its profiles would not fit) goes through when streamed: the check then
    counts one chunk's inputs, not the run's."""
    import torch

    import convsvd.profiles.build as build
    from convsvd.errors import InputError

    class Fake:  # stands in for a Profiler: 10 MiB of profiles per input
        neuron_type = "element"

        def run(self, x):  # type: ignore[no-untyped-def]
            class P:
                nbytes = 10 << 20
            return P()

    monkeypatch.setattr(build, "_available_memory", lambda: 1 << 30)  # 1 GiB: 0.8 GiB / 30 MiB ≈ 27 inputs
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(InputError, match="--stream"):
        build._plan(Fake(), x, 200, 16, "photos")  # type: ignore[arg-type]
    assert build._plan(Fake(), x, 200, 16, "photos", chunk=16) >= 1  # type: ignore[arg-type]
    with pytest.raises(InputError, match="--batch-size"):
        build._plan(Fake(), x, 200, 64, "photos", chunk=64)  # type: ignore[arg-type]


def test_an_interrupted_streamed_run_resumes_without_reading_its_chunks(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Killed while writing its second chunk: the first chunk stays, nothing half-written is left; the
    rerun computes the rest only, never loads the chunks done before, and gives the held run's profile."""
    from convsvd import zoo
    from convsvd.profiles import InputProfiles, ProfileRun, profile_graph

    model = zoo.load("digits-cnn")
    opts = dict(limit=24, batch_size=4, chunk_batches=2, neuron_type="spatial")
    out = tmp_path / "run"
    real = InputProfiles.write_chunk
    calls = []

    def dies_on_the_second(self, path):  # type: ignore[no-untyped-def]
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(InputProfiles, "write_chunk", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        profile_graph(model, "digits:test", out=out, stream=True, **opts)
    monkeypatch.setattr(InputProfiles, "write_chunk", real)
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk-000000.npz"]
    assert not json.loads((out / "manifest.json").read_text())["complete"]

    reads = []
    real_read = InputProfiles.read_chunk.__func__  # type: ignore[attr-defined]

    def counting(cls, path, meta, sha):  # type: ignore[no-untyped-def]
        reads.append(path.name)
        return real_read(cls, path, meta, sha)

    monkeypatch.setattr(InputProfiles, "read_chunk", classmethod(counting))
    run = profile_graph(model, "digits:test", out=out, stream=True, **opts)
    assert reads == []  # the chunk done before is not loaded: it was checked against its checksum only
    assert isinstance(run, ProfileRun) and len(run) == 24
    held = profile_graph(model, "digits:test", **opts)
    assert run.profile() == held.profile()
    assert reads == [f"chunk-{i:06d}.npz" for i in range(3)]  # then read back once, one at a time


def test_each_pass_over_a_streamed_run_shows_its_progress(streamed) -> None:  # type: ignore[no-untyped-def]
    """Reading element profiles back takes minutes on a large model: every pass reports chunk by chunk."""
    from convsvd.profiles import ProfileRun, class_similarity

    _, run = streamed
    seen: list[tuple[int, int, str]] = []
    reopened = ProfileRun(run.path, progress=lambda done, total, what: seen.append((done, total, what)))
    class_similarity(reopened)
    reopened.profile()
    names = [f"chunk-{i:06d}.npz" for i in range(3)]
    assert seen == [(i + 1, 3, n) for i, n in enumerate(names)] * 3  # class sets, inputs, the dataset's profile
    assert run.progress is None  # the run profile_graph returned reports as it was asked (here: nothing)


def test_merging_class_set_keys_equals_counting_them_all_at_once() -> None:
    import numpy as np

    from convsvd.profiles.similarity import _merge

    rng = np.random.default_rng(5)
    parts = [rng.integers(0, 50, n) for n in (0, 30, 1, 45, 30)]
    keys, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
    for p in parts:
        keys, counts = _merge(keys, counts, p)
    want, want_counts = np.unique(np.concatenate(parts), return_counts=True)
    assert np.array_equal(keys, want) and np.array_equal(counts, want_counts)
    assert counts.sum() == 106 and len(keys) < 50  # repeats within and across parts were counted


def test_a_bad_grouping_of_a_streamed_run_is_one_error_before_any_chunk_is_read(streamed, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from convsvd.errors import InputError
    from convsvd.profiles import InputProfiles, ProfileRun, class_similarity

    _, run = streamed
    fresh = ProfileRun(run.path)
    monkeypatch.setattr(InputProfiles, "read_chunk", classmethod(lambda *a: pytest.fail("a chunk was read")))
    for call in (lambda: class_similarity(fresh, by="label"), lambda: fresh.class_profiles(by="label")):
        with pytest.raises(InputError, match="by: expected 'labels'"):
            call()
    assert fresh._keys is None  # not even the per-input arrays
