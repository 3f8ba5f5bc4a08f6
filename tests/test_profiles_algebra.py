"""Profile algebra, files, similarity and homology."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from convsvd.errors import InputError
from convsvd.profiles import (
    InputProfiles,
    Profile,
    Profiler,
    class_matrix,
    class_similarity,
    diagram_distances,
    homology,
    instance_jaccard,
    jaccard,
    profile_graph,
)
from convsvd.profiles.profile import LayerInfo
from convsvd.profiles.topology import homology_of_graph


def small_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3)).double().eval()


@pytest.fixture(scope="module")
def runs() -> InputProfiles:
    torch.manual_seed(0)
    x = torch.randn(24, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(24) % 3
    p = Profiler(small_model(), x[:1], neuron_type="element", threshold=0.3)
    return p.run(x, labels=labels)


def test_sum_of_input_profiles_is_the_profile_of_the_batch(runs: InputProfiles) -> None:
    singles = [runs[i] for i in range(len(runs))]
    assert sum(singles) == runs.profile()
    assert Profile.sum(singles) == runs.profile()
    assert runs.profile().num_inputs == len(runs)
    assert runs[0] != runs[1]


def test_concat_that_consumes_its_parts_gives_the_same_stack(runs: InputProfiles) -> None:
    from dataclasses import replace

    def copy(p: InputProfiles) -> InputProfiles:
        return replace(p, **{f: {k: m.copy() for k, m in getattr(p, f).items()}
                             for f in ("neuron_counts", "neuron_weights", "synapse_counts", "synapse_weights")})

    parts = [copy(InputProfiles.concat([runs, runs])), copy(runs)]
    kept = InputProfiles.concat(parts)
    eaten = InputProfiles.concat(parts, consume=True)
    assert eaten.profile() == kept.profile() and np.array_equal(eaten.ids, kept.ids)
    assert all(not getattr(p, f) for p in parts for f in ("neuron_counts", "synapse_weights"))  # emptied


def test_addition_is_associative_and_commutative(runs: InputProfiles) -> None:
    a, b, c = runs[0], runs[1], runs[2]
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b).allclose(runs.profile([0, 1]))


def test_class_profiles_partition_the_dataset(runs: InputProfiles) -> None:
    cp = runs.class_profiles()
    assert sorted(cp) == [0, 1, 2]
    assert Profile.sum(cp.values()) == runs.profile()
    assert [cp[k].num_inputs for k in sorted(cp)] == [8, 8, 8]


def test_profiles_of_other_models_do_not_add(runs: InputProfiles) -> None:
    other = Profile.empty((LayerInfo("x_in", "input", 2, (), (2, 1, 1)),), "element")
    with pytest.raises(InputError, match="cannot be added"):
        runs[0] + other
    with pytest.raises(InputError, match="at least one"):
        Profile.sum([])


def test_frames_and_html(runs: InputProfiles) -> None:
    p = runs.profile()
    f = p.to_frame()
    assert list(f.columns) == ["layer", "kind", "neuron", "count", "weight"]
    assert int(f["count"].sum()) == sum(int(m.sum()) for m in p.neuron_counts.values())
    s = p.synapse_frame()
    assert len(s) == p.num_synapses and (s["weight"] > 0).all()
    assert "Profile</b> of 24 inputs" in p._repr_html_()
    assert list(runs.to_frame().columns[:4]) == ["id", "label", "target", "prediction"]


def test_save_and_open_round_trip_and_checksum(tmp_path, runs: InputProfiles) -> None:  # type: ignore[no-untyped-def]
    p = runs.profile()
    p.save(tmp_path / "p")
    q = Profile.open(tmp_path / "p")
    assert q == p and q.options == p.options
    p.save(tmp_path / "p")  # overwrite: swapped in atomically
    assert Profile.open(tmp_path / "p") == p
    raw = (tmp_path / "p" / "profile.npz").read_bytes()
    (tmp_path / "p" / "profile.npz").write_bytes(raw[:-10])
    with pytest.raises(InputError, match="checksum"):
        Profile.open(tmp_path / "p")
    with pytest.raises(InputError, match="not a saved profile"):
        Profile.open(tmp_path / "nothing")


def test_jaccard_identities(runs: InputProfiles) -> None:
    a, b = runs[0], runs[5]
    for syn in (False, True):
        for weighted in (False, True):
            assert jaccard(a, a, synapses=syn, weighted=weighted) == pytest.approx(1.0)
            assert jaccard(a, b, synapses=syn, weighted=weighted) == pytest.approx(
                jaccard(b, a, synapses=syn, weighted=weighted))
            assert 0 <= jaccard(a, b, synapses=syn, weighted=weighted) < 1
        assert jaccard(a, a, synapses=syn, average="layers") == pytest.approx(1.0)
    assert instance_jaccard(a, runs.profile()) == 1.0
    # by hand: neuron sets pooled over layers
    inter = sum((a.neuron_counts[n] != 0).multiply(b.neuron_counts[n] != 0).nnz for n in a.neuron_counts)
    union = sum(((a.neuron_counts[n] != 0) + (b.neuron_counts[n] != 0)).nnz for n in a.neuron_counts)
    assert jaccard(a, b) == pytest.approx(inter / union)


@pytest.mark.slow  # an exhaustive reference loop
def test_class_similarity_equals_pairwise_loops(runs: InputProfiles) -> None:
    sim = class_similarity(runs)
    layers = [l.name for l in runs.layers]
    for i in range(len(runs)):
        for k in range(3):
            rows = [j for j in range(len(runs)) if runs.labels[j] == k and j != i]
            cp = runs.profile(rows)
            want = jaccard(runs[i], cp)
            assert sim.values[-1, i, k] == pytest.approx(want, nan_ok=True)
            for d, name in enumerate(layers):
                wl = jaccard(runs[i], cp, layers=name)
                assert sim.values[d, i, k] == pytest.approx(wl, nan_ok=True)
    f = sim.to_frame()
    assert list(f["layer"]) == layers + ["all"]
    pred = sim.predictions()
    has = pred[-1] >= 0
    assert f["accuracy"].iloc[-1] == pytest.approx(np.mean(pred[-1][has] == runs.labels[has]))
    assert f["inputs"].iloc[-1] == has.sum()
    inst = class_similarity(runs, metric="instance", synapses=True, leave_one_out=False)
    cps = runs.class_profiles()
    assert inst.values[-1, 3, 1] == pytest.approx(instance_jaccard(runs[3], cps[1], synapses=True))


def test_class_matrix_is_symmetric_with_unit_diagonal(runs: InputProfiles) -> None:
    m = class_matrix(runs)
    assert m.shape == (3, 3)
    assert np.allclose(np.diag(m.values), 1.0)
    assert np.allclose(m.values, m.values.T)
    cps = runs.class_profiles()
    assert m.values[0, 2] == pytest.approx(jaccard(cps[0], cps[2]))
    mw = class_matrix(runs, weighted=True, synapses=True)
    assert mw.values[1, 2] == pytest.approx(jaccard(cps[1], cps[2], weighted=True, synapses=True))


def _cycle(n: int, w: float = 1.0) -> sp.coo_matrix:
    r = np.arange(n)
    return sp.coo_matrix((np.full(n, w), (r, (r + 1) % n)), shape=(n, n))


@pytest.mark.parametrize("n, dies", [(3, None), (4, 2.0), (6, 2.0), (8, 3.0)])
def test_homology_of_cycles(n: int, dies: float | None) -> None:
    d0, d1 = homology_of_graph(_cycle(n))
    assert np.isinf(d0[:, 1]).sum() == 1  # one component
    assert len(d0) == n
    if dies is None:
        assert len(d1) == 0  # a triangle fills in at once
    else:
        assert d1.tolist() == [[1.0, dies]]


def test_homology_of_disjoint_cycles_and_a_tree() -> None:
    G = sp.block_diag([_cycle(4), _cycle(5, 2.0)])
    d0, d1 = homology_of_graph(G)
    assert np.isinf(d0[:, 1]).sum() == 2
    assert sorted(d1.tolist()) == [[1.0, 2.0], [2.0, 4.0]]
    tree = sp.coo_matrix((np.ones(4), ([0, 0, 1, 1], [1, 2, 3, 4])), shape=(5, 5))
    d0, d1 = homology_of_graph(tree)
    assert len(d1) == 0 and np.isinf(d0[:, 1]).sum() == 1


def test_homology_of_a_profile_and_diagram_distances(runs: InputProfiles) -> None:
    cps = runs.class_profiles()
    homs = {k: homology(p, length="inverse") for k, p in cps.items()}
    for k, h in homs.items():
        assert len(h.vertices) == len(set(h.vertices))
        # H0: one infinite bar per connected component of the attribution graph
        G, _ = __import__("convsvd.profiles.topology", fromlist=["x"]).attribution_graph(cps[k], "inverse")
        n_comp = sp.csgraph.connected_components(G, directed=False)[0]
        assert np.isinf(h.diagrams[0][:, 1]).sum() == n_comp
        assert h.betti(0.0)[0] == len(h.vertices)
    D = diagram_distances(homs, dim=0)
    assert D.shape == (3, 3) and np.allclose(D.values, D.values.T) and np.allclose(np.diag(D.values), 0)
    assert (D.values[~np.eye(3, dtype=bool)] >= 0).all()
    with pytest.raises(InputError, match="length"):
        homology(cps[0], length="log")


@pytest.mark.slow  # whole dataset runs
def test_profile_graph_resumes_by_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from convsvd import zoo

    model = zoo.load("digits-cnn")
    out = tmp_path / "run"
    whole = profile_graph(model, "digits:test", limit=40, batch_size=8, chunk_batches=2, out=out)
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and len(man["chunks"]) == 3 and man["inputs"] == 40
    # lose a chunk: a second run recomputes only that one and equals the first
    (out / "chunks" / "chunk-000001.npz").unlink()
    before = {n: (out / "chunks" / n).stat().st_mtime_ns for n in ["chunk-000000.npz", "chunk-000002.npz"]}
    seen: list[tuple[int, int, str]] = []
    again = profile_graph(model, "digits:test", limit=40, batch_size=8, chunk_batches=2, out=out,
                          progress=lambda done, total, what: seen.append((done, total, what)))
    assert again.profile() == whole.profile()
    # progress within a batch: its forward pass, then each layer; a chunk done before counts whole
    L = len(whole.layers)
    assert seen[-1][:2] == (5 * L, 5 * L)
    assert [w for _, _, w in seen if w.startswith("batch 3/5")] == \
        ["batch 3/5 · forward pass"] + [f"batch 3/5 · layer {l.name}" for l in reversed(whole.layers[1:])]
    assert seen[0] == (L, 5 * L, "chunk 0 done before")
    assert {n: (out / "chunks" / n).stat().st_mtime_ns for n in before} == before
    assert InputProfiles.open(out).profile() == whole.profile()
    assert np.array_equal(InputProfiles.open(out).ids, whole.ids) and len(set(whole.ids.tolist())) == 40
    # a damaged chunk (one byte flipped) is computed again on resume and listed, never read as it is
    raw = bytearray((out / "chunks" / "chunk-000002.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "chunks" / "chunk-000002.npz").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum"):
        InputProfiles.open(out)
    repaired = profile_graph(model, "digits:test", limit=40, batch_size=8, chunk_batches=2, out=out)
    assert repaired.profile() == whole.profile() and InputProfiles.open(out).profile() == whole.profile()
    assert json.loads((out / "manifest.json").read_text())["repaired_chunks"] == ["chunk-000002.npz"]
    with pytest.raises(InputError, match="another profile run"):
        profile_graph(model, "digits:test", limit=40, batch_size=8, chunk_batches=2, out=out, threshold=0.5)


@pytest.mark.slow  # figures and a report section
def test_figures_and_report_section(runs: InputProfiles) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd.report.profiles_section import profiles_section
    from convsvd.viz.profiles import plot_class_matrix, plot_depth_accuracy, plot_persistence, plot_profile_graph

    p = runs.profile([0])
    path = p.strongest_path()
    assert path[0][0] == runs.layers[-1].name and path[-1][0] == "x_in"
    for (a, n), (b, m) in zip(path, path[1:]):  # each step is a synapse of the profile
        assert (a, n, b, m) in set(p.synapse_frame()[["layer", "neuron", "source_layer", "source_neuron"]]
                                   .itertuples(index=False, name=None))
    ax = plot_profile_graph(p)
    red = [l for l in ax.lines if l.get_color() == "tab:red"]
    assert len(red) == len(path) - 1
    plot_class_matrix(class_matrix(runs))
    ax = plot_depth_accuracy(class_similarity(runs))
    assert len(ax.lines[0].get_xdata()) == len(runs.layers)
    h = homology(runs.class_profiles()[0])
    ax = plot_persistence(h)
    assert sum(len(c.get_offsets()) for c in ax.collections) == sum(len(d) for d in h.diagrams)
    plt.close("all")
    sec = profiles_section(runs, per_class=1, max_classes=2)
    assert sec.status == "done" and sec.id == "profiles"
    assert [t.key for t in sec.tables] == ["profiles-summary", "profiles-depth", "profiles-bottleneck"]
    assert [f.key for f in sec.figures] == ["profiles-depth", "profiles-class-matrix", "profiles-graph-0",
                                            "profiles-graph-1", "profiles-persistence"]
    missing = profiles_section(None, "no data")
    assert missing.status == "missing" and missing.notes[0].text == "no data"


def test_synapse_frame_of_a_layer_without_synapses(runs: InputProfiles) -> None:
    """A layer pair with no synapse in the profile gives no rows (found on a ResNet-18: scipy returns a
    sparse matrix, not an array, for an empty index)."""
    from dataclasses import replace

    p = runs.profile()
    layer = next(l.name for l in p.layers if l.inputs)
    empty = p.synapse_counts[layer] * 0
    empty.eliminate_zeros()
    q = replace(p, synapse_counts={**p.synapse_counts, layer: empty})
    s = q.synapse_frame()
    assert layer not in set(s["layer"]) and len(s) == p.num_synapses - p.synapse_counts[layer].nnz


def test_report_topology_keeps_the_deepest_layers_that_fit(runs: InputProfiles) -> None:
    """Above the report's vertex cap, the homology is of the deepest layers whose graphs fit, in every class."""
    from convsvd.profiles import homology
    from convsvd.profiles.topology import attribution_graph
    from convsvd.report.profiles_section import _topology_layers

    cps = runs.class_profiles()
    profiles = [cps[k] for k in sorted(cps)]
    sizes = [len(attribution_graph(p, "inverse")[1]) for p in profiles]
    assert _topology_layers(profiles, max(sizes)) == (None, "")  # everything fits: all layers
    layers, note = _topology_layers(profiles, max(sizes) - 1)
    names = [l.name for l in profiles[0].layers if l.inputs]
    assert layers and layers == names[len(names) - len(layers):] and len(layers) < len(names)
    assert f"last {len(layers)} of {len(names)} layers" in note
    for p in profiles:
        assert len(attribution_graph(p, "inverse", layers)[1]) <= max(sizes) - 1
    # one layer more would not fit in at least one class
    wider = names[len(names) - len(layers) - 1:]
    assert max(len(attribution_graph(p, "inverse", wider)[1]) for p in profiles) > max(sizes) - 1
    assert homology(profiles[0], length="inverse", layers=layers).diagrams[0].shape[1] == 2


def _profiles_on(ids: np.ndarray, neurons: int, seed: int = 5) -> InputProfiles:
    """12 inputs of 3 classes whose neurons are drawn from ``ids`` in layers of ``neurons`` neurons each."""
    rng = np.random.default_rng(seed)
    layers = (LayerInfo("x_in", "input", neurons, (), (neurons, 1, 1)),
              LayerInfo("a", "conv", neurons, ("x_in",), (neurons, 1, 1)))
    N = 12
    nc, nw, sc, sw = {}, {}, {}, {}
    for l in layers:
        rows, cols = [], []
        for b in range(N):
            pick = np.sort(rng.choice(len(ids), 6, replace=False))
            rows += [b] * 6
            cols += ids[pick].tolist()
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(N, neurons))
        nc[l.name], nw[l.name] = m, sp.csr_matrix(m, dtype=np.float64) / 6
    rows, cols = [], []
    for b in range(N):
        o = ids[rng.choice(len(ids), 4)]
        i = ids[rng.choice(len(ids), 4)]
        rows += [b] * 4
        cols += (o * neurons + i).tolist()
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(N, neurons * neurons))
    m.sum_duplicates()
    sc["a"], sw["a"] = m, sp.csr_matrix(m, dtype=np.float64) / 4
    lab = np.arange(N) % 3
    return InputProfiles(layers, np.arange(N), lab, lab, lab, nc, nw, sc, sw, "element")


def test_wide_layers_add_up_and_compare_in_the_memory_of_their_entries() -> None:
    """Element synapses of a 224×224 model live in ~10¹¹ columns: sums and similarities must not
    allocate per column. The same profiles on a narrow numbering give the same numbers."""
    ids = np.arange(40) * 24_989  # layers of 10⁶ neurons: 10¹² synapse columns
    wide, narrow = _profiles_on(ids, 10**6), _profiles_on(np.arange(40), 40)
    pw, pn = wide.profile(), narrow.profile()
    for name in ("x_in", "a"):
        a, b = pw.neuron_counts[name].tocoo(), pn.neuron_counts[name].tocoo()
        assert sorted(zip((a.col // 24_989).tolist(), a.data.tolist())) == sorted(zip(b.col.tolist(), b.data.tolist()))
    assert pw.num_synapses == pn.num_synapses
    assert int(pw.synapse_counts["a"].sum()) == int(pn.synapse_counts["a"].sum()) == 48
    for syn in (False, True):
        sw_, sn = class_similarity(wide, synapses=syn), class_similarity(narrow, synapses=syn)
        assert np.allclose(sw_.values, sn.values, equal_nan=True)
        assert np.allclose(class_matrix(wide, synapses=syn).values, class_matrix(narrow, synapses=syn).values,
                           equal_nan=True)


def test_element_profiles_that_cannot_fit_in_memory_are_refused_before_anything_is_written(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import convsvd.profiles.build as build
    from convsvd import zoo

    monkeypatch.setattr(build, "_available_memory", lambda: 1 << 20)  # 1 MiB left
    with pytest.raises(InputError, match=r"element profiles of 40 inputs need about .* MiB per input.*--limit"):
        profile_graph(zoo.load("digits-cnn"), "digits:test", neuron_type="element", limit=40, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(build, "_available_memory", lambda: None)  # unknown: no guard
    assert len(profile_graph(zoo.load("digits-cnn"), "digits:test", neuron_type="spatial", limit=4)) == 4


def test_large_element_profiles_are_built_a_few_inputs_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import convsvd.profiles.build as build
    from convsvd import zoo

    model = zoo.load("digits-cnn").double()  # float64: a batch and its parts round alike
    whole = profile_graph(model, "digits:test", neuron_type="element", limit=10, batch_size=4)
    sizes: list[int] = []
    run = build.Profiler.run
    monkeypatch.setattr(build.Profiler, "run", lambda self, x, *a, **k: sizes.append(len(x)) or run(self, x, *a, **k))
    monkeypatch.setattr(build, "_WORK_BUDGET", 1)  # one input per block
    seen: list[tuple[int, int, str]] = []
    blocks = profile_graph(model, "digits:test", neuron_type="element", limit=10, batch_size=4,
                           progress=lambda d, t, w: seen.append((d, t, w)))
    assert sizes == [1] * 11  # the first input alone (its size), then one block per input
    assert blocks.profile() == whole.profile() and np.array_equal(blocks.ids, whole.ids)
    assert seen[-1][:2] == (10 * len(whole.layers),) * 2


def test_a_second_run_in_the_same_folder_is_refused_while_the_first_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from convsvd import zoo
    from convsvd._atomic import acquire_lock, release_lock

    out = tmp_path / "run"
    lock = acquire_lock(out)  # as a run in another process holds it
    try:
        with pytest.raises(InputError, match=r"another convsvd run is writing there \(pid \d+\)"):
            profile_graph(zoo.load("digits-cnn"), "digits:test", limit=8, out=out)
        assert not out.exists()
    finally:
        release_lock(lock)
    assert len(profile_graph(zoo.load("digits-cnn"), "digits:test", limit=8, out=out)) == 8
    assert json.loads((out / "manifest.json").read_text())["complete"]
