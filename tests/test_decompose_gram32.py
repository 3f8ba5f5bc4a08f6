"""decompose(method="gram32"): float32 Gram matrices, float64 eigenvalues, against the float64 route."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convsvd.decompose as decompose_module
from convsvd.decompose import decompose
from convsvd.errors import InputError
from convsvd.io import LayerSpec, ModelWeights

U32 = 2.0**-24


def _weights(seed: int) -> ModelWeights:
    g = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(192, 3072, generator=g)
    heavy = torch.distributions.StudentT(torch.tensor(2.5)).sample((2048, 160)) * 0.1  # tall: Gram of the columns
    low_rank = torch.randn(256, 6, generator=g) @ torch.randn(6, 1536, generator=g) + 1e-3 * torch.randn(256, 1536, generator=g)
    conv = torch.randn(32, 8, 3, 3, generator=g)
    layers = (
        LayerSpec("gaussian", "linear", gaussian),
        LayerSpec("heavy", "linear", heavy),
        LayerSpec("low_rank", "linear", low_rank),
        LayerSpec("conv", "conv2d", conv, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=2),
    )
    return ModelWeights(layers, source="seeded")


@pytest.mark.parametrize("syrk", [False, True], ids=["matmul", "ssyrk"])
def test_gram32_eigenvalues_are_within_the_bound_of_the_float64_route(syrk: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if syrk:  # force SciPy's ssyrk on these small matrices too
        monkeypatch.setattr(decompose_module, "_SYRK_MIN_MACS", 0.0)
    mw = _weights(0)
    ref = decompose(mw, mode="values", method="gram", dtype="float64", device="cpu")
    fast = decompose(mw, mode="values", method="gram32", device="cpu")
    for spec in mw.layers:
        a, b = fast[spec.name], ref[spec.name]
        assert a.method == "gram32" and a.S.dtype == torch.float64 and a.S.shape == b.S.shape
        lam, lam_ref = a.S.double() ** 2, b.S.double() ** 2
        err = float((lam - lam_ref).abs().max())
        n = max(b.shape)  # the summed dimension
        # typical (documented): u·√n·σ_max²; measured at most 0.2× that
        assert err <= U32 * n**0.5 * float(lam_ref.max()), spec.name
        # guaranteed: γ_n ‖W̄‖_F²
        gamma = n * U32 / (1 - n * U32)
        assert err <= gamma * float(b.fro2.max())
        assert a.fro2.dtype == b.fro2.dtype == torch.float64  # fro2 is float64 either way
        torch.testing.assert_close(a.fro2, b.fro2, rtol=1e-6, atol=0)
    # the leading eigenvalues agree to about 6 digits
    top = fast["heavy"].S[0, :10] ** 2 / ref["heavy"].S[0, :10] ** 2
    assert float((top - 1).abs().max()) < 2e-6


@pytest.mark.parametrize("syrk", [False, True], ids=["matmul", "ssyrk"])
def test_gram32_with_float32_solver_keeps_the_leading_digits(syrk: bool, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if syrk:
        monkeypatch.setattr(decompose_module, "_SYRK_MIN_MACS", 0.0)
    mw = _weights(2)
    ref = decompose(mw, mode="values", method="gram", dtype="float64", device="cpu")
    fast = decompose(mw, mode="values", method="gram32", dtype="float32", device="cpu")
    f64 = decompose(mw, mode="values", method="gram32", device="cpu", cache_dir=tmp_path)
    again = decompose(mw, mode="values", method="gram32", dtype="float32", device="cpu", cache_dir=tmp_path)
    for spec in mw.layers:
        a, b = fast[spec.name], ref[spec.name]
        assert a.S.dtype == torch.float32 and a.S.shape == b.S.shape and f64[spec.name].S.dtype == torch.float64
        lam, lam_ref = a.S.double() ** 2, b.S.double() ** 2
        # a float32 solver adds a backward error of order u·‖G‖ (documented: ~2e-5·σ_max² at 4096)
        assert float((lam - lam_ref).abs().max()) <= 1e-5 * float(lam_ref.max()), spec.name
        # the cache keeps the two solvers apart
        assert again[spec.name].S.dtype == torch.float32
        torch.testing.assert_close(again[spec.name].S, a.S, rtol=0, atol=0)


def test_gram32_paths_agree_and_defaults_are_unchanged(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mw = _weights(1)
    matmul = decompose(mw, mode="values", method="gram32", device="cpu")
    default = decompose(mw, mode="values", device="cpu")
    assert all(layer.method == "gram" for layer in default.layers.values())  # "auto" never picks gram32
    monkeypatch.setattr(decompose_module, "_SYRK_MIN_MACS", 0.0)
    syrk = decompose(mw, mode="values", method="gram32", device="cpu")
    for name in matmul:  # the same eigenvalues up to float32 Gram rounding
        lam_a, lam_b = syrk[name].S ** 2, matmul[name].S ** 2
        n = max(matmul[name].shape)
        assert float((lam_a - lam_b).abs().max()) <= 2 * U32 * n**0.5 * float(lam_b.max()), name
    model = nn.Linear(100, 40)
    assert decompose(model, mode="values", method="gram32")["<root>"].rank == 40


def test_gram32_option_errors() -> None:
    with pytest.raises(InputError, match="mode='values'"):
        decompose(nn.Linear(4, 3), mode="full", method="gram32")
    with pytest.raises(InputError, match="float64"):
        decompose(nn.Linear(4, 3), mode="values", method="gram32", dtype="float64")
    np.testing.assert_array_equal(decompose_module.METHODS[:4], ("auto", "svd", "gram", "gram32"))
