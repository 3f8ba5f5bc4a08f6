"""Directional ablation: identities on tiny seeded float64 models, seeding, hooks removed, CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convsvd.ablation import (
    BASES,
    _arrange,
    ablate,
    ablation_projections,
    default_ks,
    random_orthonormal,
)
from convsvd.cli import main
from convsvd.errors import InputError


class Net(nn.Module):
    """conv (grouped or not) → ReLU → flatten → linear → ReLU → linear, float64."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=groups)
        self.fc1 = nn.Linear(8 * 5 * 5, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _setup(groups: int = 1, n: int = 30) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = Net(groups).double().eval()
    x = torch.randn(n, 4, 5, 5, dtype=torch.float64)
    return net, x, net(x).argmax(1).roll(1)  # labels: a mix of right and wrong


def _outputs_with(net: nn.Module, x: torch.Tensor, module: nn.Module, fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
    h = module.register_forward_hook(lambda _m, _i, y: fn(y))
    try:
        with torch.no_grad():
            return net(x)
    finally:
        h.remove()


def _frame_row(frame: pd.DataFrame, basis: str, k: int, seed: int = -1) -> pd.Series:
    rows = frame[(frame.basis == basis) & (frame.k == k) & (frame.seed == seed)]
    assert len(rows) == 1
    return rows.iloc[0]


def _measures(logits: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    return (float((logits.argmax(1) == labels).double().mean()), float(F.cross_entropy(logits, labels)),
            float(torch.linalg.vector_norm(logits - ref, dim=1).mean()))


def test_k0_is_the_model_itself_bitwise_and_hooks_removed() -> None:
    net, x, y = _setup()
    with torch.no_grad():
        ref = net(x)
    res = ablate(net, (x, y), layers="conv,fc1", ks=[0, 1], seeds=2, batch_size=7)
    frame = res.to_frame()
    acc = float((ref.argmax(1) == y).double().mean())
    loss = float(F.cross_entropy(ref, y, reduction="sum")) / len(y)
    for layer in res.layers:
        assert layer.accuracy == acc and layer.loss == loss
        zero = frame[(frame.layer == layer.layer) & (frame.k == 0)]
        assert set(zero.basis) == set(BASES)
        assert (zero.accuracy == acc).all() and (zero.loss == loss).all() and (zero.logit_change == 0).all()
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    with torch.no_grad():
        assert torch.equal(net(x), ref)  # the model is unchanged


def test_hooks_removed_after_a_failure() -> None:
    net, x, y = _setup()
    with pytest.raises(InputError):
        ablate(net, (x[:, :3], y), layers="conv", ks=[1])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


@pytest.mark.parametrize("groups", [1, 2])
def test_top_k_removal_equals_the_rank_reduced_weight(groups: int) -> None:
    net, x, y = _setup(groups)
    with torch.no_grad():
        ref = net(x)
    res = ablate(net, (x, y), layers="conv", ks=[1, 2, 3], bases=["svd-top", "svd-keep"])
    frame = res.to_frame()
    W = net.conv.weight.detach()
    m = W.shape[0] // groups
    Wbar = W.reshape(groups, m, -1)
    U = torch.linalg.svd(Wbar, full_matrices=False).U
    for k in (1, 2, 3):
        Uk = U[..., :k]
        for basis, reduced in (("svd-top", Wbar - Uk @ Uk.transpose(1, 2) @ Wbar),
                               ("svd-keep", Uk @ Uk.transpose(1, 2) @ Wbar)):
            conv = nn.Conv2d(4, 8, 3, padding=1, groups=groups).double()
            with torch.no_grad():
                conv.weight.copy_(reduced.reshape(W.shape))
                conv.bias.copy_(net.conv.bias)
            out = _outputs_with(net, x, net.conv, lambda _y, c=conv: c(x))
            row = _frame_row(frame, basis, k)
            acc, loss, change = _measures(out, ref, y)
            assert row.accuracy == pytest.approx(acc, abs=1e-12)
            assert row.loss == pytest.approx(loss, rel=1e-9)
            assert row.logit_change == pytest.approx(change, rel=1e-9)


def test_removing_every_direction_leaves_only_the_bias() -> None:
    net, x, y = _setup()
    with torch.no_grad():
        ref = net(x)
    # fc1: 12×200, full rank 12 = its output channels
    out = _outputs_with(net, x, net.fc1, lambda z: net.fc1.bias.expand_as(z).clone())
    expected = _measures(out, ref, y)
    res = ablate(net, (x, y), layers="fc1", ks=[12], bases=["svd-top", "channel-norm", "random"], seeds=2)
    frame = res.to_frame()
    for basis, seed in (("svd-top", -1), ("channel-norm", -1), ("random", 0), ("random", 1)):
        row = _frame_row(frame, basis, 12, seed)
        assert row.accuracy == pytest.approx(expected[0], abs=1e-12)
        assert row.logit_change == pytest.approx(expected[2], rel=1e-9)


def test_channel_ablation_zeroes_those_channels_minus_bias() -> None:
    net, x, y = _setup()
    with torch.no_grad():
        ref = net(x)
    k = 3
    W = net.conv.weight.detach().flatten(1)
    top = torch.argsort(torch.linalg.vector_norm(W, dim=1), descending=True)[:k]
    b = net.conv.bias.detach().view(1, -1, 1, 1)

    def zeroed(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[:, top] = b[:, top].expand_as(z[:, top])
        return z

    out = _outputs_with(net, x, net.conv, zeroed)
    # mean |y − b| per channel, for channel-act
    acts: list[torch.Tensor] = []
    _outputs_with(net, x, net.conv, lambda z: acts.append((z - b).abs().mean(dim=(0, 2, 3))))
    top_act = torch.argsort(acts[0], descending=True)[:k]
    out_act = _outputs_with(net, x, net.conv, lambda z: torch.where(
        torch.isin(torch.arange(8), top_act).view(1, -1, 1, 1), b.expand_as(z), z))
    frame = ablate(net, (x, y), layers="conv", ks=[k], bases=["channel-norm", "channel-act"]).to_frame()
    for basis, o in (("channel-norm", out), ("channel-act", out_act)):
        row = _frame_row(frame, basis, k)
        acc, loss, change = _measures(o, ref, y)
        assert row.accuracy == pytest.approx(acc, abs=1e-12)
        assert row.loss == pytest.approx(loss, rel=1e-10)
        assert row.logit_change == pytest.approx(change, rel=1e-9, abs=1e-12)


def test_random_directions_are_orthonormal_nested_and_seeded() -> None:
    Q = random_orthonormal(6, 2, seed=5)
    eye = torch.eye(6, dtype=torch.float64)
    assert torch.allclose(Q.transpose(1, 2) @ Q, eye.expand(2, 6, 6), atol=1e-12)
    assert torch.equal(Q, random_orthonormal(6, 2, seed=5))
    assert not torch.allclose(Q, random_orthonormal(6, 2, seed=6))
    U = torch.linalg.qr(torch.randn(2, 6, 6, dtype=torch.float64))[0]
    P = ablation_projections(U, torch.randn(2, 6, 9, dtype=torch.float64), None,
                             [("random", 2, 5), ("random", 3, 5)])
    for p, k in zip(P, (2, 3)):
        assert torch.allclose(p @ p, p, atol=1e-12) and torch.allclose(p, p.transpose(1, 2), atol=1e-12)
        assert torch.diagonal(p, dim1=1, dim2=2).sum(-1).sub(6 - k).abs().max() < 1e-12  # rank 6 − k
        assert torch.allclose(p, eye - Q[..., :k] @ Q[..., :k].transpose(1, 2), atol=1e-12)
    net, x, y = _setup()
    a = ablate(net, (x, y), layers="fc1", ks=[2], bases=["random"], seeds=2).to_frame()
    b = ablate(net, (x, y), layers="fc1", ks=[2], bases=["random"], seeds=2).to_frame()
    pd.testing.assert_frame_equal(a, b)
    assert a[a.k == 2].seed.tolist() == [0, 1]
    assert a[a.k == 2].logit_change.nunique() == 2


def test_arrange_round_trips_conv_and_linear() -> None:
    y = torch.randn(3, 8, 2, 5)
    z, back = _arrange(y, "conv2d", 2)
    assert z.shape == (3, 2, 4, 10) and torch.equal(back(z), y)
    y = torch.randn(3, 7, 6)  # linear on (N, *, in)
    z, back = _arrange(y, "linear", 1)
    assert z.shape == (3, 1, 6, 7) and torch.equal(back(z), y)


def test_grid_result_frame_and_save(tmp_path) -> None:
    assert default_ks(12) == [0, 1, 2, 4, 8, 12] and default_ks(8) == [0, 1, 2, 4, 8]
    net, x, y = _setup()
    res = ablate(net, (x, y), layers="conv", seeds=2)
    frame = res.to_frame()
    # conv: m = 8 channels, rank r = min(8, 36) = 8
    assert sorted(frame[frame.basis == "svd-top"].k) == [0, 1, 2, 4, 8]
    assert len(frame[(frame.basis == "random") & (frame.k == 4)]) == 2
    summary = res.summary()
    rnd = summary[(summary.basis == "random") & (summary.k == 4)].iloc[0]
    part = frame[(frame.basis == "random") & (frame.k == 4)]
    assert rnd.accuracy == pytest.approx(part.accuracy.mean()) and rnd.n_seeds == 2
    assert rnd.accuracy_std == pytest.approx(part.accuracy.std(ddof=0))
    paths = res.save(tmp_path)
    assert [p.name for p in paths] == ["ablation.parquet", "ablation.csv", "ablation-summary.csv", "ablation.json"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ablation.parquet"), frame)
    meta = json.loads((tmp_path / "ablation.json").read_text())
    assert meta["options"]["bases"] == list(BASES) and meta["unmodified"]["conv"]["rank"] == 8


def test_bad_inputs_are_one_line_errors() -> None:
    net, x, y = _setup()
    for kwargs, match in (({"bases": ["svd"]}, "bases"), ({"ks": [-1]}, "ks"), ({"seeds": 0}, "seeds"),
                          ({"layers": "nope"}, "nope"), ({"layers": None}, "layers")):
        opts = dict(layers="conv") | kwargs
        with pytest.raises(InputError, match=match) as exc:
            ablate(net, (x, y), **opts)
        assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="label"):
        ablate(net, (x, -torch.ones(len(x), dtype=torch.long)), layers="conv", ks=[1])


@pytest.mark.slow  # a whole command
def test_cli_ablate_writes_frame_and_figure(tmp_path, capsys) -> None:
    out = tmp_path / "abl"
    rc = main(["ablate", "digits-cnn", "digits:test", "--layer", "fc2", "--k", "0,1,2", "--bases",
               "svd-top,random", "--seeds", "2", "--out", str(out)])
    assert rc == 0
    frame = pd.read_parquet(out / "ablation.parquet")
    assert set(frame.basis) == {"svd-top", "random"} and set(frame.k) == {0, 1, 2}
    assert (out / "ablation-fc2.png").read_bytes()[:4] == b"\x89PNG"
    assert "fc2" in capsys.readouterr().out
    for argv, what in ((["--bases", "svd-top,bogus"], "--bases"), (["--k", "1,x"], "--k"),
                       (["--k", "-1"], "--k"), (["--seeds", "0"], "--seeds")):
        assert main(["ablate", "digits-cnn", "digits:test", "--layer", "fc2", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and what in err and "Traceback" not in err
    assert main(["ablate", "digits-cnn", "digits:test", "--layer", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    net, x, y = _setup()
    cpu = ablate(net, (x, y), layers="conv", ks=[1, 2], seeds=2).to_frame()
    gpu = ablate(net, (x, y), layers="conv", ks=[1, 2], seeds=2, device="cuda").to_frame()
    assert next(net.parameters()).device.type == "cpu"  # moved back
    pd.testing.assert_frame_equal(cpu, gpu, rtol=1e-9)
