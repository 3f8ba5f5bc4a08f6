"""Figures of class hypergraphs: what is drawn is the result object's data; degenerate layers draw a message."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import EllipseCollection, PolyCollection  # noqa: E402

from convsvd.errors import InputError  # noqa: E402
from convsvd.hypergraph import class_separation  # noqa: E402
from convsvd.viz import plot_class_hypergraph, plot_class_overlap, plot_incidence, plot_separation  # noqa: E402
from convsvd.viz.hypergraph import class_colours  # noqa: E402
from test_hypergraph import build_planted  # noqa: E402


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build_planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def result(planted):
    return class_separation(planted)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _png_bytes(fig) -> int:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return len(buf.getvalue())


def test_incidence_heat_map_shows_the_shares_and_marks_the_hyperedges(result):
    layer = result["a"]
    ax = plot_incidence(layer)
    np.testing.assert_allclose(ax.images[0].get_array(), layer.incidence.share)
    marks = ax.collections[0].get_offsets()
    r, c = np.nonzero(layer.incidence.member)
    assert sorted(map(tuple, np.asarray(marks).tolist())) == sorted(zip(c.tolist(), r.tolist()))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a:0", "a:1", "a:2", "a:3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C", "D"]
    # "active" drops the neurons no input has as influential; "all" keeps them
    d = result["d"]
    assert plot_incidence(d, neurons="all").images[0].get_array().shape == (4, 3)
    with pytest.raises(InputError, match="neurons 'some'"):
        plot_incidence(layer, neurons="some")


def test_overlap_matrix_is_the_jaccard_matrix_with_empty_classes_grey(result):
    layer = result["b"]  # C and D have empty hyperedges
    fig, ax = plt.subplots()
    assert plot_class_overlap(layer, ax=ax) is ax
    shown = ax.images[0].get_array()
    assert shown.mask.tolist() == np.isnan(layer.overlap).tolist()
    np.testing.assert_allclose(shown.filled(np.nan), layer.overlap, equal_nan=True)
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1"]  # A–A, A–B, B–A, B–B
    assert "mean 1" in ax.get_title()


@pytest.mark.slow  # a HyperNetX drawing
def test_class_hypergraph_drawing_has_one_coloured_band_per_class_and_a_vertex_per_neuron(result):
    ax = plot_class_hypergraph(result["a"])
    bands = [c for c in ax.collections if isinstance(c, PolyCollection) and not isinstance(c, EllipseCollection)]
    vertices = [c for c in ax.collections if isinstance(c, EllipseCollection)]
    assert len(bands) == 1 and len(bands[0].get_paths()) == 4  # A, B, C, D (D: its one input's set)
    assert len(vertices) == 1 and len(vertices[0].get_offsets()) == 4
    colours = class_colours(4)
    np.testing.assert_allclose(bands[0].get_edgecolors(), np.array(colours)[:, :4])
    assert {t.get_text() for t in ax.texts} == {"a:0", "a:1", "a:2", "a:3"}
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["A", "B", "C", "D"]
    np.testing.assert_allclose([h.get_color() for h in legend.legend_handles], colours)
    labelled = plot_class_hypergraph(result["a"], edge_labels=True, node_labels=False)
    assert {t.get_text() for t in labelled.texts} == {"A", "B", "C", "D"}
    assert _png_bytes(ax.figure) < 200_000


def test_degenerate_layers_draw_without_error(planted, result):
    abc = class_separation(planted, classes=["A", "B", "C"], layers=["d"])
    ax = plot_class_hypergraph(abc["d"])  # no hyperedge at all
    assert not ax.axison and "no SVD neuron reaches the share 0.5" in ax.texts[0].get_text()
    ax = plot_class_hypergraph(result["b"])  # one SVD neuron; C and D empty
    assert "no hyperedge: class C, D" in ax.get_title()
    plot_incidence(abc["d"])
    assert np.ma.getmaskarray(plot_class_overlap(abc["d"]).images[0].get_array()).all()
    one = class_separation(planted, classes=["A"])  # one class: NaN metrics
    assert plot_class_overlap(one["a"]).images[0].get_array().tolist() == [[1.0]]
    fig = plot_separation(one)
    assert np.isnan(fig.axes[0].lines[0].get_ydata()).all()


@pytest.mark.slow  # separations of several runs and a figure
def test_separation_curves_draw_every_metric_of_every_run(planted, result):
    frame = result.to_frame()
    fig = plot_separation(result)
    axes = fig.axes
    assert len(axes) == 6
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("mean Jaccard") and titles[4].startswith("NCC")
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), frame["jaccard_mean"], equal_nan=True)
    np.testing.assert_allclose(axes[3].lines[0].get_ydata(), frame["modularity"])
    for s, line in zip((1, 2, 3), axes[2].lines):
        np.testing.assert_allclose(line.get_ydata(), frame[f"components_s{s}"], equal_nan=True)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["a", "b", "c", "d"]
    two = plot_separation({"all": result, "first two": class_separation(planted, layers=["a", "b"])})
    assert len(two.axes[4].lines) == 2 and len(two.axes[2].lines) == 6
    np.testing.assert_allclose(two.axes[4].lines[1].get_xdata(), [0, 1])
    assert _png_bytes(fig) < 200_000
    with pytest.raises(InputError, match="expected a Separation"):
        plot_separation({"x": 1})
    with pytest.raises(InputError, match="expected 6 Axes"):
        plot_separation(result, axes=[axes[0]])
    with pytest.raises(InputError, match="expected a LayerSeparation"):
        plot_class_overlap(result)
