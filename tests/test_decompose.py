"""Every SVD route gives the singular values of a float64 numpy.linalg.svd of W̄."""

import numpy as np
import pytest
import torch
from torch import nn

import convsvd.decompose as dmod
from convsvd.decompose import decompose
from convsvd.errors import InputError, NotComputedError
from convsvd.io import from_module


def _model(dtype=torch.float64):
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(),
        nn.Conv2d(16, 16, 3, groups=4),  # grouped: 4 SVDs of 4×36
        nn.Conv2d(16, 16, 3, groups=16),  # depthwise: 16 SVDs of 1×9
        nn.Conv2d(16, 16, 3, groups=4),  # same shape as the second: batched with it
        nn.Conv1d(16, 8, 5, dilation=2),
        nn.ConvTranspose2d(8, 6, 3, stride=2, groups=2),
        nn.Linear(40, 12), nn.Linear(12, 40),
    ).to(dtype)


def _reference(model):
    out = {}
    for spec in from_module(model).layers:
        m, n = spec.unfolded_shape
        W = spec.weight.detach().double().reshape(spec.groups, m, n).numpy()
        out[spec.name] = (W, np.stack([np.linalg.svd(w, compute_uv=False) for w in W]))
    return out


ROUTES = [
    dict(mode="full"),
    dict(mode="values"),  # Gram route
    dict(mode="values", method="svd"),
    dict(mode="topk", k=3),
    dict(mode="topk", k=3, method="gram"),
    dict(mode="topk", k=3, method="lanczos"),
]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: "-".join(map(str, r.values())))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_routes_match_numpy(route, dtype):
    model = _model()
    ref = _reference(model)
    dec = decompose(model, dtype=dtype, device="cpu", **route)
    assert list(dec) == list(ref)
    rtol = 1e-5 if dtype == torch.float32 else 1e-9
    for name, layer in dec.items():
        W, s_ref = ref[name]
        r = layer.S.shape[-1]
        assert r == (min(route.get("k", 10**9), *W.shape[1:]))
        assert layer.S.dtype == dtype
        np.testing.assert_allclose(layer.S.double().numpy(), s_ref[:, :r], rtol=rtol, atol=rtol * s_ref.max() * 1e-3)
        if layer.U is not None:
            # orthonormal vectors that reconstruct the leading part of W̄
            eye = torch.eye(r, dtype=torch.float64)
            torch.testing.assert_close(layer.U.double().mT @ layer.U.double(), eye.expand(layer.groups, r, r),
                                       atol=10 * rtol, rtol=0)
            if layer.complete:
                torch.testing.assert_close(layer.reconstruct().double(), torch.from_numpy(W), atol=10 * rtol, rtol=0)


def test_sign_convention_and_agreement_across_routes():
    model = _model()
    full = decompose(model, mode="full")
    top = decompose(model, mode="topk", k=2, method="gram")
    for name, layer in full.items():
        idx = layer.U.abs().argmax(dim=1, keepdim=True)
        assert (torch.gather(layer.U, 1, idx) > 0).all()
        torch.testing.assert_close(top[name].U, layer.U[..., :2], atol=1e-8, rtol=0)
        torch.testing.assert_close(top[name].Vh, layer.Vh[:, :2], atol=1e-8, rtol=0)


def test_batched_equals_one_layer_at_a_time():
    model = _model()
    together = decompose(model, mode="full")
    for name in together:
        alone = decompose(model, layers=name, mode="full")[name]
        torch.testing.assert_close(alone.S, together[name].S, atol=1e-12, rtol=0)
        torch.testing.assert_close(alone.U, together[name].U, atol=1e-10, rtol=0)


def test_shapes_filters_and_energy():
    model = _model()
    dec = decompose(model, mode="full")
    conv = dec["2"]
    assert conv.groups == 4 and conv.shape == (4, 36)
    assert conv.U.shape == (4, 4, 4) and conv.S.shape == (4, 4) and conv.Vh.shape == (4, 4, 36)
    f = conv.filters()
    assert f.shape == (4, 4, 4, 3, 3)
    torch.testing.assert_close(f.reshape(4, 4, 36), conv.Vh, atol=0, rtol=0)  # reshape back exactly
    tconv = dec["6"]
    assert tconv.filters().shape == (2, 4, 3, 3, 3)  # (g, r, d/g, k, k)
    W = model[0].weight.detach()
    assert dec["0"].energy(16) == pytest.approx(1.0, abs=1e-12)
    s = torch.linalg.svdvals(W.reshape(16, -1))
    assert dec["0"].energy(3) == pytest.approx(float((s[:3] ** 2).sum() / (W**2).sum()), rel=1e-12)
    assert dec["0"].stable_rank == pytest.approx(float((W**2).sum() / s[0] ** 2), rel=1e-12)
    frame = dec.to_frame(top_k=3)
    assert frame.name.tolist() == list(dec) and frame.loc[0, "rank"] == 16
    vals = decompose(model, mode="values")
    with pytest.raises(NotComputedError, match="mode='full'"):
        vals["0"].filters()


def test_cache_serves_the_second_call(tmp_path, monkeypatch):
    model = _model()
    first = decompose(model, mode="full", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == len(first)

    def boom(*a, **k):
        raise AssertionError("computed instead of served from the cache")

    monkeypatch.setattr(dmod, "_run_batch", boom)
    second = decompose(model, mode="full", cache_dir=tmp_path)
    for name in first:
        assert torch.equal(first[name].U, second[name].U) and torch.equal(first[name].S, second[name].S)
    # other options are other keys
    with pytest.raises(AssertionError, match="computed instead"):
        decompose(model, mode="values", cache_dir=tmp_path)
    monkeypatch.undo()
    # a changed weight is a different key
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1.0
    third = decompose(model, layers="0", mode="full", cache_dir=tmp_path)
    assert not torch.equal(third["0"].S, first["0"].S)
    # a damaged entry is recomputed, not trusted
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    again = decompose(model, mode="full", cache_dir=tmp_path)
    torch.testing.assert_close(again["2"].S, first["2"].S)


def test_fold_bn_option():
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)).double().eval()
    with torch.no_grad():
        m[1].running_var.fill_(4.0)
    plain = decompose(m, mode="values")["0"].S
    folded = decompose(m, mode="values", fold_bn=True)["0"]
    assert folded.folded == "1"
    torch.testing.assert_close(folded.S, plain / torch.sqrt(torch.tensor(4.0 + 1e-5, dtype=torch.float64)))


def test_nan_zero_size_and_tiny_layers():
    m = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Linear(3, 2), nn.Linear(0, 4), nn.Linear(2, 2))
    with torch.no_grad():
        m[1].weight[0, 0] = float("nan")
    dec = decompose(m, mode="full")
    assert list(dec) == ["0", "3"]
    assert dec["0"].shape == (1, 1)
    assert dec["0"].S.item() == pytest.approx(abs(m[0].weight.item()))
    reasons = {s.name: s.reason for s in dec.skipped}
    assert "NaN" in reasons["1"] and "zero-size" in reasons["2"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="everything"), "mode 'everything'"),
        (dict(method="qr"), "method 'qr'"),
        (dict(mode="topk"), "k None: expected an integer"),
        (dict(dtype="float16"), "dtype 'float16'"),
        (dict(layers="nope*"), "layer pattern 'nope\\*'"),
    ],
)
def test_bad_options_name_the_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        decompose(_model(), **kwargs)


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="CUDA is not available"):
        decompose(_model(), device="cuda")


def test_no_layer_model_is_a_clear_error():
    with pytest.raises(InputError, match="no convolutional or linear layer"):
        decompose(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_weights_hash_names_the_weights(tmp_path):
    model = _model()
    dec = decompose(model, mode="values")
    assert dec.weights_hash == from_module(model).content_hash() and len(dec.weights_hash) == 64
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1.0
    assert decompose(model, mode="values").weights_hash != dec.weights_hash
