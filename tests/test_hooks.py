"""The capture context: sites per call, outputs untouched, hooks always removed."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convsvd.signals import capture, eval_mode, signals


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


class Functional(nn.Module):
    """Functional forward, a module used twice, and a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.relu(self.conv(x))
        h = self.conv(h) + x  # second call of the same module
        pooled = h.mean(dim=(2, 3))
        return {"logits": self.head(pooled), "features": pooled}


class Tupled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), torch.tanh(self.lin(x))


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom inside forward")


def test_module_called_twice_gives_two_sites():
    torch.manual_seed(0)
    net = Functional().double().eval()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    with capture({"conv": net.conv, "head": net.head}) as cap:
        cap.reset()
        out = net(x)
        assert cap.sites == ["conv", "conv#1", "head"]
        first = net.conv(x)
        torch.testing.assert_close(cap.outputs["conv"], first, rtol=0, atol=0)
        torch.testing.assert_close(cap.outputs["conv#1"], net.conv(F.relu(first)), rtol=0, atol=0)
        cap.reset()  # counting restarts with every pass
        net(x)
        assert cap.sites == ["conv", "conv#1", "head"]
    assert set(out) == {"logits", "features"}
    assert hook_count(net) == 0


def test_outputs_bitwise_unchanged_during_and_after():
    torch.manual_seed(0)
    for net, x in [(Functional().eval(), torch.randn(3, 2, 6, 6)), (Tupled().eval(), torch.randn(3, 4))]:
        before = net(x)
        with capture(dict(net.named_modules())) as cap:
            cap.reset()
            during = net(x)
        after = net(x)
        flat = (lambda o: list(o.values()) if isinstance(o, dict) else list(o))
        for a, b, c in zip(flat(before), flat(during), flat(after)):
            assert torch.equal(a, b) and torch.equal(a, c)
        assert hook_count(net) == 0


def test_signal_sites_of_a_shared_module():
    torch.manual_seed(0)
    net = Functional().double().eval()
    s = signals(net, torch.randn(2, 2, 5, 5, dtype=torch.float64))
    assert list(s.values) == ["conv", "conv#1", "head"]
    assert not torch.equal(s.values["conv"], s.values["conv#1"])


def test_hooks_removed_when_forward_raises():
    net = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        with capture({"conv": net.conv}) as cap:
            cap.reset()
            net(torch.zeros(1, 1, 4, 4))
    assert hook_count(net) == 0
    assert cap.open == [] and cap.sites == ["conv"]


def test_hooks_removed_when_the_callback_raises():
    net = Tupled()

    def bad(site, key, y):
        raise ValueError("callback failed")

    with pytest.raises(ValueError, match="callback failed"):
        with capture({"lin": net.lin}, on_output=bad) as cap:
            cap.reset()
            net(torch.zeros(1, 4))
    assert hook_count(net) == 0


def test_callback_sees_the_output_before_an_inplace_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True)).double()
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    seen = {}
    with capture({"0": net[0]}, on_output=lambda site, key, y: seen.setdefault(site, y.clone())) as cap:
        cap.reset()
        net(x)
    assert (seen["0"] < 0).any()
    torch.testing.assert_close(seen["0"], net[0](x), rtol=0, atol=0)


def test_eval_mode_restores_flags_also_on_error():
    net = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2))
    net[1].eval()
    with pytest.raises(KeyError):
        with eval_mode(net):
            assert not any(m.training for m in net.modules())
            raise KeyError("x")
    assert [m.training for m in net.modules()] == [True, True, False]
