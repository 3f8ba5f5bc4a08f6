"""Class hypergraphs: a planted table with known influential sets, hand-computed metrics, HIF, the digits CNN, CLI."""

import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binom
from torch import nn

from convsvd import zoo
from convsvd.cli import main
from convsvd.data import ArrayData
from convsvd.errors import InputError
from convsvd.hypergraph import (
    class_hypergraph,
    class_incidence,
    class_separation,
    incidence_frame,
    input_hypergraph,
    layer_separation,
    read_hif,
    separation,
    to_hif,
    write_hif,
)
from convsvd.signals import SignalTable, profile

# --------------------------------------------------------------------------- the planted table
#
# Four linear layers read disjoint coordinates of a 10-feature input through diagonal weights, so
# SVD neuron i of a layer is output coordinate i (U = I, σ = the diagonal) and its signal is d_i·x_i.
# With threshold 0.99 an input's influential set is exactly its non-zero signals (each set's signals
# are equal, so the cumulative share reaches 0.99 only with the last one).

A_SETS = [{0, 1}, {0, 1}, {0, 2}, {0, 1, 2}]  # layer "a": class A → hyperedge {0, 1, 2} (shares 1, ¾, ½)
B_SETS = [{1, 2}, {2}, {1, 2, 3}]             # class B → {1, 2} (⅔, 1); neuron 3 only ⅓
C_SETS = [{2, 3}, {3}, {3}]                   # class C → {3}
D_SETS = [{0, 1, 2, 3}]                       # class D: a single input
LABELS = [0] * 4 + [1] * 3 + [2] * 3 + [3]
IDS = list(range(100, 111))
DIAG_A = [4.0, 3.0, 2.0, 1.0]
# layer "c" (2 neurons): A near (10, 0), B near (0, 10), C near (−10, 0) but its third input sits at A's
# place, so every fold misclassifies exactly that input: NCC accuracy 9/10 on A, B, C, whatever the split.
C_POINTS = [(10, 0), (10, 1), (11, 0), (9, 0), (0, 10), (1, 10), (0, 11), (-10, 0), (-11, 0), (10, 0), (0, -10)]
# layer "d" (3 neurons): sets spread so that no neuron is influential for half of any class's inputs.
D_LAYER_SETS = [{0}, set(), {1}, set(), {0}, {1}, {2}, {0}, {1}, {2}, {0}]


class Planted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = self._select([0, 1, 2, 3], DIAG_A)
        self.b = self._select([4], [2.0])            # a single SVD neuron
        self.c = self._select([5, 6], [2.0, 1.0])
        self.d = self._select([7, 8, 9], [3.0, 2.0, 1.0])

    @staticmethod
    def _select(cols, diag):
        lin = nn.Linear(10, len(cols), bias=False).double()
        w = torch.zeros(len(cols), 10, dtype=torch.float64)
        for r, (c, d) in enumerate(zip(cols, diag)):
            w[r, c] = d
        lin.weight.data = w
        return lin

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x), self.c(x), self.d(x)], 1)


def planted_data() -> ArrayData:
    x = torch.zeros(11, 10, dtype=torch.float64)
    for i, s in enumerate(A_SETS + B_SETS + C_SETS + D_SETS):
        for j in s:
            x[i, j] = 5.0 / DIAG_A[j]               # every influential signal equals 5
    x[:7, 4] = 1.0                                  # layer b: influential for A and B, never for C or D
    for i, (p, q) in enumerate(C_POINTS):
        x[i, 5], x[i, 6] = p / 2.0, q
    for i, s in enumerate(D_LAYER_SETS):
        for j in s:
            x[i, 7 + j] = 1.0 / [3.0, 2.0, 1.0][j]
    return ArrayData(x, torch.tensor(LABELS), torch.tensor(IDS), classes=list("ABCD"), name="planted")


def build_planted(out) -> SignalTable:
    return profile(Planted(), planted_data(), threshold=0.99, batch_size=4, out=out, progress=False)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build_planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def abc(planted):
    return class_separation(planted, classes=["A", "B", "C"])


def reference_modularity(edges, label_of):
    """Kamiński et al.'s hypergraph modularity, linear rule, unit edge weights, from its definition."""
    vol = Counter(label_of[v] for e in edges for v in e)
    total = sum(vol.values())
    ec = 0.0
    dt = 0.0
    for e in edges:
        d = len(e)
        c = max(Counter(label_of[v] for v in e).values())
        ec += c / d if c > d / 2 else 0.0
        dt += sum(k / d * binom.pmf(k, d, vol[part] / total) for k in range(d // 2 + 1, d + 1) for part in vol)
    return (ec - dt) / len(edges)


# --------------------------------------------------------------------------- hypergraphs = the table


def test_the_planted_table_holds_the_planted_sets(planted):
    inf = planted.influential(layer="a").groupby("id")["neuron"].apply(lambda s: set(s.tolist()))
    assert inf.to_dict() == dict(zip(IDS, A_SETS + B_SETS + C_SETS + D_SETS))


def test_class_hyperedges_match_the_signal_table(planted):
    inc = class_incidence(planted, "a", classes=["A", "B", "C"])
    assert inc.classes == ("A", "B", "C") and inc.inputs.tolist() == [4, 3, 3]
    assert inc.vertices == ("a:0", "a:1", "a:2", "a:3")
    np.testing.assert_array_equal(inc.count, [[4, 3, 2, 0], [0, 2, 3, 1], [0, 0, 1, 3]])
    # the counts are those of the table itself
    prof = planted.class_profile("a").set_index(["class", "neuron"])["influential_count"]
    for c, name in enumerate(inc.classes):
        assert inc.count[c].tolist() == [int(prof[(name, k)]) for k in range(4)]
    H = class_hypergraph(inc)
    assert {e: sorted(v) for e, v in H.incidence_dict.items()} == {
        "A": ["a:0", "a:1", "a:2"], "B": ["a:1", "a:2"], "C": ["a:3"]}
    cells = H.incidences.to_dataframe
    assert cells.loc[("A", "a:1"), "weight"] == pytest.approx(0.75)
    assert cells.loc[("A", "a:2"), "share"] == pytest.approx(0.5) and cells.loc[("A", "a:2"), "count"] == 2
    assert cells.loc[("B", "a:1"), "weight"] == pytest.approx(2 / 3)
    nodes = H.nodes.to_dataframe
    assert nodes.loc["a:0", "sigma"] == pytest.approx(4.0) and nodes.loc["a:3", "neuron"] == 3
    assert (nodes["layer"] == "a").all() and (nodes["group"] == 0).all()
    edges = H.edges.to_dataframe
    assert edges.loc["A", "inputs"] == 4 and edges.loc["C", "size"] == 1 and edges.loc["B", "label"] == 1
    # p = 1: only the neurons of every input of the class
    strict = class_hypergraph(planted, "a", min_share=1.0, classes=["A", "B", "C"])
    assert {e: sorted(v) for e, v in strict.incidence_dict.items()} == {"A": ["a:0"], "B": ["a:2"], "C": ["a:3"]}
    dual = class_hypergraph(inc, dual=True)
    assert {e: sorted(v) for e, v in dual.incidence_dict.items()} == {
        "a:0": ["A"], "a:1": ["A", "B"], "a:2": ["A", "B"], "a:3": ["C"]}
    assert dual.edges.to_dataframe.loc["a:1", "sigma"] == pytest.approx(3.0)


@pytest.mark.slow  # HyperNetX objects of every input
def test_input_hyperedges_match_the_signal_table(planted):
    for layer in planted.layers:
        H = input_hypergraph(planted, layer)
        rows = planted.influential(layer=layer)
        expected = rows.groupby("id")["neuron"].apply(lambda s: sorted(f"{layer}:{n}" for n in s)).to_dict()
        assert {e: sorted(v) for e, v in H.incidence_dict.items()} == expected
        cells = H.incidences.to_dataframe
        for r in rows.itertuples():
            assert cells.loc[(r.id, f"{layer}:{r.neuron}"), "weight"] == pytest.approx(r.weight)
            assert cells.loc[(r.id, f"{layer}:{r.neuron}"), "signal"] == pytest.approx(r.signal)
    H = input_hypergraph(planted, "a", classes=["B"], ids=[104, 106])
    assert {e: sorted(v) for e, v in H.incidence_dict.items()} == {104: ["a:1", "a:2"], 106: ["a:1", "a:2", "a:3"]}
    assert H.edges.to_dataframe.loc[106, "class"] == "B"
    dual = input_hypergraph(planted, "a", dual=True)
    assert sorted(dual.incidence_dict["a:3"]) == [106, 107, 108, 109, 110]
    frame = incidence_frame(H)
    assert len(frame) == 5 and set(frame.columns) >= {"edge", "node", "weight", "signal", "edge_class", "node_sigma"}


def test_grouped_layers_label_their_vertices_with_the_group(tmp_path):
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double()
    table = profile(net, (torch.randn(12, 2, 6, 6, dtype=torch.float64), torch.arange(12) % 3), top_k=2,
                    out=tmp_path, progress=False)
    H = input_hypergraph(table, "0")
    rows = table.influential(layer="0")
    expected = rows.groupby("id")[["group", "neuron"]].apply(
        lambda g: sorted(f"0:{a}.{b}" for a, b in zip(g.group, g.neuron)))
    assert {e: sorted(v) for e, v in H.incidence_dict.items()} == expected.to_dict()
    inc = class_incidence(table, "0", min_share=0.25)
    assert inc.vertices == ("0:0.0", "0:0.1", "0:1.0", "0:1.1")
    assert class_incidence(table, "3").vertices == ("3:0", "3:1", "3:2")


# --------------------------------------------------------------------------- every metric by hand


def test_every_metric_equals_its_hand_computed_value(planted, abc):
    a = abc["a"]
    np.testing.assert_allclose(a.overlap, [[1, 2 / 3, 0], [2 / 3, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(a.shared, [[3, 2, 0], [2, 2, 0], [0, 0, 1]])
    np.testing.assert_allclose(a.exclusive, [1 / 3, 0, 1])
    row = a.to_frame().iloc[0]
    assert row.jaccard_mean == pytest.approx(2 / 9) and row.exclusive_mean == pytest.approx(4 / 9)
    assert (row.components_s1, row.components_s2, row.components_s3) == (2, 2, 3)
    assert row.mean_size == pytest.approx(2.0) and row.empty_hyperedges == 0 and row.status == "ok"
    # modularity on the dual: hyperedges = neurons, vertices = inputs; the edge contributions by hand:
    # a:0 ⊂ A (4/4) · a:1 has 3 of 5 in A (3/5) · a:2 no majority (0) · a:3 has 3 of 4 in C (3/4)
    label_of = dict(zip(IDS, "AAAABBBCCC"))
    edges = [[i for i, s in zip(IDS, A_SETS + B_SETS + C_SETS) if k in s] for k in range(4)]
    assert [len(e) for e in edges] == [4, 5, 6, 4]
    q = reference_modularity(edges, label_of)
    ec = 1 + 3 / 5 + 0 + 3 / 4
    assert q < ec / 4  # the degree tax is positive
    assert row.modularity == pytest.approx(q, abs=1e-12) and row.modularity_inputs == 10
    # NCC: layer c misclassifies exactly the planted outlier, whatever the 3 folds are
    c = abc["c"]
    assert c.ncc_accuracy == pytest.approx(0.9) and c.ncc_folds == 3
    assert class_separation(planted, classes=["A", "B", "C"], layers=["c"], seed=7)["c"].ncc_accuracy == \
        pytest.approx(0.9)
    assert separation(planted, classes=["A", "B", "C"]).to_frame().equals(abc.to_frame())
    ex = abc.exclusive_frame()
    assert ex[ex.layer == "a"][["class", "size", "exclusive_neurons"]].values.tolist() == [
        ["A", 3, 1], ["B", 2, 0], ["C", 1, 1]]
    pairs = abc.pairs_frame().set_index(["layer", "class_a", "class_b"])
    assert pairs.loc[("a", "A", "B"), "shared_neurons"] == "a:1 a:2" and pairs.loc[("a", "A", "C"), "shared"] == 0
    deep = abc.deepest_shared().set_index(["class_a", "class_b"])
    # A and B share b:0 (layer c: A → {c:0}, B → {c:1}); A and C share c:0; B and C share nothing after a
    assert deep.loc[("A", "B"), "deepest_layer"] == "b" and deep.loc[("A", "C"), "deepest_layer"] == "c"
    assert deep.loc[("B", "C"), "depth"] == -1 and math.isnan(deep.loc[("B", "C"), "jaccard"])


# --------------------------------------------------------------------------- degenerate cases


def test_a_layer_with_a_single_svd_neuron(abc):
    b = abc["b"]
    row = b.to_frame().iloc[0]
    assert row.neurons == 1 and row.status == "empty-hyperedge,one-neuron"
    assert "single SVD neuron" in row.message and "class C" in row.message
    assert b.incidence.member.tolist() == [[True], [True], [False]]
    assert row.jaccard_mean == 1.0 and b.exclusive[:2].tolist() == [0.0, 0.0] and math.isnan(b.exclusive[2])
    assert (row.components_s1, row.components_s2, row.components_s3) == (1, 2, 2)
    label_of = dict(zip(IDS, "AAAABBB"))
    assert row.modularity == pytest.approx(reference_modularity([IDS[:7]], label_of), abs=1e-12)
    assert row.modularity_inputs == 7  # the inputs of C have no influential neuron here
    assert 0 <= row.ncc_accuracy <= 1


def test_a_layer_where_no_neuron_reaches_the_share(abc):
    row = abc["d"].to_frame().iloc[0]
    assert row.status == "no-hyperedge" and "share 0.5 of any class" in row.message
    assert row.empty_hyperedges == 3 and math.isnan(row.mean_size)
    for col in ("jaccard_mean", "exclusive_mean", "components_s1", "components_s2", "components_s3"):
        assert math.isnan(row[col]), col
    assert np.isnan(abc["d"].overlap).all()
    assert np.isfinite(row.modularity) and np.isfinite(row.ncc_accuracy)  # defined from the inputs alone
    H = class_hypergraph(abc["d"].incidence)
    assert len(H.edges) == 0


def test_one_class(planted):
    result = class_separation(planted, classes=["A"])
    frame = result.to_frame()
    assert (frame["classes"] == 1).all() and frame["status"].str.startswith("one-class").all()
    for col in ("jaccard_mean", "exclusive_mean", "modularity", "ncc_accuracy"):
        assert frame[col].isna().all(), col
    assert frame.loc[frame.layer == "a", "components_s1"].item() == 1
    assert (frame["ncc_folds"] == 0).all()


def test_a_class_with_one_input(planted):
    result = class_separation(planted)
    frame = result.to_frame().set_index("layer")
    assert frame["status"].str.contains("single-input-class").all()
    assert "class D has one input" in frame.loc["a", "message"]
    assert frame.loc["c", "ncc_accuracy"] == pytest.approx(0.9) and frame.loc["c", "ncc_folds"] == 3
    d = result["a"].incidence
    assert d.member[d.classes.index("D")].tolist() == [True] * 4  # its hyperedge is its input's set
    assert result["a"].exclusive.tolist()[3] == 0.0
    assert frame.loc["a", "modularity_inputs"] == 11


def test_unlabelled_inputs_and_bad_options(planted, tmp_path):
    with pytest.raises(InputError, match=r"^min_share 0: expected a number > 0 and ≤ 1$"):
        separation(planted, min_share=0)
    with pytest.raises(InputError, match="min_share"):
        class_incidence(planted, "a", min_share=1.5)
    with pytest.raises(InputError, match=r"^class 'E': not among the classes of this run \(A, B, C, D\)$"):
        separation(planted, classes=["E"])
    with pytest.raises(InputError, match=r"^layer 'z': not profiled in this run"):
        layer_separation(planted, "z")
    with pytest.raises(InputError, match="folds"):
        separation(planted, folds=1)
    with pytest.raises(InputError, match="layer 'q': not in this separation result"):
        class_separation(planted, layers=["a"])["q"]
    unlabelled = profile(Planted(), planted_data().inputs, threshold=0.99, out=tmp_path, progress=False)
    with pytest.raises(InputError, match="no labelled input"):
        separation(unlabelled)
    assert len(input_hypergraph(unlabelled, "a").edges) == 11


# --------------------------------------------------------------------------- HIF and CSV


def _hif_is_well_formed(hif):
    """The structure of the HIF schema: required keys, allowed keys, id and weight types."""
    assert set(hif) <= {"network-type", "metadata", "incidences", "nodes", "edges"} and "incidences" in hif
    assert hif["network-type"] in ("undirected", "directed", "asc")
    for part, keys in (("incidences", {"edge", "node"}), ("nodes", {"node"}), ("edges", {"edge"})):
        for rec in hif[part]:
            assert keys <= set(rec) <= keys | {"weight", "attrs", "direction"}
            assert all(isinstance(rec[k], (str, int)) for k in keys)
            assert isinstance(rec["weight"], (int, float)) and isinstance(rec["attrs"], dict)


def _cells(H):
    frame = H.incidences.to_dataframe
    return {(e, n): round(float(w), 12) for (e, n), w in frame["weight"].items()}


@pytest.mark.slow  # a HyperNetX round trip
def test_hif_export_reads_back_into_hypernetx_with_the_same_incidence(planted, tmp_path, monkeypatch):
    import hypernetx as hnx
    import hypernetx.hif

    hypergraphs = (class_hypergraph(planted, "a"), input_hypergraph(planted, "c"), class_hypergraph(planted, "a", dual=True))
    for H in hypergraphs:
        path = write_hif(H, tmp_path / "h.hif.json", metadata={"layer": "a"})
        hif = json.loads(path.read_text())
        _hif_is_well_formed(hif)
        assert hif["metadata"]["layer"] == "a" and hif["metadata"]["name"] == H.name
        back = read_hif(path)
        assert {e: sorted(v) for e, v in back.incidence_dict.items()} == \
            {e: sorted(v) for e, v in H.incidence_dict.items()}
        assert _cells(back) == _cells(H)
        nodes, orig = back.nodes.to_dataframe, H.nodes.to_dataframe
        for col in [c for c in orig.columns if c != "misc_properties"]:
            assert nodes[col].tolist() == orig.loc[nodes.index, col].tolist(), col

        # HyperNetX's own reader: it downloads the HIF schema on every call, so it is given a permissive one
        class Offline:
            text = "{}"

        monkeypatch.setattr(hypernetx.hif.requests, "get", lambda *a, **k: Offline())
        theirs = hnx.from_hif(filename=str(path))
        assert {e: sorted(v) for e, v in theirs.incidence_dict.items()} == \
            {e: sorted(v) for e, v in H.incidence_dict.items()}
        assert _cells(theirs) == _cells(H)
    assert to_hif(class_hypergraph(planted, "d", classes=["A"]))["incidences"] == []  # no hyperedge: still valid HIF
    bad = tmp_path / "bad.json"
    bad.write_text('{"edges": []}')
    with pytest.raises(InputError, match="expected a HIF object with an 'incidences' list"):
        read_hif(bad)
    with pytest.raises(InputError, match="cannot read the HIF file"):
        read_hif(tmp_path / "missing.json")


def test_csv_incidence_tables(planted):
    inc = class_incidence(planted, "a")
    frame = inc.to_frame()
    assert len(frame) == 4 * 4 and frame[frame.member]["vertex"].tolist() == [
        "a:0", "a:1", "a:2", "a:1", "a:2", "a:3", "a:0", "a:1", "a:2", "a:3"]
    wide = inc.matrix("count")
    assert wide.loc["B", "a:2"] == 3 and wide.shape == (4, 4)


# --------------------------------------------------------------------------- the digits CNN


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    trained = profile(zoo.load("digits-cnn"), "digits:test", out=tmp_path_factory.mktemp("trained"), progress=False)
    random = profile(zoo.build("digits-cnn", seed=0), "digits:test", out=tmp_path_factory.mktemp("random"),
                     progress=False)
    layers = ["conv1", "fc2"]
    return (class_separation(trained, layers=layers).to_frame().set_index("layer"),
            class_separation(random, layers=layers).to_frame().set_index("layer"))


# (column, margin, sign): sign +1 when larger means more separated
MORE_SEPARATED = [("jaccard_mean", 0.5, -1), ("exclusive_mean", 0.2, +1), ("components_s1", 2, +1),
                  ("modularity", 0.3, +1), ("ncc_accuracy", 0.2, +1)]


@pytest.mark.parametrize("column, margin, sign", MORE_SEPARATED)
def test_digits_last_layer_separates_more_than_the_first_and_than_a_random_copy(digits, column, margin, sign):
    trained, random = digits
    assert trained.loc["fc2", "inputs"] == 451 and (trained["classes"] == 10).all()
    last, first, rand = trained.loc["fc2", column], trained.loc["conv1", column], random.loc["fc2", column]
    assert sign * (last - first) > margin, (column, last, first)
    assert sign * (last - rand) > margin, (column, last, rand)


def test_modularity_subsample_is_deterministic_and_stratified(planted):
    one = class_separation(planted, layers=["a"], max_inputs=6, seed=3)["a"]
    two = class_separation(planted, layers=["a"], max_inputs=6, seed=3)["a"]
    assert one.modularity == two.modularity and 5 <= one.modularity_inputs <= 8


@pytest.mark.slow
def test_hypernetx_is_imported_on_first_use_and_leaves_matplotlib_settings_alone():
    code = ("import sys, matplotlib; before = list(matplotlib.rcParams['figure.figsize']); "
            "import convsvd.hypergraph, convsvd.viz; assert 'hypernetx' not in sys.modules; "
            "from convsvd.hypergraph._hnx import hnx; hnx(); assert 'hypernetx' in sys.modules; "
            "assert list(matplotlib.rcParams['figure.figsize']) == before, matplotlib.rcParams['figure.figsize']")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_writes_the_table_figures_and_exports(planted, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["hypergraph", str(planted.path), "--layer", "a,d", "--classes", "A,B,C", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "separation of 3 classes (10 inputs)" in captured.out and "no-hyperedge" in captured.out
    assert "d: no neuron is influential" in captured.err
    frame = pd.read_csv(out / "separation.csv")
    expected = separation(planted, classes=["A", "B", "C"]).to_frame()
    assert frame["layer"].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_allclose(frame["jaccard_mean"], expected["jaccard_mean"], equal_nan=True)
    np.testing.assert_allclose(frame["modularity"], expected["modularity"], rtol=1e-12)
    for layer in ("a", "d"):
        for name in (f"class-hypergraph-{layer}.png", f"incidence-{layer}.png", f"overlap-{layer}.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        back = read_hif(out / f"class-hypergraph-{layer}.hif.json")
        assert {e: sorted(v) for e, v in back.incidence_dict.items()} == \
            {e: sorted(v) for e, v in class_hypergraph(planted, layer, classes=["A", "B", "C"]).incidence_dict.items()}
        assert len(read_hif(out / f"input-hypergraph-{layer}.hif.json").edges) == \
            len(input_hypergraph(planted, layer, classes=["A", "B", "C"]).edges)
        inc = pd.read_csv(out / f"class-incidence-{layer}.csv")
        assert len(inc) == 3 * (4 if layer == "a" else 3)
    assert not (out / "class-hypergraph-b.png").exists()
    assert pd.read_csv(out / "overlap-a.csv").set_index("class").loc["A", "B"] == pytest.approx(2 / 3)
    assert (out / "separation.png").exists() and (out / "deepest-shared.csv").exists()
    meta = json.loads((out / "hypergraph.json").read_text())
    assert meta["options"]["classes"] == ["A", "B", "C"] and "separation.csv" in meta["files"]
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("argv, message", [
    (["hypergraph", "{missing}"], "no manifest.json"),
    (["hypergraph", "{table}", "--layer", "zz"], "--layer 'zz': not profiled"),
    (["hypergraph", "{table}", "--classes", "Q"], "class 'Q': not among the classes"),
    (["hypergraph", "{table}", "--min-share", "2"], "min_share 2.0: expected a number > 0 and ≤ 1"),
    (["hypergraph", "{table}", "--folds", "1"], "folds 1: expected an integer ≥ 2"),
])
def test_cli_bad_input_is_one_line_and_exit_2(planted, tmp_path, capsys, argv, message):
    argv = [a.format(missing=tmp_path / "nothing", table=planted.path) for a in argv] + ["--out", str(tmp_path / "o")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_ncc_accuracy_does_not_depend_on_row_order():
    import numpy as np

    from convsvd.hypergraph.separation import LayerData, _separate

    rng = np.random.default_rng(0)
    n, K = 60, 5
    labels = np.repeat(np.arange(3), n // 3)
    signal = rng.normal(size=(n, K)) + labels[:, None] * 0.3  # overlapping classes: folds matter
    mask = np.abs(signal) > 1.0
    ids = np.arange(n)
    common = (np.zeros(K, int), np.arange(K), np.ones(K), [f"L:{i}" for i in range(K)], ["0", "1", "2"])
    a = _separate(LayerData("L", ids, labels, signal, mask, mask * 1.0, *common), 0.5, 5, 0, None)
    for _ in range(5):
        perm = rng.permutation(n)
        b = _separate(LayerData("L", ids[perm], labels[perm], signal[perm], mask[perm], mask[perm] * 1.0, *common),
                      0.5, 5, 0, None)
        assert a.ncc_accuracy == b.ncc_accuracy


def test_input_hypergraph_is_capped_by_a_stratified_seeded_sample(planted):
    full = input_hypergraph(planted, "a", max_inputs=None)
    assert len(full.edges) == 11 and full.name == "a inputs"
    H = input_hypergraph(planted, "a", max_inputs=6, seed=1)
    kept = sorted(H.edges)
    assert 4 <= len(kept) <= 7 and H.name == f"a inputs (sample of {len(kept)} of 11)"
    assert set(H.edges.to_dataframe["class"]) == {"A", "B", "C", "D"}  # every class keeps at least one input
    assert sorted(input_hypergraph(planted, "a", max_inputs=6, seed=1).edges) == kept
    for e in kept:  # a sampled input keeps its whole hyperedge
        assert sorted(H.incidence_dict[e]) == sorted(full.incidence_dict[e])
    with pytest.raises(InputError, match=r"^max_inputs: expected an int ≥ 1 or None, got 0$"):
        input_hypergraph(planted, "a", max_inputs=0)


@pytest.mark.slow  # the HyperNetX reference on every layer
def test_separation_equals_the_hypernetx_computation_on_every_layer(planted):
    from convsvd.hypergraph._reference import reference_separation

    seen = []
    ours = separation(planted, progress=lambda done, total, layer: seen.append((done, total, layer))).to_frame()
    assert seen == [(1, 4, "a"), (2, 4, "b"), (3, 4, "c"), (4, 4, "d")]
    ref = reference_separation(planted)
    for col in ref.columns:
        if col == "layer":
            assert ours[col].tolist() == ref[col].tolist()
        else:
            np.testing.assert_allclose(ours[col].astype(float), ref[col].astype(float), rtol=0, atol=1e-9,
                                       equal_nan=True, err_msg=col)
    assert ours["influential_median"].tolist() == [2.0, 1.0, 1.0, 1.0]  # c: (10, 1) and (1, 10) need both neurons
    assert ours["influential_mean"].tolist() == pytest.approx([23 / 11, 7 / 11, 13 / 11, 9 / 11])


def test_shuffles_option(planted):
    with pytest.raises(InputError, match=r"^shuffles -1: expected an integer ≥ 0$"):
        separation(planted, shuffles=-1)
    none = class_separation(planted, classes=["A", "B", "C"], layers=["c"], shuffles=0)
    assert math.isnan(none["c"].ncc_shuffled) and none.shuffles == 0
    five = class_separation(planted, classes=["A", "B", "C"], layers=["c"], shuffles=5)["c"]
    assert five.ncc_shuffles == 5 and 0 <= five.ncc_shuffled <= 1 and five.ncc_chance == pytest.approx(0.4)
