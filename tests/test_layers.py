"""The identity the SVD rests on: a layer equals its unfolded matrices applied to patches."""

import itertools

import pytest
import torch
from torch import nn

from convsvd.io import from_module
from convsvd.layers import describe, fold_batchnorm, unfolded
from unfold_reference import apply_unfolded, im2col

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _grid():
    cases = []
    for dims, k, stride, pad, dil, groups in itertools.product(
        (1, 2, 3), (1, 2, 3), (1, 2), (0, 1, "same"), (1, 2), (1, 2, 6)
    ):
        if pad == "same" and stride != 1:
            continue  # PyTorch forbids 'same' with stride > 1
        cases.append((dims, k, stride, pad, dil, groups))
    return cases


@pytest.mark.parametrize("dims,k,stride,pad,dil,groups", _grid())
def test_conv_equals_unfolded_product(dims, k, stride, pad, dil, groups):
    cin, cout = 6, 12  # groups=6 is depthwise
    mod = CONV[dims](cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups).double()
    x = torch.randn(2, cin, *([7] * dims), dtype=torch.float64)
    spec = from_module(mod).layers[0]
    assert spec.unfolded_shape == (cout // groups, cin // groups * k**dims)
    torch.testing.assert_close(apply_unfolded(x, spec), mod(x), atol=1e-10, rtol=0)
    # and U Σ Vᵀ reconstructs every W̄_j
    W = unfolded(spec)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    torch.testing.assert_close(U @ torch.diag_embed(S) @ Vh, W, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("dims", [1, 2])
def test_padding_modes(mode, dims):
    mod = CONV[dims](3, 5, 3, padding=2, padding_mode=mode, groups=1).double()
    x = torch.randn(2, 3, *([6] * dims), dtype=torch.float64)
    spec = from_module(mod).layers[0]
    torch.testing.assert_close(apply_unfolded(x, spec), mod(x), atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "dims,k,stride,pad,outpad,dil,groups",
    [(1, 3, 2, 1, 1, 1, 1), (1, 4, 3, 2, 0, 1, 2), (2, 3, 2, 1, 1, 2, 2), (2, 2, 1, 0, 0, 1, 4),
     (2, 3, 1, 1, 0, 1, 4), (3, 2, 2, 0, 1, 1, 1), (3, 3, 1, 1, 0, 2, 2)],
)
def test_conv_transpose_equals_col2im_of_unfolded(dims, k, stride, pad, outpad, dil, groups):
    mod = TCONV[dims](4, 8, k, stride=stride, padding=pad, output_padding=outpad, dilation=dil, groups=groups).double()
    x = torch.randn(2, 4, *([5] * dims), dtype=torch.float64)
    spec = from_module(mod).layers[0]
    assert spec.unfolded_shape == (4 // groups, 8 // groups * k**dims)
    torch.testing.assert_close(apply_unfolded(x, spec), mod(x), atol=1e-10, rtol=0)


def test_linear_and_one_by_one():
    lin = nn.Linear(7, 3).double()
    x = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(apply_unfolded(x, from_module(lin).layers[0]), lin(x), atol=1e-12, rtol=0)
    one = nn.Conv2d(1, 1, 1).double()
    spec = from_module(one).layers[0]
    assert spec.unfolded_shape == (1, 1)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(apply_unfolded(x, spec), one(x), atol=1e-12, rtol=0)


def test_im2col_matches_torch_unfold_for_2d():
    mod = nn.Conv2d(3, 4, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    spec = from_module(mod).layers[0]
    x = torch.randn(2, 3, 8, 9)
    patches, out_shape = im2col(x, spec)
    ref = torch.nn.functional.unfold(x, (2, 3), dilation=(1, 2), padding=(1, 2), stride=(2, 1))
    torch.testing.assert_close(patches[:, 0], ref)
    assert out_shape == mod(x).shape[2:]


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.again = self.conv  # the same layer registered twice
        self.lazy = nn.LazyLinear(3)

    def forward(self, x):
        return self.lazy(self.again(self.conv(x)).flatten(1))


def test_module_tree_shared_and_lazy_layers():
    m = _Shared()
    mw = from_module(m)
    assert mw.names == ["conv"]  # shared once, lazy not yet materialised
    assert any(s.name == "lazy" and "lazy" in s.reason for s in mw.skipped)
    m(torch.randn(1, 2, 4, 4))  # materialise
    mw = from_module(m)
    assert mw.names == ["conv", "lazy"]
    assert mw["lazy"].kind == "linear" and mw["lazy"].weight.shape == (3, 32)


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 3)
        self.fc = nn.Linear(4, 2)
        self.bn1d = nn.BatchNorm1d(2)

    def forward(self, x):
        y = self.conv2(torch.relu(self.bn(self.conv(x))))
        return self.bn1d(self.fc(y.mean(dim=(2, 3))))


def test_fold_batchnorm_gives_the_effective_map_and_leaves_the_model_unchanged():
    m = _ConvBN().double()
    with torch.no_grad():  # non-trivial running statistics
        for bn in (m.bn, m.bn1d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    m.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    folded = fold_batchnorm(from_module(m))
    assert folded["conv"].folded == "bn" and folded["fc"].folded == "bn1d" and folded["conv2"].folded is None
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(apply_unfolded(x, folded["conv"]), m.bn(m.conv(x)), atol=1e-10, rtol=0)
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fold_batchnorm_falls_back_on_registration_order_when_untraceable():
    class Untraceable(nn.Sequential):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return super().forward(x)
            return super().forward(-x)

    m = Untraceable(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).eval()
    assert fold_batchnorm(from_module(m))["0"].folded == "1"


def test_describe_lists_layers_and_skipped_with_reasons():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(),
                      nn.Embedding(4, 2))
    df = describe(m)
    ok = df[df.status == "analysed"]
    assert ok.name.tolist() == ["0", "2"]
    assert ok.unfolded_shape.tolist() == ["8×27", "1×9"]
    assert ok.groups.tolist() == [1, 8]
    assert ok.params.tolist() == [8 * 27 + 8, 8 * 9 + 8]
    skipped = df[df.status == "skipped"]
    assert set(skipped.name) == {"1.weight", "1.bias", "4.weight"}
    assert skipped.reason.str.contains("not a linear map").all()
