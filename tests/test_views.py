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


# --------------------------------------------------------------------------- each layer at its own size


def _two_layer_net() -> torch.nn.Module:
    torch.manual_seed(12)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, stride=2, padding=1, padding_mode="circular"),
        torch.nn.ReLU(),
        torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
    ).double()


def test_operator_view_at_each_layers_own_size_equals_the_explicit_operator() -> None:
    from convsvd.spectral import spectrum

    net = _two_layer_net()
    res = spectrum(net, view="operator", input_shape=(2, 10, 9))
    for name, size in (("0", (10, 9)), ("2", (5, 5))):  # the stride-2 first layer halves the maps
        layer = res[name]
        assert layer.n == layer.input_size == size and layer.n_reason == ""
        W = net[int(name)].weight.detach()
        exact = torch.linalg.svdvals(_operator_matrix(W, size))
        mine = torch.sort(torch.from_numpy(layer.evals * max(layer.shape)).sqrt(), descending=True).values
        torch.testing.assert_close(mine, exact[: mine.numel()], rtol=1e-10, atol=1e-10)
    row = res.to_frame().set_index("name").loc["2"]
    assert (row["n"], row["input_size"], row["n_reason"]) == ("5×5", "5×5", "")


def test_without_a_size_the_default_grid_is_used_and_said() -> None:
    from convsvd.spectral import DEFAULT_OPERATOR_N, spectrum

    layer = spectrum(_two_layer_net(), view="operator")["2"]
    assert layer.n == (DEFAULT_OPERATOR_N,) * 2 and layer.input_size is None
    assert "unknown" in layer.n_reason and "input shape" in layer.n_reason
    given = spectrum(_two_layer_net(), view="operator", n=7, input_shape=(2, 10, 9))["2"]
    assert given.n == (7, 7) and given.input_size is None and given.n_reason == ""  # n given: nothing traced


def test_budget_fallback_picks_the_largest_grid_that_fits_and_states_the_reason() -> None:
    from convsvd.spectral import operator_blocks, plan_operator
    from convsvd.spectral.cost import block_operations

    per_block = block_operations(64, 32, taps=9)
    rate = 1e9
    plan = plan_operator((64, 32, 3, 3), size=(56, 48), budget=0.5, rate=rate)
    assert plan.size == (56, 48) and plan.n[0] < 56 and plan.n[1] < 48
    assert plan.blocks == operator_blocks(plan.n) and plan.seconds <= 0.5
    assert plan.seconds == pytest.approx(plan.blocks * per_block / rate)
    bigger = tuple(s + 1 for s in plan.n)
    assert operator_blocks(bigger) * per_block / rate > 0.5  # one more row and column would not fit
    assert plan.reason.startswith("budget 0.5 s") and "56×48" in plan.reason and "×".join(map(str, plan.n)) in plan.reason
    roomy = plan_operator((64, 32, 3, 3), size=(56, 48), budget=1e6, rate=rate)
    assert roomy.n == (56, 48) and roomy.reason == ""
    tiny = plan_operator((64, 32, 3, 3), size=(56, 48), budget=1e-12, rate=rate)
    assert tiny.n == (3, 3) and "smallest grid" in tiny.reason
    small = plan_operator((8, 8, 5, 5), size=(3, 3))  # a map smaller than the kernel: the kernel's extent
    assert small.n == (5, 5) and "less than its dilated kernel" in small.reason
    with pytest.raises(InputError, match="budget"):
        plan_operator((8, 8, 3, 3), size=(8, 8), budget=0.0)


def test_spectrum_budget_reduces_n_in_the_result() -> None:
    from convsvd.spectral import spectrum

    res = spectrum(_two_layer_net(), view="operator", input_shape=(2, 40, 40), budget=1e-9)
    frame = res.to_frame().set_index("name")
    for name, size in (("0", (40, 40)), ("2", (20, 20))):
        assert res[name].input_size == size and res[name].n == (3, 3)
        assert frame.loc[name, "n"] == "3×3" and "budget" in frame.loc[name, "n_reason"]
    assert res.options["budget"] == 1e-9
    with pytest.raises(InputError, match="budget"):
        spectrum(_two_layer_net(), view="operator", budget=-1)


def test_progress_within_a_layer_counts_every_frequency_once() -> None:
    W = _weight(4, 3, 3, 3, seed=13)
    seen: list[tuple[int, int]] = []
    operator_singular_values(W, (6, 5), chunk_elements=4 * 3 * 4, progress=lambda d, t: seen.append((d, t)))
    total = (6 * 5 + 2) // 2  # one of each ±ω pair: (F + self-conjugate frequencies) / 2
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted({d for d, _ in seen})
    assert len(seen) == -(-total // 4)


@pytest.mark.slow  # a whole command
def test_cli_operator_view_uses_each_layers_size_and_the_budget(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from convsvd import zoo
    from convsvd.cli import main
    from convsvd.shapes import trace_input_sizes

    traced = trace_input_sizes(zoo.load("digits-cnn"), zoo.model_info("digits-cnn").input_shape)
    assert main(["spectrum", "digits-cnn", "--view", "operator", "--out", str(tmp_path / "a")]) == 0
    frame = pd.read_csv(tmp_path / "a" / "spectrum.csv", keep_default_na=False).set_index("name")
    for name, size in traced.items():  # a map smaller than the 3×3 kernel is analysed on 3×3
        assert frame.loc[name, "input_size"] == "×".join(map(str, size))
        assert frame.loc[name, "n"] == "×".join(str(max(s, 3)) for s in size)
    assert main(["spectrum", "digits-cnn", "--view", "operator", "--view-budget", "1e-9", "--layers", "conv2",
                 "--out", str(tmp_path / "b")]) == 0
    row = pd.read_csv(tmp_path / "b" / "spectrum.csv", keep_default_na=False).iloc[0]
    assert row["n"] == "3×3" and "budget" in row["n_reason"]
    capsys.readouterr()
    assert main(["spectrum", "digits-cnn", "--view", "operator", "--view-budget", "0"]) == 2
    assert "view-budget" in capsys.readouterr().err


def test_progress_off_a_terminal_is_log_lines_with_an_eta(capsys) -> None:  # type: ignore[no-untyped-def]
    from convsvd.spectral._meter import meter

    with meter("operator view of conv", 10, every=0.0) as tick:
        for done in (4, 8, 10):
            tick(done, 10)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("operator view of conv: 4/10 blocks")
    assert all("ETA" in line for line in lines) and lines[-1].endswith("ETA 0.0 s")


@pytest.mark.parametrize("groups", [1, 2])
def test_a_1x1_kernel_is_one_svd_per_group_at_every_frequency(groups: int) -> None:
    W = _weight(6, 4 // groups, 1, 1, seed=14)
    n = (5, 4)
    s = operator_singular_values(W, n, groups=groups)
    assert s.shape == (groups, *n, min(6 // groups, 4 // groups))
    mine = torch.sort(s.flatten(), descending=True).values
    exact = torch.linalg.svdvals(_operator_matrix(W, n, groups))
    torch.testing.assert_close(mine, exact[: mine.numel()], rtol=1e-10, atol=1e-10)
    from convsvd.spectral import plan_operator

    assert plan_operator(tuple(W.shape), groups=groups, size=(56, 56)).blocks == groups
