"""The sparse separation metrics equal HyperNetX's (and scikit-learn's) on random small hypergraphs, to 1e-9."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import binom

from convsvd.errors import InputError
from convsvd.hypergraph._layer import LayerData
from convsvd.hypergraph._reference import reference_layer, sklearn_ncc
from convsvd.hypergraph.metrics import (
    class_counts,
    exclusive_share,
    jaccard,
    modularity,
    ncc_predict,
    s_components,
)
from convsvd.hypergraph.separation import COLUMNS, _ncc, _separate

hnx = pytest.importorskip("hypernetx")
from hypernetx.algorithms import hypergraph_modularity as hmod  # noqa: E402

SEEDS = range(8)
WDC = {"linear": hmod.linear, "majority": hmod.majority, "strict": hmod.strict}


def random_incidence(seed, V=None, E=None, density=None):
    """A random (V, E) vertex × hyperedge mask with a few empty hyperedges and isolated vertices."""
    rng = np.random.default_rng(seed)
    V = V or int(rng.integers(6, 40))
    E = E or int(rng.integers(3, 25))
    density = density or float(rng.uniform(0.1, 0.6))
    B = rng.random((V, E)) < density
    B[:, rng.integers(0, E)] = False  # an empty hyperedge: not a hyperedge of HyperNetX's object
    return B


def to_hnx(B, weights=None):
    """HyperNetX hypergraph of a (V, E) mask: edges ``e{j:03d}`` with properties in column order, vertices 0..V−1.

    HyperNetX 2.4's weighted modularity pairs the edges of ``incidence_dict`` (sorted by name)
    with the weights of the edge table (in insertion order): zero-padded names keep both in order.
    """
    v, e = np.nonzero(B)
    order = np.argsort(e, kind="stable")
    cells = pd.DataFrame(dict(edge=[f"e{j:03d}" for j in e[order]], node=v[order]))
    if weights is None:
        return hnx.Hypergraph(cells, edge_col="edge", node_col="node")
    used = np.unique(e)
    props = pd.DataFrame(dict(edge=[f"e{j:03d}" for j in used], weight=np.asarray(weights, float)[used]))
    return hnx.Hypergraph(cells, edge_col="edge", node_col="node", edge_properties=props,
                          edge_weight_prop_col="weight")


def hnx_modularity(B, parts, weights=None, rule="linear"):
    H = to_hnx(B, weights)
    present = np.flatnonzero(B.any(axis=1))  # HyperNetX's partition must hold exactly its vertices
    A = [set(present[parts[present] == p].tolist()) for p in np.unique(parts[present])]
    return hmod.modularity(H, A, wdc=WDC[rule])


def exact_modularity(B, parts, weights, rule):
    """The definition with real-valued weights, term by term (no closed form, no integer arrays)."""
    keep = B.any(axis=0)
    B, w = B[:, keep], np.asarray(weights, float)[keep]
    f = {"linear": lambda d, c: c / d, "majority": lambda d, c: 1.0, "strict": lambda d, c: float(c == d)}[rule]
    labels = np.unique(parts)
    count = np.array([[B[parts == p, j].sum() for j in range(B.shape[1])] for p in labels])
    vol = count @ w / (count @ w).sum()
    ec = dt = 0.0
    for j in range(B.shape[1]):
        d, c = int(count[:, j].sum()), int(count[:, j].max())
        ec += w[j] * (f(d, c) if c > d / 2 else 0.0)
        dt += w[j] * sum(f(d, k) * binom.pmf(k, d, p) for k in range(d // 2 + 1, d + 1) for p in vol)
    return (ec - dt) / w.sum()


# --------------------------------------------------------------------------- modularity


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rule", ["linear", "majority", "strict"])
def test_modularity_equals_hypernetx_unweighted(seed, rule):
    B = random_incidence(seed)
    parts = np.random.default_rng(100 + seed).integers(0, 1 + seed % 4 + 1, B.shape[0])
    ours = modularity(B, parts, rule=rule)
    assert ours == pytest.approx(hnx_modularity(B, parts, rule=rule), abs=1e-9)
    # sparse input, arbitrary part ids, and an explicit equal weight give the same value
    assert modularity(sp.csr_matrix(B), parts * 7 - 3, weights=np.full(B.shape[1], 2.5), rule=rule) == \
        pytest.approx(ours, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rule", ["linear", "majority", "strict"])
def test_modularity_equals_hypernetx_with_weighted_hyperedges(seed, rule):
    B = random_incidence(seed)
    rng = np.random.default_rng(200 + seed)
    parts = rng.integers(0, 3, B.shape[0])
    weights = rng.integers(1, 6, B.shape[1]).astype(float)
    weights[0] = 7.0  # never all equal: HyperNetX's weighted branch
    ours = modularity(B, parts, weights=weights, rule=rule)
    assert ours == pytest.approx(hnx_modularity(B, parts, weights, rule), abs=1e-9)
    assert ours == pytest.approx(exact_modularity(B, parts, weights, rule), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_modularity_with_fractional_weights_follows_the_definition(seed):
    # HyperNetX 2.4 accumulates weighted volumes in integer arrays (fractions truncated): the definition is the
    # reference here
    B = random_incidence(seed)
    rng = np.random.default_rng(300 + seed)
    parts, weights = rng.integers(0, 3, B.shape[0]), rng.uniform(0.1, 3.0, B.shape[1])
    for rule in ("linear", "majority", "strict"):
        assert modularity(B, parts, weights=weights, rule=rule) == \
            pytest.approx(exact_modularity(B, parts, weights, rule), abs=1e-9)


def test_modularity_degenerate_cases():
    B = np.zeros((5, 3), bool)
    assert math.isnan(modularity(B, np.arange(5)))                       # no hyperedge
    B = random_incidence(3)
    one = np.zeros(B.shape[0], int)                                      # a single part
    assert modularity(B, one) == pytest.approx(hnx_modularity(B, one), abs=1e-9)
    single = np.zeros((4, 1), bool)
    single[:, 0] = True                                                  # one hyperedge of every vertex
    parts = np.array([0, 0, 1, 1])
    assert modularity(single, parts) == pytest.approx(hnx_modularity(single, parts), abs=1e-9)
    with pytest.raises(InputError, match="rule 'fair': expected one of linear, majority, strict"):
        modularity(B, one, rule="fair")
    with pytest.raises(InputError, match="parts: expected one part per vertex"):
        modularity(B, one[:-1])


# --------------------------------------------------------------------------- class metrics


def class_hnx(member):
    """HyperNetX class hypergraph (rows = class hyperedges) and its edge → vertex sets."""
    return to_hnx(member.T)


@pytest.mark.parametrize("seed", SEEDS)
def test_components_jaccard_exclusive_equal_hypernetx(seed):
    rng = np.random.default_rng(seed)
    C, K = int(rng.integers(2, 12)), int(rng.integers(3, 15))
    member = rng.random((C, K)) < rng.uniform(0.1, 0.5)
    member[rng.integers(0, C)] = False  # an empty class hyperedge
    H = class_hnx(member)
    for s in (1, 2, 3):
        theirs = sum(1 for _ in H.s_connected_components(s=s, edges=True, return_singletons=True))
        assert s_components(member, s) == theirs, s
        assert s_components(sp.csr_array(member), s) == theirs
    sets = {c: set(np.flatnonzero(member[c])) for c in range(C)}
    assert {int(e[1:]): set(v) for e, v in H.incidence_dict.items()} == {c: v for c, v in sets.items() if v}
    overlap, shared = jaccard(member)
    excl = exclusive_share(member)
    for a in range(C):
        others = set().union(*(sets[b] for b in range(C) if b != a))
        if sets[a]:
            assert excl[a] == pytest.approx(len(sets[a] - others) / len(sets[a]), abs=1e-12)
        else:
            assert math.isnan(excl[a])
        for b in range(C):
            assert shared[a, b] == len(sets[a] & sets[b])
            if sets[a] and sets[b]:
                assert overlap[a, b] == pytest.approx(len(sets[a] & sets[b]) / len(sets[a] | sets[b]), abs=1e-12)
            else:
                assert math.isnan(overlap[a, b])


def test_class_metrics_with_no_hyperedge_and_one_class():
    empty = np.zeros((3, 4), bool)
    assert s_components(empty, 1) == 0 and np.isnan(jaccard(empty)[0]).all() and np.isnan(exclusive_share(empty)).all()
    one = np.array([[True, False, True]])
    assert s_components(one, 1) == 1 and s_components(one, 3) == 1
    assert jaccard(one)[0].tolist() == [[1.0]] and math.isnan(exclusive_share(one)[0])
    with pytest.raises(InputError, match="s: expected an int ≥ 1"):
        s_components(one, 0)


def test_class_counts_is_the_onehot_product():
    rng = np.random.default_rng(5)
    mask, codes = rng.random((50, 7)) < 0.3, rng.integers(0, 4, 50)
    expected = np.stack([mask[codes == c].sum(axis=0) for c in range(4)])
    np.testing.assert_array_equal(class_counts(mask, codes, 4), expected)
    np.testing.assert_array_equal(class_counts(sp.csr_array(mask * 0.5), codes, 4), expected)


# --------------------------------------------------------------------------- nearest centroid


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_ncc_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, K, C = 120, 6, 4
    labels = rng.integers(0, C, n) * 10 + 3          # arbitrary label values
    signal = rng.normal(size=(n, K)) + (labels // 10)[:, None] * 0.4
    assert _ncc(signal, labels, 5, seed) == sklearn_ncc(signal, labels, 5, seed)
    # and prediction by prediction, for fixed folds
    from sklearn.neighbors import NearestCentroid

    codes, fold = labels // 10, rng.integers(0, 3, n)
    pred = ncc_predict(signal, codes, fold)
    for f in range(3):
        model = NearestCentroid().fit(signal[fold != f], codes[fold != f])
        np.testing.assert_array_equal(pred[fold == f], model.predict(signal[fold == f]))


# --------------------------------------------------------------------------- one whole layer


def random_layer(seed, n=90, K=12, C=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    signal = rng.normal(size=(n, K)) + np.eye(C, K)[labels] * 1.5
    mask = np.abs(signal) > rng.uniform(0.8, 1.6)
    mask[rng.integers(0, n, 3)] = False                # inputs with no influential neuron
    ids = rng.permutation(n) + 1000
    names = tuple(str(c) for c in range(C))
    return LayerData("L", ids, labels, signal, mask, mask / np.maximum(mask.sum(1, keepdims=True), 1),
                     np.zeros(K, np.int64), np.arange(K), np.ones(K), tuple(f"L:{k}" for k in range(K)), names)


@pytest.mark.parametrize("seed", SEEDS[:5])
@pytest.mark.parametrize("max_inputs", [None, 40])
@pytest.mark.slow  # the HyperNetX reference, many cases
def test_a_layer_equals_the_hypernetx_computation(seed, max_inputs):
    data = random_layer(seed)
    for min_share in (0.3, 0.6):
        ours = _separate(data, min_share, 5, seed, max_inputs).to_frame().iloc[0]
        ref = reference_layer(data, min_share, 5, seed, max_inputs)
        for col in ("inputs", "classes", "components_s1", "components_s2", "components_s3", "modularity_inputs",
                    "ncc_accuracy", "ncc_folds"):
            assert ours[col] == ref[col] or (math.isnan(ours[col]) and math.isnan(ref[col])), col
        for col in ("jaccard_mean", "exclusive_mean", "modularity"):
            assert ours[col] == pytest.approx(ref[col], abs=1e-9, nan_ok=True), col


def test_modularity_noise_around_zero_is_reported_as_zero():
    # every input has the same single neuron: one hyperedge, no majority part, a degree tax of ~1e-30
    rng = np.random.default_rng(0)
    n, K = 100, 3
    labels = np.repeat(np.arange(10), 10)
    mask = np.zeros((n, K), bool)
    mask[:, 0] = True
    data = LayerData("L", np.arange(n), labels, rng.normal(size=(n, K)), mask, mask * 1.0, np.zeros(K, np.int64),
                     np.arange(K), np.ones(K), ("L:0", "L:1", "L:2"), tuple("abcdefghij"))
    raw = reference_layer(data)["modularity"]
    assert raw != 0.0 and abs(raw) < 1e-12
    assert _separate(data, 0.5, 5, 0, None).modularity == 0.0


# --------------------------------------------------------------------------- not misleading


def test_chance_level_shuffled_baseline_and_set_sizes_on_a_hand_made_layer():
    # 12 inputs: class 0 has 6, classes 1 and 2 have 3 each; class c sits at 10·e_c, far from the others
    labels = np.array([0] * 6 + [1] * 3 + [2] * 3)
    signal = 10.0 * np.eye(3)[labels] + np.linspace(0, 0.1, 12)[:, None]
    mask = np.zeros((12, 3), bool)
    mask[np.arange(12), labels] = True
    mask[:6, 1] = True                                   # class 0's inputs have 2 influential neurons, the rest 1
    common = (np.zeros(3, np.int64), np.arange(3), np.ones(3), ("L:0", "L:1", "L:2"), ("a", "b", "c"))
    layer = _separate(LayerData("L", np.arange(12), labels, signal, mask, mask * 1.0, *common), 0.5, 3, 0, None,
                      shuffles=4)
    assert layer.ncc_accuracy == 1.0 and layer.ncc_folds == 3
    assert layer.ncc_chance == 0.5                      # the largest class holds 6 of 12
    # the baseline: the same cross-validation on 4 seeded label permutations, averaged
    perms = [np.random.default_rng([0, i]).permutation(labels) for i in range(4)]
    expected = np.mean([sklearn_ncc(signal, p, 3, 0)[0] for p in perms])
    assert layer.ncc_shuffled == pytest.approx(expected, abs=1e-12) and layer.ncc_shuffled < 0.8
    assert layer.ncc_shuffles == 4
    assert layer.influential_mean == pytest.approx(1.5) and layer.influential_median == 1.5
    assert not layer.collapsed                          # class 0's hyperedge has 2 neurons
    row = layer.to_frame().iloc[0]
    assert list(layer.to_frame().columns) == COLUMNS
    assert (row.ncc_chance, row.ncc_shuffled, row.collapsed) == (0.5, layer.ncc_shuffled, False)
    # identical inputs: every centroid is the same point, NCC always says class 0, as chance does
    flat = _separate(LayerData("L", np.arange(12), labels, np.ones((12, 3)), mask, mask * 1.0, *common), 0.5, 3, 0,
                     None)
    assert flat.ncc_accuracy == 0.5 and flat.ncc_shuffled == 0.5 == flat.ncc_chance
    none = _separate(LayerData("L", np.arange(12), labels, signal, mask, mask * 1.0, *common), 0.5, 3, 0, None,
                     shuffles=0)
    assert math.isnan(none.ncc_shuffled) and none.ncc_shuffles == 0 and none.ncc_accuracy == 1.0


def test_collapse_flag_when_every_class_hyperedge_has_one_neuron():
    labels = np.repeat(np.arange(3), 4)
    mask = np.zeros((12, 5), bool)
    mask[np.arange(12), labels] = True                 # each class: its own single neuron
    mask[::4, 4] = True                                  # one input per class also has neuron 4 (share ¼ < ½)
    rng = np.random.default_rng(1)
    common = (np.zeros(5, np.int64), np.arange(5), np.ones(5), tuple(f"L:{k}" for k in range(5)), ("a", "b", "c"))
    layer = _separate(LayerData("L", np.arange(12), labels, rng.normal(size=(12, 5)), mask, mask * 1.0, *common),
                      0.5, 3, 0, None)
    assert layer.incidence.sizes.tolist() == [1, 1, 1] and layer.collapsed
    assert layer.to_frame().iloc[0].collapsed and layer.to_frame().iloc[0].mean_size == 1.0
    assert layer.influential_mean == pytest.approx(15 / 12) and layer.influential_median == 1.0
    mask[:4, 3] = True                                   # class 0's hyperedge gets a second neuron: mean 4/3
    wider = _separate(LayerData("L", np.arange(12), labels, rng.normal(size=(12, 5)), mask, mask * 1.0, *common),
                      0.5, 3, 0, None)
    assert wider.incidence.sizes.tolist() == [2, 1, 1] and not wider.collapsed
    nothing = np.zeros((12, 5), bool)                    # no hyperedge at all: nothing collapsed, NaN size
    empty = _separate(LayerData("L", np.arange(12), labels, rng.normal(size=(12, 5)), nothing, nothing * 1.0,
                                *common), 0.5, 3, 0, None)
    assert not empty.collapsed and empty.influential_mean == 0.0 and math.isnan(empty.modularity)
