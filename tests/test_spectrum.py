"""The model-level spectral analysis (convsvd.spectral.spectrum / compare) and its CLI.

The kernels (power-law fit, MP fit, views) have their own tests; these check what the
analysis of a whole model adds: statuses of degenerate layers, batching, precision,
the three views' normalisations, the randomised baseline, the phenomenology rule,
compare() on the shipped checkpoints and the two commands.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from convsvd import zoo
from convsvd.cli import main
from convsvd.errors import InputError
from convsvd.io import LayerSpec, ModelWeights
from convsvd.spectral import (
    FRAME_COLUMNS,
    PHENOMENOLOGIES,
    SUMMARY_KEYS,
    MPFit,
    SpectrumResult,
    classify,
    compare,
    esd_distance,
    randomize,
    shuffle_entries,
    spectrum,
)
from convsvd.spectral.shuffle import layer_seed


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


@pytest.fixture(scope="module")
def trained() -> SpectrumResult:
    return spectrum(zoo.load("digits-cnn"), mp=True, random_baseline=True)


@pytest.fixture(scope="module")
def initial() -> SpectrumResult:
    return spectrum(zoo.load("digits-cnn", epoch=0), mp=True)


# --------------------------------------------------------------------------- result shape


def test_table_has_the_documented_columns_and_summary(trained: SpectrumResult) -> None:
    frame = trained.to_frame()
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame.name.tolist() == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    ok = frame[frame.status == "ok"]
    np.testing.assert_allclose(ok.alpha_weighted, ok.alpha * np.log10(ok.lambda_max), rtol=1e-12)
    assert (ok.num_pl_spikes >= 2).all() and set(ok.phenomenology) <= set(PHENOMENOLOGIES)
    one = trained.summary()
    assert isinstance(one, pd.DataFrame) and len(one) == 1 and list(one.columns) == list(SUMMARY_KEYS)
    summary = one.iloc[0]
    head = ok[ok.headline.astype(bool)]
    assert set(head.name) == {"conv2", "conv3", "fc1"}  # conv1 (9) and fc2 (10 eigenvalues) are too small
    assert summary["alpha_hat"] == pytest.approx(head.alpha_weighted.mean(), rel=1e-12)
    assert summary["alpha_hat_all"] == pytest.approx(ok.alpha_weighted.mean(), rel=1e-12)
    assert summary["n_headline"] == 3
    pd.testing.assert_frame_equal(one, compare([trained])[list(SUMMARY_KEYS)])  # compare stacks these rows
    assert summary["alpha"] == pytest.approx(head.alpha.mean(), rel=1e-12)
    assert (summary["n_layers"], summary["n_analysed"], summary["n_failed"]) == (5, 4, 1)
    assert trained["conv1"].status == "too_few"  # 9 eigenvalues < min_evals = 10
    assert len(trained.model_hash) == 64
    with pytest.raises(InputError, match="nope"):
        trained["nope"]


def test_alpha_equals_powerlaw_15_on_real_layers(trained: SpectrumResult) -> None:
    powerlaw = pytest.importorskip("powerlaw")
    for name in ("conv2", "conv3", "fc1"):
        layer = trained[name]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = powerlaw.Fit(layer.evals, verbose=False)
        assert abs(layer.alpha - ref.alpha) < 1e-6
        assert layer.fit.xmin == pytest.approx(ref.xmin, rel=1e-12)
        assert abs(layer.fit.D - ref.D) < 1e-6
        assert layer.fit.n_tail == int(ref.n)


# --------------------------------------------------------------------------- degenerate layers


def test_degenerate_layers_get_nan_metrics_and_a_status_the_rest_is_analysed() -> None:
    g = _gen(1)
    nan_weight = torch.randn(128, 64, generator=g)
    nan_weight[3, 5] = float("nan")
    model = nn.Sequential(
        _linear(torch.randn(128, 64, generator=g)),  # ok
        _linear(torch.randn(128, 1, generator=g) @ torch.randn(1, 64, generator=g)),  # rank one
        _linear(torch.randn(5, 3, generator=g)),  # 3 eigenvalues
        _linear(torch.zeros(32, 64)),  # all zero
        _linear(nan_weight),  # skipped at load time
        _linear(torch.full((40, 64), 0.5)),  # constant: rank one
        _linear(torch.randn(96, 48, generator=g)),  # ok, after the others
    )
    res = spectrum(model, mp=True, random_baseline=True)
    frame = res.to_frame()
    assert frame.name.tolist() == [str(i) for i in range(7)]  # model order, skipped layer included
    assert frame.status.tolist() == ["ok", "rank_one", "too_few", "zero", "nonfinite", "rank_one", "ok"]
    bad = frame[frame.status != "ok"]
    fitted = ["alpha", "alpha_weighted", "xmin", "D", "sigma", "num_pl_spikes", "num_spikes", "mp_softrank",
              "rand_distance", "rand_lambda_max"]
    assert bad[fitted].isna().all().all()
    assert (bad.phenomenology == "").all()
    good = frame[frame.status == "ok"]
    assert good[fitted].notna().all().all()
    assert res.summary()[["n_failed", "n_analysed"]].values.tolist() == [[5, 2]]
    # the norms stay defined where they make sense
    assert frame.loc[1, "lambda_max"] > 0 and frame.loc[1, "stable_rank"] == pytest.approx(1.0, abs=1e-4)
    assert math.isnan(frame.loc[3, "lambda_max"]) and math.isnan(frame.loc[4, "log_norm"])


def test_nan_weights_given_directly_are_reported_not_raised() -> None:
    W = torch.randn(20, 30, generator=_gen(2))
    bad = W.clone()
    bad[0, 0] = float("inf")
    mw = ModelWeights((LayerSpec("good", "linear", W), LayerSpec("bad", "linear", bad)), source="direct")
    frame = spectrum(mw).to_frame()
    assert frame.status.tolist() == ["ok", "nonfinite"]


def test_layers_pattern_selects_and_unknown_pattern_is_one_line() -> None:
    res = spectrum(zoo.load("digits-cnn"), layers="conv*")
    assert res.names == ["conv1", "conv2", "conv3"]
    with pytest.raises(InputError, match="nothing_like_this"):
        spectrum(zoo.load("digits-cnn"), layers="nothing_like_this")
    with pytest.raises(InputError, match="view"):
        spectrum(zoo.load("digits-cnn"), view="fft")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- batching, precision


def test_whole_model_equals_layer_at_a_time(trained: SpectrumResult) -> None:
    model = zoo.load("digits-cnn")
    for layer in trained.layers:
        alone = spectrum(model, layers=layer.name, mp=True, random_baseline=True).layers[0]
        np.testing.assert_array_equal(alone.evals, layer.evals)
        assert alone.status == layer.status
        if layer.ok:
            assert alone.fit == layer.fit and alone.mp == layer.mp
            np.testing.assert_array_equal(alone.random.evals, layer.random.evals)
            assert alone.random.distance == layer.random.distance


def test_float32_and_float64_spectra_agree() -> None:
    heavy = torch.distributions.StudentT(2.5).sample((384, 1536)) * 0.05
    model = nn.Sequential(_linear(heavy), zoo.load("digits-cnn"))
    f32 = spectrum(model, dtype="float32")
    f64 = spectrum(model, dtype="float64")
    assert f32.options["dtype"] == "float32" and f64.options["dtype"] == "float64"
    assert spectrum(model).options["dtype"] == "float32"  # float32 weights: float32 Gram by default
    for a, b in zip(f32.layers, f64.layers):
        assert a.status == b.status
        top = b.evals.max()
        assert np.abs(a.evals - b.evals).max() <= 1e-6 * top, a.name
        if b.ok:
            assert a.alpha == pytest.approx(b.alpha, abs=1e-5)
            assert a.fit.xmin == pytest.approx(b.fit.xmin, rel=1e-5)
            assert a.fit.n_tail == b.fit.n_tail


# --------------------------------------------------------------------------- views


def test_three_views_normalisations_and_counts() -> None:
    torch.manual_seed(4)
    conv = nn.Conv2d(6, 10, 3, groups=2, padding=1).double()
    fc = nn.Linear(40, 30).double()
    model = nn.Sequential(conv, nn.Flatten(), fc)
    W = conv.weight.detach()
    fro2 = float((W**2).sum())
    n = 6
    res = {v: spectrum(model, view=v, n=n) for v in ("unfold", "slices", "operator")}
    unfold, slices, op = (res[v]["0"] for v in ("unfold", "slices", "operator"))
    # unfold: 2 groups of 5 × 27; N = 27
    assert unfold.shape == (5, 27) and unfold.evals.size == 2 * 5
    assert unfold.evals.sum() * 27 == pytest.approx(fro2, rel=1e-12)
    # slices: 9 taps × 2 groups of 5 × 3 blocks; N = 5; the slices partition W
    assert slices.shape == (5, 3) and slices.evals.size == 9 * 2 * 3
    assert slices.evals.sum() * 5 == pytest.approx(fro2, rel=1e-12)
    # operator: 2 groups × n² frequencies of 5 × 3 blocks; N = 5; Parseval
    assert op.shape == (5, 3) and op.evals.size == 2 * n * n * 3 and op.n_matrices == 2 * n * n
    assert op.evals.sum() * 5 == pytest.approx(n * n * fro2, rel=1e-10)
    assert op.log_norm == pytest.approx(math.log10(n * n * fro2), rel=1e-10)
    # the largest operator eigenvalue is the squared norm of the explicit circular convolution / N
    basis = torch.eye(6 * n * n, dtype=torch.float64).reshape(-1, 6, n, n)
    conv_c = nn.functional.conv2d(nn.functional.pad(basis, [1, 1, 1, 1], mode="circular"), W, groups=2)
    top = float(torch.linalg.matrix_norm(conv_c.reshape(6 * n * n, -1).T, ord=2)) ** 2
    assert op.lambda_max == pytest.approx(top / 5, rel=1e-10)
    # a linear layer is its own matrix in every view
    for v in ("slices", "operator"):
        np.testing.assert_array_equal(res[v]["2"].evals, res["unfold"]["2"].evals)


def test_operator_view_needs_a_grid_at_least_the_kernel() -> None:
    with pytest.raises(InputError, match="n"):
        spectrum(zoo.load("digits-cnn"), view="operator", n=2)
    with pytest.raises(InputError, match="n 0"):
        spectrum(zoo.load("digits-cnn"), view="operator", n=0)


# --------------------------------------------------------------------------- randomised baseline


def test_random_baseline_of_a_gaussian_layer_is_close_of_a_low_rank_layer_is_not() -> None:
    g = _gen(5)
    gaussian = torch.randn(256, 1024, generator=g)
    planted = torch.randn(256, 4, generator=g) @ torch.randn(4, 1024, generator=g) + 0.3 * torch.randn(256, 1024, generator=g)
    res = spectrum(nn.Sequential(_linear(gaussian), _linear(planted)), random_baseline=True, mp=True)
    gauss, low = res.layers
    # stated bound (spectrum docstring): an i.i.d. Gaussian layer is within KS 0.05 of its shuffle
    assert gauss.random.distance < 0.05
    assert gauss.random.lambda_max == pytest.approx(gauss.lambda_max, rel=0.05)
    assert gauss.phenomenology == "random-like" and gauss.mp.num_spikes == 0
    assert low.random.distance > 0.5
    assert low.random.lambda_max < 0.1 * low.lambda_max  # the spikes do not survive the shuffle
    assert res.options["distance"] == "ks"


def test_shuffle_is_a_seeded_permutation_of_the_entries() -> None:
    W = torch.randn(7, 3, 2, 5, generator=_gen(6))
    S = shuffle_entries(W, seed=1)
    assert S.shape == W.shape and not torch.equal(S, W)
    assert torch.equal(torch.sort(S.flatten()).values, torch.sort(W.flatten()).values)
    assert torch.equal(S, shuffle_entries(W, seed=1)) and not torch.equal(S, shuffle_entries(W, seed=2))
    assert layer_seed(0, "a") != layer_seed(0, "b")
    with pytest.raises(InputError):
        shuffle_entries(torch.empty(0, 3))


def test_shuffle_rolls_rows_the_same_way_by_gather_and_row_by_row(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import convsvd.spectral.shuffle as shuffle_module

    W = torch.randn(40, 70, generator=_gen(8))
    by_gather = shuffle_entries(W, seed=3)
    monkeypatch.setattr(shuffle_module, "_GATHER_MAX", 0)  # force the row-by-row copies
    assert torch.equal(shuffle_entries(W, seed=3), by_gather)


def test_fast_shuffle_gives_the_esd_of_a_uniform_shuffle() -> None:
    # rows scaled by log-normal factors: the case where a 2-pass shuffle would be biased
    g = _gen(7)
    W = torch.exp(1.5 * torch.randn(256, 1, generator=g)) * torch.randn(256, 1024, generator=g)

    def esd(A: torch.Tensor) -> np.ndarray:
        A = A.double()
        return torch.linalg.eigvalsh(A @ A.T).numpy() / 1024

    uniform = [esd(randomize(W, generator=s)) for s in range(4)]
    fast = [esd(shuffle_entries(W, seed=100 + s)) for s in range(4)]
    spread = max(esd_distance(uniform[i], uniform[j], "ks") for i in range(4) for j in range(i + 1, 4))
    across = max(esd_distance(u, f, "ks") for u in uniform for f in fast)
    assert across <= 1.5 * spread
    lmax_u, lmax_f = [u[-1] for u in uniform], [f[-1] for f in fast]
    assert abs(np.mean(lmax_f) - np.mean(lmax_u)) < 3 * np.std(lmax_u) + 0.02 * np.mean(lmax_u)
    assert esd_distance(esd(W), uniform[0], "ks") > 0.5  # and the structure itself is far


# --------------------------------------------------------------------------- phenomenology


def _mp(num_spikes: int, softrank: float) -> MPFit:
    return MPFit(1.0, 2.0, 0.1, 2.9, 3.0, num_spikes, (5.0,) * num_spikes, softrank, "ok")


def test_phenomenology_rule() -> None:
    lam = np.linspace(0.5, 3.0, 100)
    assert classify(lam, 1.5) == "very heavy-tailed"
    assert classify(lam, 2.0) == classify(lam, 6.0) == "heavy-tailed"
    assert classify(lam, 8.0) == "random-like"  # no MP fit: every α > 6 is random-like
    assert classify(lam, 8.0, _mp(0, 0.97)) == "random-like"
    assert classify(lam, 8.0, _mp(2, 0.8)) == "bleeding-out"
    assert classify(lam, 8.0, _mp(2, 0.3)) == "bulk+spikes"
    collapsed = np.concatenate([np.zeros(60), lam[:40]])
    assert classify(collapsed, 3.0) == "rank-collapse"
    assert classify(lam, float("nan")) == ""


def test_trained_digits_cnn_is_more_heavy_tailed_than_its_initialisation(
    trained: SpectrumResult, initial: SpectrumResult
) -> None:
    for name in ("conv2", "conv3", "fc1"):
        t, i = trained[name], initial[name]
        assert t.alpha < i.alpha - 1.0, name
        assert t.mp.num_spikes >= i.mp.num_spikes + 5, name
        assert t.lambda_max > 3 * i.lambda_max, name
        assert i.mp.num_spikes == 0
    assert trained.summary()["alpha"].iloc[0] < initial.summary()["alpha"].iloc[0] - 1.0


# --------------------------------------------------------------------------- compare


def test_compare_shipped_checkpoints_one_row_each() -> None:
    files = zoo.checkpoints("digits-cnn")[::5]
    frame = compare(files)
    assert len(frame) == len(files) == 5
    assert frame.label.tolist() == [p.stem for p in files]
    assert np.isfinite(frame.alpha_hat).all() and (frame.n_analysed == 4).all()
    assert list(frame.columns) == ["label", "source", "view", "convention", *SUMMARY_KEYS]
    mixed = compare([zoo.load("digits-cnn"), zoo.load("digits-cnn"), spectrum(zoo.load("digits-cnn", epoch=0))])
    assert mixed.label.tolist() == ["DigitsCNN", "DigitsCNN#2", "DigitsCNN#3"]
    assert mixed.alpha_hat[0] == mixed.alpha_hat[1] == spectrum(zoo.load("digits-cnn")).summary()["alpha_hat"].iloc[0]
    assert mixed.alpha_hat[2] == pytest.approx(frame.alpha_hat.iloc[0], rel=1e-12)  # epoch 0 from its file
    with pytest.raises(InputError, match="labels"):
        compare(files, labels=["a"])


# --------------------------------------------------------------------------- CLI


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_spectrum_command_writes_tables_metadata_and_figures(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    out = tmp_path / "out"
    code, stdout, _ = _run(["spectrum", "digits-cnn", "--mp", "--random-baseline", "--out", str(out)], capsys)
    assert code == 0 and "summary: α̂ =" in stdout and "conv3" in stdout
    frame = pd.read_parquet(out / "spectrum.parquet")
    assert list(frame.columns) == list(FRAME_COLUMNS) and len(frame) == 5
    csv = pd.read_csv(out / "spectrum.csv")
    np.testing.assert_allclose(csv.alpha, frame.alpha, rtol=1e-12)
    meta = json.loads((out / "spectrum.json").read_text())
    assert meta["options"]["mp"] is True and len(meta["model_hash"]) == 64
    assert meta["summary"]["n_analysed"] == 4
    for name in ["alpha-depth.png"] + [f"esd-{n}.png" for n in frame.name]:
        img = np.asarray(Image.open(out / name).convert("L"))
        assert img.shape[0] > 200 and img.std() > 5, name


@pytest.mark.slow
def test_compare_command_accepts_zoo_epochs_and_files(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ckpt = str(zoo.checkpoints("digits-cnn")[10])
    code, stdout, _ = _run(["compare", "digits-cnn@0", ckpt, "digits-cnn", "--labels", "init", "e10", "final",
                            "--out", str(tmp_path)], capsys)
    assert code == 0 and "alpha_hat" in stdout and "init" in stdout
    frame = pd.read_csv(tmp_path / "compare.csv")
    assert frame.label.tolist() == ["init", "e10", "final"]
    assert frame.alpha_hat.iloc[1] == pytest.approx(compare([ckpt]).alpha_hat.iloc[0], rel=1e-12)


@pytest.mark.parametrize(
    "argv",
    [
        ["spectrum", "no/such/model.pt"],
        ["spectrum", "digits-cnn", "--layers", "nope*"],
        ["spectrum", "digits-cnn", "--view", "operator", "--n", "0"],
        ["compare", "digits-cnn@x"],
        ["compare", "digits-cnn@99"],
        ["compare", "digits-cnn", "digits-cnn@1", "--labels", "only-one"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, stderr = _run(argv, capsys)
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"convsvd {argv[0]}: error:"), stderr


def test_random_baseline_is_the_spectrum_of_the_seeded_shuffle() -> None:
    # float32 weights: the shuffled spectra are solved in float32 (documented error ~2e-5·λmax)
    g = torch.Generator().manual_seed(7)
    model = nn.Sequential(_linear(torch.randn(96, 640, generator=g) * 0.05), nn.ReLU(),
                          _linear(torch.randn(48, 96, generator=g) * 0.1))
    res = spectrum(model, random_baseline=True, seed=3)
    for name, lin in (("0", model[0]), ("2", model[2])):
        X = shuffle_entries(lin.weight.detach(), layer_seed(3, name)).double()
        ref = np.sort(torch.linalg.svdvals(X).numpy() ** 2 / max(X.shape))
        got = res[name].random.evals
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 2e-5 * ref.max()
        assert res[name].random.lambda_max == pytest.approx(ref[-1], rel=2e-5)
