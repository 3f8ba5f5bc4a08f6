"""Signals and separation in the channel and random bases: same code path as the SVD neurons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convsvd.bases import compare_bases
from convsvd.errors import InputError
from convsvd.hypergraph import separation
from convsvd.signals import influence, plan_projection, profile, signal_maps, signals
from convsvd.signals.project import BASES


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1, groups=2)
        self.fc = nn.Linear(6 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))


def _setup(n: int = 40) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    net = Net().double().eval()
    x = torch.randn(n, 2, 4, 4, dtype=torch.float64)
    return net, x, torch.arange(n) % 4


def _raw(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    hs = [m.register_forward_hook(lambda _m, _i, y, k=k: out.__setitem__(k, y.detach()))
          for k, m in (("conv", net.conv), ("fc", net.fc))]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hs:
            h.remove()
    return out


def test_channel_signals_are_the_raw_outputs_minus_bias() -> None:
    net, x, _ = _setup()
    raw = _raw(net, x)
    plan = plan_projection(net, basis="channel")
    assert plan.basis == "channel"
    s = signals(net, x, plan=plan)
    conv = (raw["conv"] - net.conv.bias.detach().view(1, -1, 1, 1))  # (N, 6, 4, 4), groups of 3 channels
    assert torch.allclose(s.values["conv"].reshape(len(x), 6), conv.mean(dim=(2, 3)), rtol=0, atol=1e-14)
    fc = raw["fc"] - net.fc.bias.detach()
    assert torch.allclose(s.values["fc"].reshape(len(x), 4), fc, rtol=0, atol=1e-14)
    maps = signal_maps(net, x, plan=plan)
    assert torch.allclose(maps["conv"].reshape(len(x), 6, 4, 4), conv, rtol=0, atol=1e-14)
    assert torch.isnan(s.sigma["conv"]).all() and s.sigma["conv"].shape == (2, 3)
    for agg, fn in (("max", lambda t: t.amax(dim=(2, 3))), ("abs", lambda t: t.abs().mean(dim=(2, 3))),
                    ("l2", lambda t: t.pow(2).sum(dim=(2, 3)).sqrt())):
        v = signals(net, x, plan=plan, aggregate=agg).values["conv"].reshape(len(x), 6)
        assert torch.allclose(v, fn(conv), rtol=1e-13, atol=1e-13), agg


def test_random_basis_is_orthonormal_seeded_and_per_group() -> None:
    net, x, _ = _setup()
    a, b = plan_projection(net, basis="random"), plan_projection(net, basis="random")
    c = plan_projection(net, basis="random", seed=7)
    Ut = a.projectors["conv"].Ut
    assert Ut.shape == (2, 3, 3)
    assert torch.allclose(Ut @ Ut.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-12)
    assert torch.equal(Ut, b.projectors["conv"].Ut) and not torch.allclose(Ut, c.projectors["conv"].Ut)
    assert not torch.allclose(Ut[0], Ut[1])  # each group its own basis
    assert not torch.allclose(a.projectors["fc"].Ut[0, :3, :3], Ut[0])  # each layer its own seed
    raw = _raw(net, x)
    s = signals(net, x, plan=a)
    fc = raw["fc"] - net.fc.bias.detach()
    assert torch.allclose(s.values["fc"][:, 0], fc @ a.projectors["fc"].Ut[0].T, atol=1e-13)


@pytest.mark.slow  # a whole profile run
def test_profile_records_the_basis_and_uses_the_same_influence_and_separation(tmp_path) -> None:
    net, x, y = _setup()
    table = profile(net, (x, y), basis="channel", out=tmp_path / "ch", batch_size=16)
    assert table.manifest["options"]["basis"] == "channel"
    rows = table.layer("fc").sort_values(["id", "neuron"])
    raw = _raw(net, x)["fc"] - net.fc.bias.detach()
    np.testing.assert_allclose(rows.signal.to_numpy().reshape(len(x), 4), raw.numpy(), rtol=0, atol=1e-13)
    inf = influence(raw)  # the same (default) rule on the hand-made channel signals
    np.testing.assert_array_equal(rows.influential.to_numpy().reshape(len(x), 4), inf.mask.numpy())
    assert rows.sigma.isna().all()
    sep = separation(table).to_frame()
    assert list(sep.layer) == ["conv", "fc"] and sep.neurons.tolist() == [6, 4]
    # NCC runs on the aggregated signals: an orthonormal change of basis leaves Euclidean distances
    # (and so NCC accuracy) unchanged, whatever the basis
    svd = separation(profile(net, (x, y), out=tmp_path / "svd", batch_size=16)).to_frame()
    rnd = separation(profile(net, (x, y), basis="random", out=tmp_path / "rnd", batch_size=16)).to_frame()
    np.testing.assert_allclose(sep.ncc_accuracy, svd.ncc_accuracy)
    np.testing.assert_allclose(sep.ncc_accuracy, rnd.ncc_accuracy)
    with pytest.raises(InputError, match="holds a run with basis"):
        profile(net, (x, y), basis="svd", out=tmp_path / "ch", batch_size=16)


@pytest.mark.slow  # whole profile runs, one per basis
def test_compare_bases_one_frame() -> None:
    net, x, y = _setup()
    frame = compare_bases(net, (x, y), batch_size=16)
    assert list(frame.columns[:2]) == ["layer", "basis"]
    assert frame[["layer", "basis"]].values.tolist() == [[layer, b] for layer in ("conv", "fc") for b in BASES]
    assert frame[frame.basis == "channel"].neurons.tolist() == [6, 4]
    with pytest.raises(InputError, match="bases"):
        compare_bases(net, (x, y), bases=["svd", "filters"])
    with pytest.raises(InputError, match="basis 'filters'"):
        plan_projection(net, basis="filters")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_random_basis_same_on_cuda() -> None:
    net, _, _ = _setup()
    cpu = plan_projection(net, basis="random").projectors["conv"].Ut
    gpu = plan_projection(net, basis="random", device="cuda").projectors["conv"].Ut
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-12)
