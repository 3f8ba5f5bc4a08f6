"""The slice and FFT-operator spectra of a convolution (convsvd.spectral.views)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from convsvd.errors import InputError
from convsvd.spectral import operator_singular_values, slice_singular_values

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _weight(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _circular_conv(W: torch.Tensor, groups: int = 1, dilation: int = 1):  # noqa: ANN202
    """x ↦ conv(x, W) with circular padding, stride 1: output size = input size."""
    dims = W.dim() - 2
    pad: list[int] = []
    for k in reversed(W.shape[2:]):
        total = dilation * (k - 1)
        pad += [total // 2, total - total // 2]

    def apply(x: torch.Tensor) -> torch.Tensor:
        return CONV[dims](F.pad(x, pad, mode="circular"), W, groups=groups, dilation=dilation)

    return apply


def _operator_matrix(W: torch.Tensor, n: tuple[int, ...], groups: int = 1, dilation: int = 1) -> torch.Tensor:
    """The convolution as an explicit (d·n^s) × (c·n^s) matrix."""
    conv = _circular_conv(W, groups, dilation)
    c = W.shape[1] * groups
    size = c * math.prod(n)
    basis = torch.eye(size, dtype=W.dtype).reshape(size, c, *n)
    return conv(basis).reshape(size, -1).T


def _power_iteration_norm(W: torch.Tensor, n: int, iters: int = 300) -> float:
    """‖A‖₂ of the circular convolution A, by power iteration on AᵀA (Aᵀ by autograd)."""
    conv = _circular_conv(W)
    x = torch.randn(1, W.shape[1], n, n, generator=torch.Generator().manual_seed(1), dtype=W.dtype)
    for _ in range(iters):
        x = x / x.norm()
        x.requires_grad_(True)
        y = conv(x)
        (adjoint,) = torch.autograd.grad(y, x, grad_outputs=y)  # Aᵀ A x
        x = adjoint.detach()
    x = x / x.norm()
    return float(conv(x).norm())


def test_largest_singular_value_is_the_norm_of_the_circular_convolution() -> None:
    W = _weight(8, 5, 3, 3)
    n = 10
    top = float(operator_singular_values(W, n).max())
    assert top == pytest.approx(_power_iteration_norm(W, n), rel=1e-4)


def test_full_spectrum_equals_the_explicit_operator_matrix() -> None:
    W = _weight(6, 4, 3, 3, seed=2)
    n = 7
    mine = torch.sort(operator_singular_values(W, n).flatten(), descending=True).values
    exact = torch.linalg.svdvals(_operator_matrix(W, (n, n)))
    torch.testing.assert_close(mine, exact[: mine.numel()], rtol=1e-10, atol=1e-10)


def test_parseval_sum_of_squares() -> None:
    W = _weight(16, 12, 5, 5, seed=3)
    for n in (5, 8, 13):
        s = operator_singular_values(W, n)
        assert float((s**2).sum()) == pytest.approx(n * n * float((W**2).sum()), rel=1e-12)


def test_equals_svdvals_of_the_fft_of_the_zero_padded_kernel() -> None:
    W = _weight(5, 7, 3, 2, seed=4)
    n = (6, 9)
    spectrum = torch.fft.fftn(W, s=n, dim=(2, 3)).permute(2, 3, 0, 1)
    torch.testing.assert_close(operator_singular_values(W, n)[0], torch.linalg.svdvals(spectrum))


def test_chunking_and_mirror_symmetry_do_not_change_the_result() -> None:
    W = _weight(4, 3, 3, 3, seed=5)
    full = operator_singular_values(W, 6)
    for chunk in (1, 13, 10**6):
        torch.testing.assert_close(operator_singular_values(W, 6, chunk_elements=chunk), full)
    # σ(ω) = σ(−ω): the spectrum is symmetric under (u, v) → (−u, −v).
    torch.testing.assert_close(full[0], torch.roll(torch.flip(full[0], (0, 1)), (1, 1), (0, 1)))


@pytest.mark.parametrize(("groups", "dilation"), [(1, 2), (2, 1), (4, 2)])
def test_grouped_and_dilated_convolutions(groups: int, dilation: int) -> None:
    W = _weight(8, 12 // groups, 3, 3, seed=6)
    n = 9
    s = operator_singular_values(W, n, groups=groups, dilation=dilation)
    assert s.shape == (groups, n, n, min(8 // groups, 12 // groups))
    mine = torch.sort(s.flatten(), descending=True).values
    exact = torch.linalg.svdvals(_operator_matrix(W, (n, n), groups, dilation))
    torch.testing.assert_close(mine, exact[: mine.numel()], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("shape", "n"), [((3, 5, 4), (11,)), ((2, 3, 2, 3, 2), (3, 4, 3))])
def test_conv1d_and_conv3d(shape: tuple[int, ...], n: tuple[int, ...]) -> None:
    W = _weight(*shape, seed=7)
    s = operator_singular_values(W, n)
    assert s.shape == (1, *n, min(shape[:2]))
    mine = torch.sort(s.flatten(), descending=True).values
    exact = torch.linalg.svdvals(_operator_matrix(W, n))
    torch.testing.assert_close(mine, exact[: mine.numel()], rtol=1e-10, atol=1e-10)


def test_float32_weights_are_computed_in_float32() -> None:
    W = _weight(8, 8, 3, 3, seed=8)
    s32 = operator_singular_values(W.float(), 8)
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), operator_singular_values(W, 8), rtol=1e-4, atol=1e-4)


def test_slices_equal_a_loop_over_kernel_taps() -> None:
    W = _weight(10, 6, 3, 3, seed=9)
    s = slice_singular_values(W)
    loop = torch.stack([torch.linalg.svdvals(W[:, :, i, j]) for i in range(3) for j in range(3)])
    assert s.shape == (9, 1, 6)
    torch.testing.assert_close(s[:, 0], loop)
    # The pooled slice spectrum carries all of the weight: Σσ² = ‖W‖_F².
    assert float((s**2).sum()) == pytest.approx(float((W**2).sum()), rel=1e-12)


def test_grouped_slices_split_into_diagonal_blocks() -> None:
    W = _weight(8, 3, 2, 2, seed=10)
    s = slice_singular_values(W, groups=2)
    loop = torch.stack(
        [
            torch.stack([torch.linalg.svdvals(W[4 * g : 4 * g + 4, :, i, j]) for g in range(2)])
            for i in range(2)
            for j in range(2)
        ]
    )
    torch.testing.assert_close(s, loop)
    s1 = slice_singular_values(_weight(5, 4, 3, seed=11))  # conv1d
    assert s1.shape == (3, 1, 4)


def test_invalid_inputs_raise() -> None:
    W = _weight(4, 4, 3, 3)
    with pytest.raises(InputError):
        operator_singular_values(W, 2)  # smaller than the kernel
    with pytest.raises(InputError):
        operator_singular_values(W, 4, dilation=2)  # smaller than the dilated kernel
    with pytest.raises(InputError):
        operator_singular_values(W, (5, 5, 5))
    with pytest.raises(InputError):
        operator_singular_values(W, 5, groups=3)
    with pytest.raises(InputError):
        slice_singular_values(torch.ones(4, 4))
    with pytest.raises(InputError):
        slice_singular_values(torch.ones(4, 4, 3, 3, dtype=torch.int64))
