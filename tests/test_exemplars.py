"""Exemplars: equal to a brute-force sort of the SignalTable; images fetched by id."""

import numpy as np
import pandas as pd
import pytest
import torch

from convsvd import zoo
from convsvd.data import load_digits
from convsvd.errors import InputError
from convsvd.features import exemplars, fetch_inputs
from convsvd.signals import profile, signals


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    # small batches and shards: the streaming top-k must merge many batches
    return profile(zoo.load("digits-cnn"), "digits:test", layers="conv2,fc1", batch_size=32, shard_size=64,
                   out=tmp_path_factory.mktemp("profile"))


def _brute_force(frame, k, largest):
    frame = frame.sort_values(["group", "neuron", "signal", "id"], ascending=[True, True, not largest, True],
                              kind="mergesort")
    return frame.groupby(["group", "neuron"], sort=True).head(k)


@pytest.mark.parametrize("layer", ["conv2", "fc1"])
def test_exemplars_equal_a_brute_force_sort_of_the_table(table, layer):
    k = 7
    ex = exemplars(table, layer, k=k)
    frame = table.to_frame(layer=layer)
    got = ex.to_frame()
    for side, largest in (("top", True), ("bottom", False)):
        want = _brute_force(frame, k, largest)
        mine = got[got.side == side]
        assert mine.id.tolist() == want.id.tolist()
        assert mine.label.tolist() == want.label.tolist()
        np.testing.assert_array_equal(mine.signal.to_numpy(), want.signal.to_numpy().astype(np.float64))
        assert mine.groupby("neuron").size().eq(k).all()
    assert len(ex) == 2 * k * frame.neuron.nunique()
    assert got.columns.tolist() == ["layer", "group", "neuron", "side", "rank", "id", "label", "signal"]


def test_neuron_selection_order_and_a_dataframe_source(table):
    ex = exemplars(table, "fc1", k=3, neurons=[5, 2])
    assert ex.neurons() == [(0, 5), (0, 2)]
    same = exemplars(table.to_frame(layer="fc1"), "fc1", k=3, neurons=[5, 2])
    pd.testing.assert_frame_equal(ex.to_frame(), same.to_frame())


def test_ties_are_broken_by_id_and_nan_is_left_out():
    frame = pd.DataFrame(dict(id=[9, 3, 5, 1, 7], layer="c", neuron=0, label=[0, 1, 2, 3, 4],
                              signal=[1.0, 1.0, np.nan, -2.0, -2.0]))
    ex = exemplars(frame, "c", k=2)
    assert ex.ids[ex.side == "top"].tolist() == [3, 9]
    assert ex.ids[ex.side == "bottom"].tolist() == [1, 7]
    # Signals.to_frame() names the id column "input"
    model = zoo.load("digits-cnn")
    sig = signals(model, load_digits("test").images[:20], layers="conv1").to_frame()
    ex2 = exemplars(sig, "conv1", k=2, neurons=0)
    top = sig[sig.neuron == 0].sort_values("signal", ascending=False).input.head(2).tolist()
    assert ex2.ids[ex2.side == "top"].tolist() == top and (ex2.labels == -1).all()


def test_images_are_fetched_by_id(table):
    data = load_digits("test")  # ids are scikit-learn indices, not positions
    ex = exemplars(table, "conv2", k=4, neurons=[0, 1], data="digits:test")
    pos = {int(i): p for p, i in enumerate(data.ids.tolist())}
    want = data.images[[pos[int(i)] for i in ex.ids]]
    assert torch.equal(ex.images, want)
    assert ex.classes == [str(d) for d in range(10)]
    assert torch.equal(fetch_inputs(data, [int(data.ids[5]), int(data.ids[0])]), data.images[[5, 0]])
    with pytest.raises(InputError, match=r"ids \[1\]: not in dataset"):
        fetch_inputs("digits:test", [1] if 1 not in pos else [next(i for i in range(2000) if i not in pos)])


def test_bad_inputs_give_one_line_errors(table):
    for kw, pattern in [(dict(layer="conv3"), "layer 'conv3'"), (dict(neurons=[64]), r"neurons \[64\]"),
                        (dict(k=0), "k 0")]:
        args = dict(layer="fc1") | kw
        with pytest.raises(InputError, match=pattern) as info:
            exemplars(table, args.pop("layer"), **args)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="SignalTable or a pandas DataFrame"):
        exemplars([1, 2], "fc1")


@pytest.mark.slow  # exemplars of a dataset and figures
def test_exemplar_figures_are_drawn(table, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from convsvd.features import featureviz, singular_filters
    from convsvd.viz import features_figure, plot_exemplars

    ex = exemplars(table, "conv2", k=5, neurons=[0, 1, 2], data="digits:test")
    ax = plot_exemplars(ex)
    ax.figure.savefig(tmp_path / "ex.png", dpi=40)
    img = mpimg.imread(tmp_path / "ex.png")
    w, h = ax.figure.get_size_inches()
    assert abs(img.shape[0] - h * 40) < 1 and abs(img.shape[1] - w * 40) < 1 and img[..., :3].std() > 0.05
    assert [t.get_text() for t in ax.get_yticklabels()] == ["n0", "n1", "n2"]
    plt.close(ax.figure)

    model = zoo.load("digits-cnn")
    fv = featureviz(model, "conv2", [0, 1, 2], steps=8, size=8)
    fig = features_figure(fv, ex, singular_filters(model, "conv2"))
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "all.png", dpi=40)
    assert mpimg.imread(tmp_path / "all.png")[..., :3].std() > 0.05
    plt.close(fig)
    with pytest.raises(InputError, match="no images"):
        plot_exemplars(exemplars(table, "conv2", k=2, neurons=[0]))


def test_maps_show_where_each_exemplars_neuron_fires_and_average_to_its_signal(table):
    from convsvd.features import attach_maps
    from convsvd.signals import signal_maps
    from convsvd.viz import features_figure

    model = zoo.load("digits-cnn")
    ex = attach_maps(exemplars(table, "conv2", k=2, neurons=[3, 0], data="digits:test"), model)
    assert ex.maps is not None and ex.maps.shape[0] == len(ex) and ex.maps.ndim == 3
    # the mean over locations is the profiled (mean-aggregated) signal of that row's neuron
    np.testing.assert_allclose(ex.maps.mean(axis=(1, 2)), ex.signal, rtol=1e-5, atol=1e-6)
    full = signal_maps(model, ex.images, layers="conv2")["conv2"]
    for row in range(len(ex)):
        np.testing.assert_array_equal(ex.maps[row], full[row, ex.group[row], ex.neuron[row]].double().numpy())
    assert ex.class_name(0) == str(ex.labels[0]) or ex.class_name(0) == ex.classes[ex.labels[0]]
    # a linear layer has no map: returned unchanged
    assert attach_maps(exemplars(table, "fc1", k=1, neurons=[0], data="digits:test"), model).maps is None
    fig = features_figure(exemplars=ex)
    shown = {t.get_text() for t in fig.axes[0].texts}
    assert {ex.class_name(i) for i in range(len(ex))} <= shown  # every exemplar carries its class


def test_several_layers_at_once_equal_one_layer_at_a_time_with_one_read_and_one_model_pass(table):
    """exemplars_of_layers = exemplars + attach_maps per layer, for one read of the data and one pass of the model."""
    from convsvd.data import as_source
    from convsvd.features import attach_maps, exemplars_of_layers

    model = zoo.load("digits-cnn")
    wanted = {"conv2": [3, 0], "fc1": [1]}
    source = as_source("digits:test")
    reads: list[int] = []

    class Counting:  # the same source, counting the batches read
        def __getattr__(self, name):
            return getattr(source, name)

        def iter_batches(self, batch_size, which=None):
            for b, batch in source.iter_batches(batch_size, which):
                reads.append(b)
                yield b, batch

    calls: list[int] = []
    hook = model.conv1.register_forward_hook(lambda m, i, o: calls.append(int(o.shape[0])))
    try:
        both = exemplars_of_layers(table, wanted, k=3, data=Counting(), model=model, batch_size=5)
    finally:
        hook.remove()
    assert list(both) == ["conv2", "fc1"]
    for layer, neurons in wanted.items():
        one = exemplars(table, layer, k=3, neurons=neurons, data="digits:test")
        got = both[layer]
        for name in ("ids", "labels", "group", "neuron", "side", "rank", "signal"):
            np.testing.assert_array_equal(getattr(got, name), getattr(one, name))
        assert torch.equal(got.images, one.images) and got.classes == one.classes
        if layer == "conv2":
            np.testing.assert_allclose(got.maps, attach_maps(one, model).maps, rtol=1e-6, atol=1e-6)
        else:
            assert got.maps is None  # a linear layer has no map
    distinct = len(np.unique(np.concatenate([both[layer].ids for layer in wanted])))
    assert len(reads) == len(set(reads))  # no batch of the data read twice
    assert sum(calls) == distinct and max(calls) <= 5  # the model ran once over the distinct images, 5 at a time
    assert exemplars_of_layers(table, wanted, k=3)["conv2"].images is None  # no data: no images


def test_large_tiles_are_shrunk_antialiased_and_small_ones_enlarged() -> None:
    """Montages of 224-px inputs are drawn at most _MAX_TILE_PX a tile (the page shows them smaller)."""
    from convsvd.viz.features import _MAX_TILE_PX, _TILE_PX, _enlarge, _Grid

    rng = np.random.default_rng(0)
    big = rng.random((224, 224, 3))
    small = _enlarge(big, _MAX_TILE_PX)
    assert small.shape == (_MAX_TILE_PX, _MAX_TILE_PX, 3) and 0 <= small.min() and small.max() <= 1
    assert abs(small.mean() - big.mean()) < 0.01 and small.std() < big.std()  # averaged, not subsampled
    tiny = rng.random((8, 8, 3))
    assert np.array_equal(_enlarge(tiny, 32)[::4, ::4], tiny)  # nearest-neighbour enlargement, exact
    grid = _Grid()
    grid.add("n0", [[big, big]])
    img, _, _, T = grid.render()
    assert T == _MAX_TILE_PX and img.shape[0] == _MAX_TILE_PX and _TILE_PX < T


def test_a_long_class_name_stays_inside_its_tile() -> None:
    """An exemplar's class label is cut at its tile's right edge: nothing of it reaches the next tile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd.viz.features import _Grid

    tile = np.full((64, 64, 3), 0.5)

    def draw(first: str) -> tuple[np.ndarray, int]:
        """The figure's pixels, and the first pixel column right of the first tile."""
        grid = _Grid()
        grid.add("top", [[tile, tile]], [[first, ""]] if first else None)
        fig, ax = plt.subplots(figsize=(4, 2.5))
        grid.draw(ax, "")
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
        x0, _, _, T = grid.tile_corners[0] + (grid.render()[3],) if first else (0, 0, "", 0)
        edge = int(np.ceil(ax.transData.transform([(x0 + T - 0.5, 0)])[0][0])) + 1
        plt.close(fig)
        return rgb, edge

    labelled, edge = draw("immunohistochemistry_and_more")
    plain, _ = draw("")
    assert not np.array_equal(labelled[:, :edge], plain[:, :edge])  # the label is drawn in its tile
    assert np.array_equal(labelled[:, edge:], plain[:, edge:])  # and nothing of it right of the tile
