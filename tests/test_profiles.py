"""Attribution profiles against a brute-force reference of the definitions (explicit loops), on tiny seeded models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convsvd.decompose import decompose
from convsvd.errors import InputError
from convsvd.profiles import Profiler, layer_graph
from convsvd.profiles.build import _svd_basis

# --------------------------------------------------------------------------- models


def seq_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, groups=2, stride=1, dilation=1), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 4, 2, stride=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double().eval()


class Functional(nn.Module):
    """A residual block, a concatenation and a strided dilated conv, called through a functional forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.a = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.b = nn.Conv2d(3, 2, 1)
        self.c = nn.Conv2d(5, 4, 3, stride=2, padding=3, dilation=2, groups=1)
        self.fc1 = nn.Linear(4 * 2 * 2, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = x + self.a(x)
        z = torch.cat([F.relu(y), self.b(x)], dim=1)
        z = F.max_pool2d(F.relu(self.c(z)), 2, 1)
        z = F.adaptive_avg_pool2d(z, 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(z, 1))))


def functional_model() -> nn.Module:
    torch.manual_seed(2)
    return Functional().double().eval()


def inputs(shape: tuple[int, ...], n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


MODELS = {"sequential": (seq_model, (2, 8, 8)), "functional": (functional_model, (1, 6, 6))}

# --------------------------------------------------------------------------- reference: element coefficients


def _windows(n_in: int, n_out: int, k: int, s: int, pad: int, dil: int) -> list[list[int]]:
    return [[p * s - pad + t * dil for t in range(k)] for p in range(n_out)]


def coefficients(layer, in_layers, xs):  # type: ignore[no-untyped-def]
    """For one input: ``{out element (c, h, w): [(operand, (c', h', w'), coef)]}`` with ``y = Σ coef·x (+ bias)``."""
    C, H, W = layer.shape
    out: dict[tuple[int, int, int], list] = {}  # type: ignore[type-arg]
    kind = layer.kind
    if kind == "linear":
        Wt = layer.module.weight.detach()
        c0, h0, w0 = in_layers[0].shape
        for o in range(C):
            terms = []
            for j in range(c0 * h0 * w0):
                terms.append((0, (j // (h0 * w0), (j // w0) % h0, j % w0), float(Wt[o, j])))
            out[(o, 0, 0)] = terms
        return out
    if kind == "conv":
        m = layer.module
        Wt = m.weight.detach()
        g = m.groups
        cin = in_layers[0].shape[0]
        cg, og = cin // g, C // g
        _, Hi, Wi = in_layers[0].shape
        for o in range(C):
            grp = o // og
            for ph in range(H):
                for pw in range(W):
                    terms = []
                    for cl in range(cg):
                        for kh in range(m.kernel_size[0]):
                            for kw in range(m.kernel_size[1]):
                                ih = ph * m.stride[0] - m.padding[0] + kh * m.dilation[0]
                                iw = pw * m.stride[1] - m.padding[1] + kw * m.dilation[1]
                                if 0 <= ih < Hi and 0 <= iw < Wi:
                                    terms.append((0, (grp * cg + cl, ih, iw), float(Wt[o, cl, kh, kw])))
                    out[(o, ph, pw)] = terms
        return out
    if kind == "maxpool":
        x = xs[0][0]
        _, Hi, Wi = x.shape
        # kernel / stride recovered from the shapes of the test models: (k, s) = (2, 2) or (2, 1)
        s = 2 if Hi // 2 == H else 1
        for c in range(C):
            for ph in range(H):
                for pw in range(W):
                    cand = [(x[c, ph * s + a, pw * s + b].item(), (c, ph * s + a, pw * s + b))
                            for a in range(2) for b in range(2)]
                    best = max(cand, key=lambda t: t[0])
                    out[(c, ph, pw)] = [(0, best[1], 1.0)]
        return out
    if kind == "avgpool":
        _, Hi, Wi = in_layers[0].shape
        for c in range(C):
            for ph in range(H):
                for pw in range(W):
                    hs, he = math.floor(ph * Hi / H), math.ceil((ph + 1) * Hi / H)
                    ws, we = math.floor(pw * Wi / W), math.ceil((pw + 1) * Wi / W)
                    n = (he - hs) * (we - ws)
                    out[(c, ph, pw)] = [(0, (c, a, b), 1.0 / n) for a in range(hs, he) for b in range(ws, we)]
        return out
    if kind == "add":
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    out[(c, h, w)] = [(a, (c, h, w), 1.0) for a in range(len(in_layers))]
        return out
    if kind == "cat":
        off = 0
        for a, il in enumerate(in_layers):
            for c in range(il.shape[0]):
                for h in range(H):
                    for w in range(W):
                        out[(off + c, h, w)] = [(a, (c, h, w), 1.0)]
            off += il.shape[0]
        return out
    raise AssertionError(kind)


# --------------------------------------------------------------------------- reference: neurons and selection


def neuron_of(e: tuple[int, int, int], shape: tuple[int, int, int], ntype: str) -> int:
    c, h, w = e
    _, H, W = shape
    if ntype in ("channel", "svd"):
        return c
    if ntype == "spatial":
        return h * W + w
    return (c * H + h) * W + w


def n_neurons(shape: tuple[int, int, int], ntype: str) -> int:
    C, H, W = shape
    return {"channel": C, "svd": C, "spatial": H * W, "element": C * H * W}[ntype]


def select_share(vals: list[float], t: float) -> dict[int, float]:
    a = [abs(v) for v in vals]
    total = sum(a)
    if total == 0:
        return {}
    order = sorted(range(len(a)), key=lambda i: (-a[i], i))
    kept, cum = [], 0.0
    for i in order:
        kept.append(i)
        cum += a[i]
        if cum / total >= t:
            break
    s = sum(a[i] for i in kept)
    return {i: a[i] / s for i in kept}


def select_ddp(vals: list[float], t: float) -> dict[int, float]:
    v = [max(0.0, x) for x in vals]
    total = sum(v)
    if total == 0:
        return {}
    order = sorted(range(len(v)), key=lambda i: (-v[i], i))
    cum, kept = 0.0, []
    for i in order:
        cum += v[i]
        kept.append(i)
        if cum / total > t:
            break
    s = sum(v[i] for i in kept)
    return {i: v[i] / s for i in kept if v[i] > 0}


def reference(model: nn.Module, x: torch.Tensor, ntype: str, t: float = 0.1, rule: str = "share"):  # type: ignore[no-untyped-def]
    """Per input: ``(neurons {(layer, n): weight}, synapses {(layer, o, i): weight})`` by explicit loops."""
    g = layer_graph(model, x[:1])
    _, ins, _, heads = g.activations(x)
    layers = g.layers
    rot: dict[int, torch.Tensor] = {}
    if ntype == "svd":
        d = decompose(model, mode="full", device="cpu", dtype="float64")
        for l in layers:
            if l.kind in ("conv", "linear"):
                rot[l.index] = _svd_basis(d[l.name].U, l.channels)
    choose = select_share if rule == "share" else select_ddp
    results = []
    for b in range(x.shape[0]):
        xs = {k: [v[b:b + 1] for v in vals] for k, vals in ins.items()}
        co = {l.index: coefficients(l, [layers[i] for i in l.inputs], xs[l.index]) for l in layers if l.inputs}
        # every coefficient reproduces the layer's own output
        for l in layers:
            if not l.inputs or l.kind == "maxpool":
                continue
            bias = l.module.bias if l.module is not None and l.module.bias is not None else None
            for e, terms in co[l.index].items():
                y = sum(cf * float(xs[l.index][a][0][j].detach()) for a, j, cf in terms) + (float(bias[e[0]].detach()) if bias is not None else 0)
                assert abs(y - float(heads[l.index][b][e])) < 1e-9

        def xprime(k: int, a: int, j: tuple[int, int, int]) -> dict[int, float]:
            """Split input entry j of operand a into its neurons: {neuron: term of x[j]}."""
            il = layers[layers[k].inputs[a]]
            xv = xs[k][a][0]
            if ntype != "svd" or il.index not in rot:
                return {neuron_of(j, il.shape, ntype): float(xv[j])}
            Q = rot[il.index]
            c, h, w = j
            return {jj: float(Q[c, jj]) * float((Q[:, jj] * xv[:, h, w]).sum()) for jj in range(il.shape[0])}

        def contributions(k: int, n: int) -> list[float]:
            l = layers[k]
            offs = np.cumsum([0] + [n_neurons(layers[i].shape, ntype) for i in l.inputs])
            vals = [0.0] * int(offs[-1])
            for e, terms in co[k].items():
                if ntype == "svd" and k in rot:
                    wo = float(rot[k][e[0], n])
                else:
                    wo = 1.0 if neuron_of(e, l.shape, ntype) == n else 0.0
                if wo == 0.0:
                    continue
                for a, j, cf in terms:
                    for jj, xv in xprime(k, a, j).items():
                        vals[int(offs[a]) + jj] += wo * cf * xv
            return vals

        out_k = g.output
        logits = heads[out_k][b].reshape(-1)
        cls = int(logits.argmax())
        pending: dict[int, dict[int, float]] = {}
        if ntype == "svd" and out_k in rot:
            s = [sum(contributions(out_k, i)) for i in range(layers[out_k].channels)]
            pending[out_k] = choose([float(rot[out_k][cls, i]) * s[i] for i in range(len(s))], t)
        elif ntype == "spatial":
            pending[out_k] = {0: 1.0}
        else:
            pending[out_k] = {cls: 1.0}
        neurons: dict[tuple[str, int], float] = {}
        synapses: dict[tuple[str, int, int], float] = {}
        for k in reversed(range(len(layers))):
            if k not in pending:
                continue
            l = layers[k]
            for n, w in pending[k].items():
                neurons[(l.name, n)] = w
            if not l.inputs:
                continue
            offs = np.cumsum([0] + [n_neurons(layers[i].shape, ntype) for i in l.inputs])
            for n, w in pending[k].items():
                if ntype == "spatial" and k == out_k:
                    vals = [0.0] * int(offs[-1])
                    for a, j, cf in co[k][(cls, 0, 0)]:
                        vals[neuron_of(j, layers[l.inputs[a]].shape, "spatial")] += cf * float(xs[k][a][0][j])
                else:
                    vals = contributions(k, n)
                for i, s in choose(vals, t).items():
                    synapses[(l.name, n, i)] = s
                    a = int(np.searchsorted(offs, i, side="right") - 1)
                    src = l.inputs[a]
                    pending.setdefault(src, {})
                    pending[src][i - int(offs[a])] = pending[src].get(i - int(offs[a]), 0.0) + w * s
        results.append((neurons, synapses))
    return results


def ours(ps, b: int):  # type: ignore[no-untyped-def]
    neurons, synapses = {}, {}
    for l in ps.layers:
        row = ps.neuron_weights[l.name][b].tocoo()
        cnt = ps.neuron_counts[l.name][b].tocoo()
        assert set(cnt.col.tolist()) >= set(row.col.tolist())
        w = dict(zip(row.col.tolist(), row.data.tolist()))
        for n in cnt.col.tolist():
            neurons[(l.name, n)] = w.get(n, 0.0)
        if l.inputs:
            width = ps.synapse_counts[l.name].shape[1] // l.neurons
            sw = ps.synapse_weights[l.name][b].tocoo()
            for col, v in zip(sw.col.tolist(), sw.data.tolist()):
                synapses[(l.name, col // width, col % width)] = v
    return neurons, synapses


def assert_same(ref: dict, got: dict, what: str) -> None:  # type: ignore[type-arg]
    assert set(ref) == set(got), f"{what}: only in reference {sorted(set(ref) - set(got))[:5]}, only ours {sorted(set(got) - set(ref))[:5]}"
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), (what, k)


# --------------------------------------------------------------------------- tests


def test_graph_of_the_functional_model() -> None:
    model, shape = MODELS["functional"]
    g = layer_graph(model(), inputs(shape, 1))
    got = [(l.name, l.kind, tuple(g.layers[i].name for i in l.inputs), l.shape) for l in g.layers]
    assert got == [
        ("x_in", "input", (), (1, 6, 6)),
        ("stem", "conv", ("x_in",), (3, 6, 6)),
        ("a", "conv", ("stem",), (3, 6, 6)),
        ("add", "add", ("stem", "a"), (3, 6, 6)),
        ("b", "conv", ("stem",), (2, 6, 6)),
        ("cat", "cat", ("add", "b"), (5, 6, 6)),
        ("c", "conv", ("cat",), (4, 4, 4)),
        ("max_pool2d", "maxpool", ("c",), (4, 3, 3)),
        ("adaptive_avg_pool2d", "avgpool", ("max_pool2d",), (4, 2, 2)),
        ("fc1", "linear", ("adaptive_avg_pool2d",), (5, 1, 1)),
        ("fc2", "linear", ("fc1",), (3, 1, 1)),
    ]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("ntype", ["channel", "element", "spatial", "svd"])
@pytest.mark.slow  # the reference implementation on whole models
def test_profiles_equal_the_reference(name: str, ntype: str) -> None:
    build, shape = MODELS[name]
    model = build()
    x = inputs(shape, 3, seed=len(name))
    ps = Profiler(model, x[:1], neuron_type=ntype, threshold=0.3).run(x)
    ref = reference(model, x, ntype, t=0.3)
    for b in range(len(x)):
        rn, rs = ref[b]
        gn, gs = ours(ps, b)
        assert_same(rn, gn, f"{name}/{ntype} input {b} neurons")
        assert_same(rs, gs, f"{name}/{ntype} input {b} synapses")
        assert all(v == 1 for m in ps.neuron_counts.values() for v in m[b].data)


@pytest.mark.parametrize("t", [0.05, 0.5, 0.9])
def test_thresholds_on_channels(t: float) -> None:
    model = seq_model()
    x = inputs((2, 8, 8), 2, seed=5)
    ps = Profiler(model, x[:1], threshold=t).run(x)
    for b, (rn, rs) in enumerate(reference(model, x, "channel", t=t)):
        gn, gs = ours(ps, b)
        assert_same(rn, gn, f"t={t} neurons")
        assert_same(rs, gs, f"t={t} synapses")


def test_ddp_channel_contribution_of_a_conv_is_the_largest_positive_term() -> None:
    from convsvd.profiles import LayerOp

    model = functional_model()
    x = inputs((1, 6, 6), 2, seed=4)
    g = layer_graph(model, x[:1])
    _, ins, _, _ = g.activations(x)
    for l in g.layers:
        if l.kind != "conv":
            continue
        in_layers = [g.layers[i] for i in l.inputs]
        op = LayerOp(l, ins[l.index], in_layers)
        b = torch.tensor([0, 1, 1])
        o = torch.tensor([0, l.channels - 1, 1])
        got = op.ddp_channel_rows(b, o)
        for r in range(3):
            co = coefficients(l, in_layers, [ins[l.index][0][b[r]:b[r] + 1]])
            xv = ins[l.index][0][b[r]]
            C = in_layers[0].channels
            want = [0.0] * C
            for (oo, ph, pw), terms in co.items():
                if oo != int(o[r]):
                    continue
                per = [0.0] * C
                for _, j, cf in terms:
                    per[j[0]] += cf * float(xv[j])
                want = [max(w, p) for w, p in zip(want, per)]
            assert got[r].tolist() == pytest.approx(want, abs=1e-12), l.name


def test_weights_flow_sums_to_one_per_layer() -> None:
    model = seq_model()
    x = inputs((2, 8, 8), 4, seed=9)
    ps = Profiler(model, x[:1], neuron_type="element", threshold=0.2).run(x)
    for l in ps.layers:
        sums = np.asarray(ps.neuron_weights[l.name].sum(1)).ravel()
        assert np.allclose(sums, 1.0), l.name


def test_given_targets_change_the_start() -> None:
    model = seq_model()
    x = inputs((2, 8, 8), 3)
    p = Profiler(model, x[:1])
    ps = p.run(x, targets=torch.tensor([0, 1, 2]))
    assert ps.neuron_counts[ps.layers[-1].name].toarray().argmax(1).tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="targets"):
        p.run(x, targets=torch.tensor([0, 1, 7]))


def test_unknown_operation_is_named_or_passed() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(torch.square(self.conv(x)), 1))

    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(InputError, match=r"square.*no contribution rule.*unknown='pass'"):
        Profiler(Odd(), x)
    p = Profiler(Odd(), x, unknown="pass")
    assert any("square" in n for n in p.graph.notes)
    assert len(p.run(x)) == 2


def test_reductions_and_untraceable_models_are_refused() -> None:
    class Mean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).mean((2, 3)))

    with pytest.raises(InputError, match="mean"):
        Profiler(Mean(), torch.rand(1, 1, 4, 4))

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                return self.fc(x)
            return -self.fc(x)

    with pytest.raises(InputError, match="torch.fx cannot trace"):
        Profiler(Branchy(), torch.rand(1, 4))


def test_bad_options() -> None:
    model = seq_model()
    x = inputs((2, 8, 8), 1)
    for kw, pat in [(dict(neuron_type="pixel"), "neuron_type"), (dict(rule="x"), "rule"),
                    (dict(start="x"), "start"), (dict(threshold=0.0), "threshold"),
                    (dict(start="layers", neuron_type="element"), "start='layers'"),
                    (dict(rule="ddp", top_k=2), "top_k")]:
        with pytest.raises(InputError, match=pat):
            Profiler(model, x, **kw)


def test_top_k_keeps_k_contributors() -> None:
    model = seq_model()
    x = inputs((2, 8, 8), 2)
    ps = Profiler(model, x[:1], top_k=2).run(x)
    for l in ps.layers:
        if l.inputs and l.kind in ("conv", "linear"):
            per_out = np.asarray(ps.profile([0]).synapse_counts[l.name].sum(1)).ravel()
            assert set(per_out[per_out > 0].tolist()) <= {1, 2} and per_out.max() == 2, l.name


def test_model_is_unchanged_and_chunked_equals_one_shot() -> None:
    model = functional_model()
    x = inputs((1, 6, 6), 6, seed=3)
    before = model(x)
    p = Profiler(model, x[:1], neuron_type="element")
    whole = p.run(x)
    from convsvd.profiles import InputProfiles

    parts = InputProfiles.concat([p.run(x[:2]), p.run(x[2:5]), p.run(x[5:])])
    assert whole.profile() == parts.profile()
    assert torch.equal(model(x), before)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("conv, shape", [
    (nn.Conv2d(3, 4, 3, padding=1), (3, 9, 7)),
    (nn.Conv2d(3, 4, (3, 2), padding=(2, 1), dilation=(2, 3)), (3, 10, 8)),
    (nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"), (3, 9, 8)),
    (nn.Conv2d(3, 4, 3, padding="same", dilation=2, padding_mode="circular"), (3, 7, 7)),
    (nn.Conv2d(3, 4, (3, 4), stride=(2, 3), padding=(1, 2), dilation=(1, 2)), (3, 11, 13)),
    (nn.Conv2d(3, 4, (2, 4), padding="same"), (3, 6, 7)),
])
def test_patches_reproduce_the_conv_and_tap_sums_equal_their_sums(conv: nn.Conv2d, shape: tuple[int, ...]) -> None:
    from convsvd.profiles import LayerOp

    model = nn.Sequential(conv, nn.Flatten()).double()
    x = torch.randn(2, *shape, dtype=torch.float64)
    g = layer_graph(model, x[:1])
    _, ins, _, _ = g.activations(x)
    op = LayerOp(g.layers[1], ins[1], [g.layers[0]])
    C, kk = shape[0], conv.kernel_size[0] * conv.kernel_size[1]
    U = F.unfold(op._pad(ins[1][0]), kernel_size=conv.kernel_size, dilation=conv.dilation,
                 stride=conv.stride).view(2, C, kk, -1)  # the patches the conv reads (im2col)
    W = conv.weight.detach().double().reshape(4, -1)
    y = torch.einsum("ok,bkp->bop", W, U.flatten(1, 2)) + conv.bias.detach().double()[:, None]
    assert torch.allclose(y, model[0](x).flatten(2), atol=1e-12)
    assert torch.allclose(op._tap_sums(ins[1][0]), U.sum(-1), atol=1e-12)


# conv geometries of the brute-force tests: groups, dilation, stride, every padding mode, "same"
CONVS = [
    (nn.Conv2d(4, 6, 3, padding=1, groups=2), (4, 7, 6)),
    (nn.Conv2d(3, 4, (3, 2), padding=(2, 1), dilation=(2, 3)), (3, 10, 8)),
    (nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"), (3, 9, 8)),
    (nn.Conv2d(3, 4, 3, padding="same", dilation=2, padding_mode="circular"), (3, 7, 7)),
    (nn.Conv2d(2, 4, 3, padding=2, padding_mode="replicate"), (2, 5, 6)),
    (nn.Conv2d(6, 4, (2, 4), padding="same", groups=2), (6, 6, 7)),
    (nn.Conv2d(3, 3, 3, stride=(2, 1), padding=(1, 0), groups=3), (3, 8, 9)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("path", ["kernel", "torch"])
@pytest.mark.parametrize("conv, shape", CONVS)
def test_ddp_conv_rows_equal_the_conv_of_each_channel_alone(conv: nn.Conv2d, shape: tuple[int, ...], path: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Brute force: the conv run on one input channel at a time (the others zeroed), bias removed; by the
    compiled CPU kernel and by the torch path (depthwise convolutions) alike."""
    from convsvd.profiles import LayerOp, _kernels

    if path == "torch":
        monkeypatch.setattr(_kernels, "available", lambda x: False)
    else:
        assert _kernels.available(torch.zeros(1, dtype=torch.float64))

    model = nn.Sequential(conv, nn.Flatten()).double()
    x = torch.randn(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g = layer_graph(model, x[:1])
    _, ins, _, _ = g.activations(x)
    op = LayerOp(g.layers[1], ins[1], [g.layers[0]])
    O, C = conv.out_channels, conv.in_channels
    b = torch.tensor([2, 0, 2, 1, 0, 2])
    o = torch.tensor([O - 1, 0, 1, O - 1, 2, 0])
    got = op.ddp_channel_rows(b, o)
    bias = conv.bias.detach().double()
    with torch.no_grad():
        for r in range(len(b)):
            for c in range(C):
                xc = torch.zeros_like(x[:1])
                xc[0, c] = x[b[r], c]
                z = conv(xc)[0, o[r]] - bias[o[r]]
                assert float(got[r, c]) == pytest.approx(max(0.0, float(z.max())), abs=1e-12), (r, c)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("conv, shape", CONVS)
def test_element_and_spatial_rows_equal_the_conv_of_each_entry_alone(conv: nn.Conv2d, shape: tuple[int, ...]) -> None:
    """Brute force: the conv run on one input entry at a time (the rest zeroed), bias removed; a padding
    that repeats an entry (reflect, replicate, circular) adds its taps up. The sparse rows hold the
    same numbers, columns ascending and unrepeated, nothing at the end column."""
    from convsvd.profiles import LayerOp

    model = nn.Sequential(conv, nn.Flatten()).double()
    x = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    g = layer_graph(model, x[:1])
    _, ins, _, _ = g.activations(x)
    op = LayerOp(g.layers[1], ins[1], [g.layers[0]])
    C, H, W = shape
    O, Ho, Wo = g.layers[1].shape
    bias = conv.bias.detach().double().view(1, O, 1, 1)
    brute = torch.zeros(2, O, Ho, Wo, C, H, W, dtype=torch.float64)  # [b, o, p, c, q]
    with torch.no_grad():
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    xe = torch.zeros_like(x)
                    xe[:, c, h, w] = x[:, c, h, w]
                    brute[:, :, :, :, c, h, w] = conv(xe) - bias
    b = torch.tensor([1, 0, 1, 0, 1])
    e = torch.tensor([0, O * Ho * Wo - 1, 7, (O // 2) * Ho * Wo + 3, Ho * Wo + 1])
    o, p = e // (Ho * Wo), e % (Ho * Wo)
    ref = brute.reshape(2, O, Ho * Wo, C * H * W)[b, o, p]
    assert torch.allclose(op.element_rows(b, e), ref, atol=1e-12)
    sref = brute.reshape(2, O, Ho * Wo, C, H * W).sum((1, 3))[b, p]
    assert torch.allclose(op.spatial_rows(b, p), sref, atol=1e-12)
    for ntype, n, width in (("element", e, C * H * W), ("spatial", p, H * W)):
        vals, cols = op.sparse_rows(ntype, b, n)
        assert vals.shape == cols.shape == (len(b), op.entries(ntype))
        real = cols < width
        assert bool((vals[~real] == 0).all())
        for r in range(len(b)):
            cr = cols[r][real[r]]
            assert bool((cr[1:] > cr[:-1]).all()), (ntype, r)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ntype", ["channel", "element", "spatial", "svd"])
def test_cuda_equals_cpu(ntype: str) -> None:
    model = functional_model()
    x = inputs((1, 6, 6), 4, seed=6)
    cpu = Profiler(model, x[:1], neuron_type=ntype, threshold=0.3).run(x).profile()
    gpu_model = functional_model().cuda()
    gpu = Profiler(gpu_model, x[:1].cuda(), neuron_type=ntype, threshold=0.3).run(x.cuda()).profile()
    assert gpu.allclose(cpu, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("start", ["class", "layers"])
def test_ddp_rule_for_sums_and_pools(start: str) -> None:
    model = functional_model()
    x = inputs((1, 6, 6), 4, seed=8)
    p = Profiler(model, x[:1], rule="ddp", start=start, threshold=0.3)
    ps = p.run(x)
    g = p.graph
    _, ins, _, _ = g.activations(x)
    names = [l.name for l in g.layers]
    add = g.layers[names.index("add")]
    C = add.channels
    m1 = ins[add.index][0].flatten(2).amax(2)
    m2 = ins[add.index][1].flatten(2).amax(2)
    seen = 0
    for b in range(len(x)):
        syn = ps.synapse_weights["add"][b].tocoo()
        for col, w in zip(syn.col.tolist(), syn.data.tolist()):
            o, i = divmod(col, 2 * C)
            want = o if m1[b, o] > m2[b, o] else C + o  # all of it to the larger maximum (ties: the second)
            assert (i, w) == (want, 1.0)
            seen += 1
        for pool in ("max_pool2d", "adaptive_avg_pool2d"):
            syn = ps.synapse_weights[pool][b].tocoo()
            n = g.layers[names.index(pool)].channels
            assert all(divmod(c, n)[0] == divmod(c, n)[1] for c in syn.col.tolist()) and set(syn.data.tolist()) <= {1.0}
    assert seen > 0


def reference_layers(model: nn.Module, x: torch.Tensor, rule: str, t: float,  # type: ignore[no-untyped-def]
                     only: set[str] | None = None):
    """``start="layers"`` by explicit loops: per input ``(counts {(layer, n): c}, weights {(layer, n): w},
    synapses {(layer, o, i): s})``, DeepDataProfiler's per-layer rules written out one entry at a time
    (``only``: the names of the layers profiled; default all)."""
    g = layer_graph(model, x[:1])
    _, ins, tails, heads = g.activations(x)
    choose = select_share if rule == "share" else select_ddp
    results = []
    for b in range(x.shape[0]):
        counts: dict[tuple[str, int], int] = {}
        weights: dict[tuple[str, int], float] = {}
        synapses: dict[tuple[str, int, int], float] = {}
        for l in g.layers[1:]:
            if only is not None and l.name not in only:
                continue
            in_layers = [g.layers[i] for i in l.inputs]
            xs = [v[b:b + 1] for v in ins[l.index]]
            co = coefficients(l, in_layers, xs)
            offs = np.cumsum([0] + [il.shape[0] for il in in_layers])
            vals = []
            for c in range(l.shape[0]):  # max(0, max_p t_p), t_p = tail_p where head_p has its sign, else 0
                pairs = zip(tails[l.index][b, c].flatten().tolist(), heads[l.index][b, c].flatten().tolist())
                vals.append(max([0.0] + [tv for tv, hv in pairs if (hv > 0) == (tv > 0)]))
            for n, w in choose(vals, t).items():
                counts[(l.name, n)] = counts.get((l.name, n), 0) + 1
                weights[(l.name, n)] = weights.get((l.name, n), 0.0) + w
                sums = [0.0] * int(offs[-1])
                per_pos: dict[tuple[int, int, int], list[float]] = {}
                for e, terms in co.items():
                    if e[0] != n:
                        continue
                    for a, j, cf in terms:
                        v = cf * float(xs[a][0][j])
                        sums[int(offs[a]) + j[0]] += v
                        per_pos.setdefault(e, [0.0] * int(offs[-1]))[int(offs[a]) + j[0]] += v
                if rule == "share":
                    contrib = select_share(sums, t)
                elif l.kind in ("maxpool", "avgpool"):
                    contrib = {n: 1.0}
                elif l.kind == "add":
                    m1, m2 = (float(xs[a][0][n].max()) for a in range(2))
                    contrib = {n if m1 > m2 else l.shape[0] + n: 1.0}
                elif l.kind == "conv":
                    contrib = select_ddp([max([0.0] + [p[i] for p in per_pos.values()]) for i in range(len(sums))], t)
                elif l.kind == "linear":  # entries x_j W_nj (negatives as 0), kept while Σ + bias ≤ t·y, plus one
                    (terms,) = [tm for e, tm in co.items() if e[0] == n]
                    z = [(max(0.0, cf * float(xs[0][0][j])), k, j[0]) for k, (_, j, cf) in enumerate(terms)]
                    z.sort(key=lambda q: (-q[0], q[1]))
                    bias = float(l.module.bias[n].detach()) if l.module.bias is not None else 0.0
                    goal = t * float(heads[l.index][b, n].flatten()[0])
                    cum, acc = 0.0, []
                    for q in z:
                        cum += q[0]
                        acc.append(cum)
                    k = min(sum(1 for c_ in acc if c_ + bias <= goal), len(z) - 1)
                    contrib = {}
                    for q in z[:k + 1]:
                        if q[0] > 0:
                            contrib[q[2]] = contrib.get(q[2], 0.0) + q[0] / acc[k]
                else:
                    contrib = select_ddp(sums, t)
                for i, s in contrib.items():
                    synapses[(l.name, n, i)] = s
                    a = int(np.searchsorted(offs, i, side="right") - 1)
                    key = (in_layers[a].name, i - int(offs[a]))
                    counts[key] = counts.get(key, 0) + 1
                    weights.setdefault(key, 0.0)
        results.append((counts, weights, synapses))
    return results


def signs_model() -> nn.Module:
    """Tails that turn non-positive entries positive (batch-norm, sigmoid, a negative leaky slope) beside one that does not."""
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    bn.weight.data.uniform_(-2, -0.5)  # a negative scale: large outputs where the conv output is small
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), bn, nn.Sigmoid(), nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3, padding=1), nn.LeakyReLU(-3.0), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.ReLU(),
        nn.Linear(5, 3),
    ).double().eval()


@pytest.mark.parametrize("name", sorted(MODELS) + ["signs"])
@pytest.mark.parametrize("rule", ["ddp", "share"])
def test_per_layer_profiles_equal_the_reference(name: str, rule: str) -> None:
    build, shape = MODELS[name] if name != "signs" else (signs_model, (2, 8, 8))
    model = build()
    if name == "signs":
        g = layer_graph(model, inputs(shape, 1))
        assert [l.name for l in g.layers if l.index in g.sign_changing] == ["0", "4"]
    x = inputs(shape, 3, seed=11 + len(name))
    ps = Profiler(model, x[:1], start="layers", rule=rule, threshold=0.3).run(x)
    assert_same_as_reference_layers(ps, reference_layers(model, x, rule, 0.3), f"{name}/{rule}")


def assert_same_as_reference_layers(ps, reference, what: str) -> None:  # type: ignore[no-untyped-def]
    """Counts, weights and synapses of every input equal :func:`reference_layers`'."""
    for b, (rc, rw, rs) in enumerate(reference):
        got_c = {(l.name, int(n)): int(v) for l in ps.layers
                 for n, v in zip(ps.neuron_counts[l.name][b].tocoo().col, ps.neuron_counts[l.name][b].tocoo().data)}
        assert got_c == rc, f"{what} input {b} counts"
        gn, gs = ours(ps, b)
        assert_same(rw, gn, f"{what} input {b} weights")
        assert_same(rs, gs, f"{what} input {b} synapses")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_per_layer_profiles_of_some_layers_equal_the_reference(name: str) -> None:
    """``layers=``: only the chosen layers profiled (DeepDataProfiler's ``layers_to_profile``); counts of
    the contributors they find in the others are still kept."""
    build, shape = MODELS[name]
    model = build()
    x = inputs(shape, 3, seed=5)
    names = [l.name for l in layer_graph(model, x[:1]).layers if l.inputs]
    chosen = names[1:-1:2] if len(names) > 3 else names[:1]  # every other layer, neither the first nor the output
    ps = Profiler(model, x[:1], start="layers", rule="ddp", threshold=0.3, layers=chosen).run(x)
    assert ps.options["layers"] == chosen
    assert_same_as_reference_layers(ps, reference_layers(model, x, "ddp", 0.3, only=set(chosen)), name)
    for b in range(len(x)):
        assert {k[0] for k in ours(ps, b)[1]} <= set(chosen)


def test_layers_to_profile_are_checked() -> None:
    model = seq_model()
    x = inputs((2, 8, 8), 1)
    with pytest.raises(InputError, match="only with start='layers'"):
        Profiler(model, x, layers="0")
    with pytest.raises(InputError, match="pattern 'nope\\*' matches no layer"):
        Profiler(model, x, start="layers", layers="0,nope*")
    with pytest.raises(InputError, match="matches no layer"):
        Profiler(model, x, start="layers", layers="x_in")  # the input has no contributors
    assert Profiler(model, x, start="layers", layers="*").profiled == tuple(
        l.name for l in layer_graph(model, x).layers[1:])


@pytest.mark.parametrize("name", sorted(MODELS) + ["shared"])
def test_activations_without_heads_equal_the_full_run(name: str) -> None:
    """Heads not kept: ReLUs may overwrite a conv/linear/batch-norm/sum output nobody else reads; every
    kept activation and the output are unchanged, and a tensor read twice is never overwritten."""

    class Shared(nn.Module):  # the conv output feeds a ReLU and a sum: not overwritten
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.c(x)
            return self.fc(torch.flatten(torch.relu(y) + y, 1))

    build, shape = MODELS[name] if name != "shared" else (lambda: Shared().double().eval(), (2, 4, 4))
    model = build()
    x = inputs(shape, 3, seed=2)
    g = layer_graph(model, x[:1])
    x0 = x.clone()
    out, ins, tails, heads = g.activations(x)
    out2, ins2, tails2, heads2 = g.activations(x, heads=[], tails=True)
    assert torch.equal(x, x0) and torch.equal(out, out2) and torch.allclose(out, model(x))
    assert heads2 == {} and tails2.keys() == tails.keys()
    for k in tails:
        assert torch.equal(tails[k], tails2[k])
    for k in ins:
        assert all(torch.equal(a, b) for a, b in zip(ins[k], ins2[k]))
    relus = g._inplace_relus(set())
    if name == "sequential":
        assert relus  # a conv's ReLU runs in place
        raw = model[0](x)
        kept: list[torch.Tensor] = []  # unless a hook of the user's may keep the conv's output (not a copy)
        handle = model[0].register_forward_hook(lambda m, i, o: kept.append(o))
        try:
            assert g._inplace_relus(set()) < relus
            g.activations(x, heads=[], tails=True)
            assert torch.equal(kept[-1], raw) and bool((raw < 0).any())
        finally:
            handle.remove()
        calls: list[int] = []  # and a hooked ReLU module runs as the model runs it: its hook fires
        handle = model[1].register_forward_hook(lambda m, i, o: calls.append(1))
        try:
            assert g._inplace_relus(set()) < relus
            g.activations(x, heads=[], tails=True)
            assert calls == [1]
        finally:
            handle.remove()
    if name == "shared":
        assert not relus


def test_ddp_conv_rows_do_not_depend_on_the_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    import convsvd.profiles.contrib as contrib
    from convsvd.profiles import LayerOp, _kernels

    monkeypatch.setattr(_kernels, "available", lambda x: False)  # the torch path, in chunks of rows

    model = functional_model()
    x = inputs((1, 6, 6), 5, seed=12)
    g = layer_graph(model, x[:1])
    _, ins, _, _ = g.activations(x)
    L = next(l for l in g.layers if l.name == "c")
    op = LayerOp(L, ins[L.index], [g.layers[i] for i in L.inputs])
    b = torch.tensor([4, 0, 4, 2, 4, 0])  # uneven rows per input, out of order
    o = torch.tensor([1, 3, 0, 2, 3, 1])
    whole = op.ddp_channel_rows(b, o)
    monkeypatch.setattr(contrib, "_DDP_BUDGET", 1)  # one row per depthwise call
    assert torch.equal(op.ddp_channel_rows(b, o), whole)
    for r in range(len(b)):  # and each row alone
        assert torch.equal(op.ddp_channel_rows(b[r:r + 1], o[r:r + 1])[0], whole[r])


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("conv, shape", [
    (nn.Conv2d(13, 9, 3, padding=1), (13, 11, 12)),  # channels not a multiple of a vector
    (nn.Conv2d(20, 6, 3, stride=2, padding=1, groups=2), (20, 9, 10)),
    (nn.Conv2d(3, 8, 5, padding=2), (3, 12, 12)),
    (nn.Conv2d(24, 8, 3, padding=2, dilation=2, padding_mode="reflect"), (24, 8, 9)),
    (nn.Conv2d(16, 4, (1, 3), padding="same"), (16, 5, 7)),
])
def test_ddp_conv_kernel_matches_the_torch_path_in_float32_channels_last(
        conv: nn.Conv2d, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """How the profiler runs a float32 CNN on the CPU (channels-last activations): the compiled kernel
    and the depthwise convolutions agree to float32 rounding, for every row; no rows, no result."""
    from convsvd.profiles import LayerOp, _kernels

    model = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(5)).relu()
    x = x.contiguous(memory_format=torch.channels_last)
    g = layer_graph(model, x[:1])
    _, ins, _, _ = g.activations(x)
    assert ins[1][0].is_contiguous(memory_format=torch.channels_last)
    op = LayerOp(g.layers[1], ins[1], [g.layers[0]])
    gen = torch.Generator().manual_seed(6)
    b = torch.randint(0, 4, (11,), generator=gen)
    o = torch.randint(0, conv.out_channels, (11,), generator=gen)
    fast = op.ddp_channel_rows(b, o)
    assert fast.shape == (11, conv.in_channels) and fast.dtype == torch.float32
    assert op.ddp_channel_rows(b[:0], o[:0]).shape == (0, conv.in_channels)
    monkeypatch.setattr(_kernels, "available", lambda x: False)
    slow = op.ddp_channel_rows(b, o)
    assert (fast > 0).any()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_ddp_conv_rows_without_numba_take_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where numba cannot be imported the kernel reports itself unavailable and profiles are unchanged."""
    import builtins

    from convsvd.profiles import Profiler, _kernels

    model = functional_model()
    x = inputs((1, 6, 6), 4, seed=13)
    prof = Profiler(model, x[:1], start="layers", rule="ddp", threshold=0.3)
    with_kernel = prof.run(x)
    real_import = builtins.__import__

    def no_numba(name: str, *args: object, **kw: object) -> object:
        if name == "numba" or name.startswith("numba."):
            raise ImportError("no numba")
        return real_import(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_kernels, "_KERNELS", {})
    monkeypatch.setattr(builtins, "__import__", no_numba)
    assert not _kernels.available(x)
    without = prof.run(x)
    assert without.layer_names == with_kernel.layer_names
    for field in ("neuron_counts", "neuron_weights", "synapse_counts", "synapse_weights"):
        for name, a in getattr(with_kernel, field).items():
            bb = getattr(without, field)[name]
            assert a.shape == bb.shape and (a != bb).nnz == 0 or abs(a - bb).max() < 1e-12, (field, name)
    assert with_kernel.synapse_counts["c"].nnz > 0


@pytest.mark.parametrize("ntype, rule", [("element", "share"), ("element", "ddp"), ("spatial", "share"),
                                         ("channel", "share")])
def test_profiles_do_not_depend_on_the_blocks_of_rows(monkeypatch: pytest.MonkeyPatch, ntype: str, rule: str) -> None:
    import convsvd.profiles.build as build

    for name in sorted(MODELS):
        make, shape = MODELS[name]
        model = make()
        x = inputs(shape, 4, seed=21)
        whole = Profiler(model, x[:1], neuron_type=ntype, rule=rule).run(x).profile()
        monkeypatch.setattr(build, "_ROW_BUDGET", 1)  # one row per block
        assert Profiler(model, x[:1], neuron_type=ntype, rule=rule).run(x).profile() == whole, name
        monkeypatch.undo()


def test_a_contribution_of_zero_is_never_kept() -> None:
    from convsvd.profiles.select import select

    v = torch.tensor([[3.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    m, w = select(v, top_k=3)  # fewer than 3 nonzero: the nonzero ones only
    assert m.tolist() == [[True, False, False, True], [False] * 4]
    assert w[0].tolist() == pytest.approx([0.75, 0, 0, 0.25])
    for rule in ("share", "ddp"):
        m, _ = select(v, rule, threshold=1.0)
        assert not bool(m[:, 1:3].any()) and not bool(m[1].any())


@pytest.mark.parametrize("start, rule, ntype", [("class", "share", "channel"), ("layers", "ddp", "channel"),
                                               ("class", "share", "element"), ("class", "share", "spatial"),
                                               ("class", "share", "svd")])
def test_channels_last_run_equals_the_plain_run(start: str, rule: str, ntype: str) -> None:
    model = seq_model().float()
    x = inputs((2, 8, 8), 6, seed=13).float()
    kw = dict(start=start, rule=rule, threshold=0.3, neuron_type=ntype)
    plain = Profiler(model, x[:1], channels_last=False, **kw)  # type: ignore[arg-type]
    fast = Profiler(model, x[:1], **kw)  # type: ignore[arg-type]
    assert fast.channels_last and not plain.channels_last
    assert fast.run(x).profile().allclose(plain.run(x).profile(), rtol=1e-5, atol=1e-6)
    before = [p.is_contiguous() for p in model.parameters()]
    assert before == [True] * len(before)  # the model itself is not converted


def test_channels_last_is_skipped_when_the_model_needs_contiguous_activations() -> None:
    class Viewer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)
            self.fc = nn.Linear(3 * 6 * 6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.fc(y.view(y.shape[0], -1))

    x = torch.rand(2, 2, 8, 8)
    p = Profiler(Viewer().eval(), x[:1])
    assert not p.channels_last
    assert len(p.run(x)) == 2


@pytest.mark.parametrize("top", [1, 3, 6])
def test_ddp_linear_rule_from_the_largest_entries_equals_sorting_everything(top: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import convsvd.profiles.build as build

    g = torch.Generator().manual_seed(top)
    z = torch.randint(0, 4, (200, 12), generator=g).double()  # many ties, zeros included
    z[:50] = torch.rand(50, 12, generator=g, dtype=torch.float64)
    bias = torch.randn(200, generator=g, dtype=torch.float64) * 0.3
    goal = torch.rand(200, generator=g, dtype=torch.float64) * z.sum(1) * 0.6
    monkeypatch.setattr(build, "_LINEAR_TOP", 10 ** 6)
    whole = build._ddp_linear_weights(z, bias, goal)
    # the definition, row by row
    for r in range(len(z)):
        order = sorted(range(12), key=lambda j: (-float(z[r, j]), j))
        cum, acc = 0.0, []
        for j in order:
            cum += float(z[r, j])
            acc.append(cum)
        k = min(sum(1 for c in acc if c + float(bias[r]) <= float(goal[r])), 11)
        want = [0.0] * 12
        for j in order[:k + 1]:
            if z[r, j] > 0:
                want[j] = float(z[r, j]) / acc[k]
        assert whole[r].tolist() == pytest.approx(want, rel=1e-12, abs=0)
    monkeypatch.setattr(build, "_LINEAR_TOP", top)
    assert torch.equal(build._ddp_linear_weights(z, bias, goal), whole)


def test_layers_without_any_profile_have_no_nearest_class() -> None:
    """A layer that ``start="layers"`` did not profile (and no profiled layer reads) has no neuron in any
    profile: its nearest class profile is undefined, not class 0, and its accuracy is NaN."""
    from convsvd.profiles import class_similarity

    model = seq_model()
    x = inputs((2, 8, 8), 12, seed=7)
    labels = torch.arange(12) % 3
    ps = Profiler(model, x[:1], start="layers", rule="ddp", threshold=0.3, layers="3").run(x, labels=labels)
    sim = class_similarity(ps)
    frame = sim.to_frame().set_index("layer")
    empty = [l.name for l in ps.layers if ps.neuron_counts[l.name].nnz == 0]
    assert empty and "3" not in empty
    assert (sim.predictions()[[sim.layers.index(n) for n in empty]] == -1).all()
    assert frame.loc[empty, "accuracy"].isna().all() and (frame.loc[empty, "inputs"] == 0).all()
    assert np.isfinite(frame.loc["3", "accuracy"]) and frame.loc["3", "inputs"] == 12
    # every class as similar (e.g. a one-channel input layer in every profile): no nearest class either;
    # a tie of some classes only: the lower one
    from convsvd.profiles.similarity import ClassSimilarity

    v = np.array([[[0.5, 0.5, 0.5], [0.2, 0.7, 0.7], [np.nan, 0.4, np.nan], [np.nan] * 3]])
    tie = ClassSimilarity(np.array([0, 1, 2]), [], v, np.array([1, 1, 1, 2]))
    assert tie.predictions().tolist() == [[-1, 1, -1, -1]]
    assert tie.to_frame()[["accuracy", "inputs"]].values.tolist() == [[1.0, 1]]


def test_ddp_rule_equals_a_loop_with_ties_and_zeros() -> None:
    from convsvd.profiles import select

    g = torch.Generator().manual_seed(21)
    for trial in range(300):
        M, I = 1 + trial % 5, 1 + trial % 17
        if trial % 3 == 0:
            v = torch.randint(-2, 4, (M, I), generator=g).double()  # ties and zeros everywhere
        elif trial % 3 == 1:
            v = torch.randn(M, I, generator=g, dtype=torch.float64)
        else:
            v = torch.randint(0, 3, (M, I), generator=g).double() / 4
        for t in (0.0, 0.1, 0.5, 1.0):
            mask, weight = select(v, "ddp", t)
            for r in range(M):
                want = select_ddp(v[r].tolist(), t)  # the loop reference of the profile tests
                assert mask[r].nonzero().ravel().tolist() == sorted(want), (v[r].tolist(), t)
                assert weight[r].tolist() == pytest.approx([want.get(i, 0.0) for i in range(I)], abs=1e-12)


def test_ddp_conv_kernel_leaves_torch_thread_count_as_it_was() -> None:
    """numba's OpenMP layer shares torch's runtime and sets its thread count on start: put back."""
    from convsvd.profiles import _kernels

    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            x = torch.randn(2, 8, 6, 6)
            got = _kernels.ddp_conv_max(x, torch.randn(4, 8, 3, 3), torch.tensor([0, 1]), torch.tensor([1, 3]),
                                        stride=(1, 1), dilation=(1, 1), top=1, left=1, out_size=(6, 6), groups=1)
            assert got.shape == (2, 8)
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_ddp_conv_kernel_compiles_without_a_cache_where_numba_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only install where numba finds no cache folder: the kernels compile in the process instead."""
    import numba

    from convsvd.profiles import _kernels

    real = numba.njit

    def no_cache(*args: object, **kw: object) -> object:
        if kw.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **kw)

    monkeypatch.setattr(numba, "njit", no_cache)
    monkeypatch.setattr(_kernels, "_KERNELS", {})
    x = torch.randn(2, 8, 6, 6)
    assert _kernels.available(x)
    w = torch.randn(4, 8, 3, 3)
    got = _kernels.ddp_conv_max(x, w, torch.tensor([1]), torch.tensor([2]), stride=(1, 1), dilation=(1, 1), top=1,
                                left=1, out_size=(6, 6), groups=1)
    want = torch.nn.functional.conv2d(x[1:2], w[2].unsqueeze(1), padding=1, groups=8).amax((2, 3)).clamp(min=0)
    torch.testing.assert_close(got, want)
