"""Projection and influence: the signal identities, against brute force and the reference definition."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convsvd.decompose import decompose
from convsvd.errors import InputError
from convsvd.signals import influence, plan_projection, signal_maps, signals, weight_ranking
from convsvd.signals.project import AGGREGATIONS


def _net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1),            # 0
        nn.ReLU(inplace=True),
        nn.Conv2d(6, 8, 3, padding=2, dilation=2, groups=2),  # 2: grouped, dilated
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=8, bias=False),             # 4: depthwise, no bias
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),                              # 6
        nn.ReLU(),
        nn.Linear(5, 3),                                      # 8
    ).double().eval()


def _layer_inputs(net: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input of every conv/linear layer, by running the Sequential step by step (no hooks)."""
    ins = {}
    h = x
    with torch.no_grad():
        for i, m in enumerate(net):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                ins[str(i)] = h.clone()
            h = m(h)
    return ins


def _brute_maps(net: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """σ_i v_iᵀ patch_p(x) with F.unfold, per group: (N, g, r, L)."""
    dec = decompose(net, dtype=torch.float64, device="cpu")
    out = {}
    for name, xin in _layer_inputs(net, x).items():
        m = net[int(name)]
        l = dec[name]
        if isinstance(m, nn.Linear):
            patches = xin.unsqueeze(1).unsqueeze(-1)  # (N, 1, in, 1)
        else:
            cols = F.unfold(xin, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            patches = cols.reshape(xin.shape[0], m.groups, -1, cols.shape[-1])  # (N, g, c/g·k·k, L)
        sv = l.S.unsqueeze(-1) * l.Vh  # (g, r, n): rows σ_i v_iᵀ
        out[name] = torch.einsum("grn,bgnl->bgrl", sv, patches)
    return out


def _aggregate(maps: torch.Tensor, how: str) -> torch.Tensor:
    return {"mean": maps.mean(-1), "max": maps.amax(-1), "abs": maps.abs().mean(-1),
            "l2": maps.pow(2).sum(-1).sqrt()}[how]


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_signals_equal_sigma_v_patch(how):
    net = _net()
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64)
    brute = _brute_maps(net, x)
    got = signals(net, x, aggregate=how).values
    assert list(got) == ["0", "2", "4", "6", "8"]
    for name, maps in brute.items():
        torch.testing.assert_close(got[name], _aggregate(maps, how), rtol=0, atol=1e-10)
        assert got[name].abs().max() > 1e-3  # not trivially zero


def test_signal_maps_equal_sigma_v_patch_at_every_location():
    net = _net()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    brute = _brute_maps(net, x)
    maps = signal_maps(net, x)
    assert maps["0"].shape == (2, 1, 6, 5, 5) and maps["2"].shape == (2, 2, 4, 5, 5)
    assert maps["6"].shape == (2, 1, 5)
    for name, b in brute.items():
        torch.testing.assert_close(maps[name].reshape(b.shape), b, rtol=0, atol=1e-10)


def test_reference_definition_one_image_at_a_time():
    """DeepDataProfiler's definition: Uᵀ(y − b) of the layer's output, one image at a time, mean over locations."""
    net = _net()
    x = torch.randn(5, 3, 9, 9, dtype=torch.float64)
    got = signals(net, x, layers="0,6,8").values
    for name in ("0", "6", "8"):
        layer = net[int(name)]
        W = layer.weight.detach().flatten(1)
        U, _, _ = torch.linalg.svd(W, full_matrices=False)
        U = U * torch.sign(U[U.abs().argmax(0), torch.arange(U.shape[1])])  # the documented sign convention
        for i in range(x.shape[0]):
            xin = _layer_inputs(net, x[i:i + 1])[name]
            y = layer(xin).squeeze(0)
            y = y.reshape(y.shape[0], -1) if y.dim() > 1 else y.unsqueeze(1)
            ref = (U.T @ (y - layer.bias.detach().unsqueeze(1))).sum(1) / y.shape[1]
            torch.testing.assert_close(got[name][i, 0], ref, rtol=0, atol=1e-10)


def test_batch_equals_one_at_a_time():
    net = _net()
    x = torch.randn(6, 3, 9, 9, dtype=torch.float64)
    plan = plan_projection(net)
    whole = signals(net, x, aggregate="max", plan=plan).values
    single = [signals(net, x[i:i + 1], aggregate="max", plan=plan).values for i in range(6)]
    for name, v in whole.items():
        torch.testing.assert_close(v, torch.cat([s[name] for s in single]), rtol=0, atol=1e-12)


def test_grouped_conv_projects_each_group_on_its_own():
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 9, 3, groups=3).double()
    x = torch.randn(2, 6, 6, 6, dtype=torch.float64)
    v = signals(conv, x).values["<root>"]  # (N, g, r)
    assert v.shape == (2, 3, 3)
    x2 = x.clone()
    x2[:, 2:4] += torch.randn(2, 2, 6, 6, dtype=torch.float64)  # change only group 1's input channels
    v2 = signals(conv, x2).values["<root>"]
    torch.testing.assert_close(v2[:, [0, 2]], v[:, [0, 2]], rtol=0, atol=1e-12)
    assert (v2[:, 1] - v[:, 1]).abs().max() > 1e-3
    # each group against its own SVD of W̄_j
    dec = decompose(conv, dtype=torch.float64)["<root>"]
    y = conv(x).reshape(2, 3, 3, -1) - conv.bias.detach().reshape(3, 3, 1)
    for j in range(3):
        ref = (dec.U[j].T @ y[:, j]).mean(-1)
        torch.testing.assert_close(v[:, j], ref, rtol=0, atol=1e-10)


def test_folded_batchnorm_projects_the_batchnorm_output():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2)).double()
    bn = net[1]
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    net.eval()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    got = signals(net, x, fold_bn=True, aggregate="l2").values["0"]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    W = (net[0].weight * scale.reshape(-1, 1, 1, 1)).detach().flatten(1)
    b = ((net[0].bias - bn.running_mean) * scale + bn.bias).detach()
    U, S, Vh = torch.linalg.svd(W)
    y = bn(net[0](x)).detach().reshape(3, 4, -1)
    ref = torch.linalg.vector_norm(U.T @ (y - b.reshape(4, 1)), dim=-1)
    torch.testing.assert_close(got[:, 0], ref, rtol=0, atol=1e-10)
    # and without folding the conv's own output is projected on the conv's own U
    plain = signals(net, x, aggregate="l2").values["0"]
    assert (plain - got).abs().max() > 1e-3


def test_transposed_conv_is_listed_not_profiled():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 1, 3))
    plan = plan_projection(net)
    assert list(plan.projectors) == ["0"]
    assert plan.not_profiled[0][0] == "1" and "transposed" in plan.not_profiled[0][1]
    with pytest.raises(InputError, match="transposed"):
        plan_projection(net, layers="1")


def test_layer_pattern_that_matches_nothing():
    with pytest.raises(InputError, match=r"layer pattern 'conv9\*'.*matches no layer") as e:
        plan_projection(_net(), layers="conv9*")
    assert "\n" not in str(e.value)


def test_linear_layer_on_sequences_has_one_location_per_position():
    torch.manual_seed(5)
    lin = nn.Linear(4, 3).double()
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    maps = signal_maps(lin, x)["<root>"]
    assert maps.shape == (2, 1, 3, 7)
    dec = decompose(lin, dtype=torch.float64)["<root>"]
    ref = torch.einsum("mr,btm->brt", dec.U[0], lin(x) - lin.bias)
    torch.testing.assert_close(maps[:, 0], ref, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- influence


def _influence_brute(row: list[float], threshold: float) -> set[int]:
    order = sorted(range(len(row)), key=lambda i: (-abs(row[i]), i))
    total = sum(abs(v) for v in row)
    chosen, acc = set(), 0.0
    for i in order:
        if total == 0 or acc / total >= threshold:
            break
        chosen.add(i)
        acc += abs(row[i])
    return chosen


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_influence_is_the_smallest_set_reaching_the_threshold(threshold):
    g = torch.Generator().manual_seed(7)
    v = torch.randn(50, 12, generator=g, dtype=torch.float64) * torch.rand(50, 12, generator=g, dtype=torch.float64) ** 3
    inf = influence(v, threshold=threshold)
    for n in range(50):
        want = _influence_brute(v[n].tolist(), threshold)
        assert set(torch.nonzero(inf.mask[n]).flatten().tolist()) == want
        assert inf.count[n] == len(want)
        share = v[n].abs()[inf.mask[n]].sum() / v[n].abs().sum()
        assert share >= threshold - 1e-12
        torch.testing.assert_close(inf.weight[n].sum(), torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(inf.weight[n][inf.mask[n]], v[n].abs()[inf.mask[n]] / v[n].abs()[inf.mask[n]].sum())
        assert torch.all(inf.weight[n][~inf.mask[n]] == 0)


def test_influence_matches_the_reference_rule_away_from_exact_ties():
    """DeepDataProfiler's set: neurons whose cumulative share ≤ threshold, plus one more."""
    g = torch.Generator().manual_seed(8)
    v = torch.randn(40, 9, generator=g, dtype=torch.float64)
    inf = influence(v, threshold=0.25)
    a = v.abs()
    srt, order = torch.sort(a, dim=1, descending=True)
    share = srt.cumsum(1) / srt.sum(1, keepdim=True)
    accept = (share <= 0.25).sum(1) + 1
    for n in range(40):
        assert set(order[n, : accept[n]].tolist()) == set(torch.nonzero(inf.mask[n]).flatten().tolist())


def test_influence_top_k_zero_rows_and_ties():
    v = torch.tensor([[1.0, -3.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    top = influence(v, top_k=2)
    assert top.mask[0].tolist() == [False, True, True, False]  # tie broken by index: both 3s
    torch.testing.assert_close(top.weight[0], torch.tensor([0.0, 0.5, 0.5, 0.0]))
    assert top.mask[1].sum() == 2 and top.weight[1].sum() == 0
    thr = influence(v, threshold=0.1)
    assert thr.mask[0].tolist() == [False, True, False, False]  # the first of the tied 3s
    assert thr.count[1] == 0 and not thr.mask[1].any()
    assert influence(v, top_k=10).mask[0].all()


def test_influence_options_are_checked():
    v = torch.ones(2, 3)
    for kwargs, msg in [(dict(threshold=0.0), "threshold"), (dict(threshold=1.5), "threshold"),
                        (dict(top_k=0), "top_k"), (dict(threshold=0.2, top_k=2), "not both")]:
        with pytest.raises(InputError, match=msg):
            influence(v, **kwargs)


def test_weight_ranking_shares():
    net = _net()
    dec = decompose(net, dtype=torch.float64)
    ranks = weight_ranking(dec)
    for name, l in dec.items():
        part = ranks[ranks.layer == name]
        assert len(part) == l.S.numel()
        assert part.sigma.is_monotonic_decreasing
        assert part.cumulative_share.iloc[-1] == pytest.approx(1.0, abs=1e-12)
        assert part.energy_share.iloc[0] == pytest.approx(float(l.S.max() ** 2 / l.fro2.sum()))
    top = weight_ranking(dec, top_k=2)
    assert top.groupby("layer").size().max() == 2


# --------------------------------------------------------------------------- the dense store against a direct reference


def _reference(model: nn.Module, source, batch_size: int, threshold: float | None = None, top_k: int | None = None):
    """Signals computed directly with :func:`signals`, batch by batch as a run does; influence per batch as the
    row-per-pair store computed it. ``{site: (ids, labels, signal, mask, weight)}`` as numpy, ids ascending."""
    import numpy as np

    plan = plan_projection(model)
    parts: dict[str, list] = {}
    for _, (ids, x, labels) in source.iter_batches(batch_size):
        for site, v in signals(model, x, plan=plan).values.items():
            v = v.reshape(v.shape[0], -1)
            inf = influence(v, threshold, top_k)
            parts.setdefault(site, []).append((ids.numpy(), labels.numpy(), v.numpy(), inf.mask.numpy(), inf.weight.numpy()))
    out = {}
    for site, ps in parts.items():
        cols = [np.concatenate([p[i] for p in ps]) for i in range(5)]
        order = np.argsort(cols[0], kind="stable")
        out[site] = tuple(c[order] for c in cols)
    return out


def _sorted(m):
    import numpy as np

    order = np.argsort(m.ids, kind="stable")
    return m.ids[order], m.labels[order], m.signal[order], m.mask[order], m.weight[order]


def _depthwise_net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 6, 3, groups=6), nn.ReLU(),       # depthwise
        nn.Conv2d(6, 8, 3, groups=2), nn.ReLU(),       # grouped
        nn.Flatten(), nn.Linear(8 * 4 * 4, 4),
    ).eval()


@pytest.mark.parametrize("which", ["digits-cnn", "depthwise"])
def test_store_gives_the_signals_influence_and_weights_of_a_direct_computation_bitwise(tmp_path, which):
    import numpy as np

    from convsvd import zoo
    from convsvd.data import ArrayData, as_source
    from convsvd.signals import profile

    if which == "digits-cnn":
        model, source = zoo.load("digits-cnn"), as_source("digits:test")
    else:
        g = torch.Generator().manual_seed(4)
        model = _depthwise_net()
        source = ArrayData(torch.randn(70, 1, 8, 8, generator=g), torch.arange(70) % 4, name="random")
    table = profile(model, source, batch_size=32, shard_size=64, out=tmp_path / "run", threshold=0.2)
    ref = _reference(model, source, 32, threshold=0.2)
    assert table.layers == list(ref) and table.n_inputs == len(next(iter(ref.values()))[0])
    for site, (ids, labels, signal, mask, weight) in ref.items():
        m = table.matrix(site)
        assert m.signal.dtype == np.float32 and m.weight.dtype == np.float32
        got = _sorted(m)
        assert np.array_equal(got[0], ids) and np.array_equal(got[1], labels)
        assert np.array_equal(got[2], signal)   # bitwise
        assert np.array_equal(got[3], mask)
        assert np.array_equal(got[4], weight)   # bitwise
        info = next(l for l in table.manifest["layers"] if l["layer"] == site)
        assert info["mean_influential"] == pytest.approx(mask.sum() / len(ids))
        sigma = plan_projection(model).projectors[site.split("#")[0]].sigma.reshape(-1).double().numpy()
        assert np.array_equal(m.sigma, sigma)
        # the long frame is the same numbers, one row per (input, neuron)
        frame = table.layer(site).sort_values(["id", "group", "neuron"])
        assert np.array_equal(frame.signal.to_numpy().reshape(signal.shape), signal)
        assert np.array_equal(frame.influential.to_numpy().reshape(mask.shape), mask)
    # bytes on disk: 4 per (input, SVD neuron) plus a small constant per input
    K = sum(int(l["neurons"]) for l in table.manifest["layers"])
    size = sum(f.stat().st_size for f in table.files)
    assert 4 * K * table.n_inputs < size < (4 * K + 64) * table.n_inputs + 64 * 1024 * len(table.files)


def test_store_float16_is_within_its_rounding_and_half_the_size(tmp_path):
    import numpy as np

    from convsvd import zoo
    from convsvd.data import as_source
    from convsvd.signals import profile

    model, source = zoo.load("digits-cnn"), as_source("digits:test")
    t32 = profile(model, source, batch_size=64, shard_size=512, out=tmp_path / "f32")
    t16 = profile(model, source, batch_size=64, shard_size=512, out=tmp_path / "f16", store_dtype="float16")
    assert t16.manifest["options"]["store_dtype"] == "float16"
    same_sets = []
    for site in t32.layers:
        a, b = t32.matrix(site), t16.matrix(site)
        assert b.signal.dtype == np.float16 and np.array_equal(a.ids, b.ids)
        # documented tolerance: float16 rounding, relative 2^-11 (absolute 2^-25 below its smallest normal)
        np.testing.assert_allclose(b.signal.astype(np.float32), a.signal, rtol=2**-11, atol=2**-25)
        same_sets.append((a.mask == b.mask).all(axis=1).mean())
    assert min(same_sets) >= 0.95  # influential sets of the rounded signals: the same for almost every input
    size32 = sum(f.stat().st_size for f in t32.files)
    size16 = sum(f.stat().st_size for f in t16.files)
    assert size16 < 0.6 * size32


def test_old_layout_is_refused_with_one_line(tmp_path):
    import json

    from convsvd.signals import SignalTable

    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard-000000.parquet").write_bytes(b"PAR1")
    (tmp_path / "manifest.json").write_text(json.dumps(dict(format="convsvd-signals/1", status="complete", shards=[])))
    with pytest.raises(InputError, match=r"old layout \(convsvd-signals/1.*run profile again with --restart") as e:
        SignalTable.open(tmp_path)
    assert "\n" not in str(e.value)
