"""Values-only SVD of big layers: streamed in column blocks (same values), progress within the layer, log lines."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import convsvd.decompose as D
from convsvd._progress import progress
from convsvd.decompose import decompose


@pytest.fixture()
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream every matrix, in blocks of a few columns."""
    monkeypatch.setattr(D, "_STREAM_BYTES", 0)
    monkeypatch.setattr(D, "_BLOCK_BYTES", 8 * 7 * 64)


@pytest.mark.parametrize("shape", [(40, 130), (130, 40), (64, 64)])
def test_streamed_gram_equals_the_one_shot_route(shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(*shape, generator=g, dtype=torch.float64) * torch.logspace(0, -3, shape[1], dtype=torch.float64)
    monkeypatch.setattr(D, "_BLOCK_BYTES", 8 * 5 * min(shape))  # 5 columns (rows) per block
    streamed = D._streamed_gram_eigvalsh(W)
    one_shot, _, _ = D._gram_eigh(W.unsqueeze(0), vectors=False)
    assert torch.allclose(streamed, one_shot[0], rtol=0, atol=1e-12 * float(one_shot.max()))
    ref = torch.linalg.svdvals(W)
    assert torch.allclose(streamed.clamp_min(0).sqrt()[:10], ref[:10], rtol=1e-10)
    assert torch.isclose(streamed.sum(), (W**2).sum(), rtol=1e-12)  # trace(G) = ‖W̄‖²_F


def test_decompose_streams_grouped_convs_and_matches(tiny_blocks: None) -> None:
    conv = nn.Conv2d(8, 12, 3, groups=2).double()
    streamed = decompose(conv, mode="values", device="cpu", progress=False)["<root>"]
    ref = torch.linalg.svdvals(conv.weight.detach().reshape(2, 6, 36))
    assert streamed.S.shape == (2, 6)
    assert torch.allclose(streamed.S, ref, rtol=1e-10)
    assert torch.allclose(streamed.fro2, (conv.weight.detach().reshape(2, -1) ** 2).sum(1), rtol=1e-12)


def test_progress_moves_within_one_layer(tiny_blocks: None) -> None:
    steps: list[tuple[int, int]] = []
    decompose(nn.Linear(200, 30), mode="values", device="cpu", progress=lambda d, t, w: steps.append((d, t)))
    total = steps[-1][1]
    assert len(steps) > 5 and steps[-1][0] == total  # one step per block, then the solver
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)


def test_streamed_result_is_cached_with_its_identity(tiny_blocks: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    layer = nn.Linear(90, 20)
    a = decompose(layer, mode="values", device="cpu", cache_dir=tmp_path, progress=False)
    b = decompose(layer, mode="values", device="cpu", cache_dir=tmp_path, progress=False)
    assert b.notes == () and torch.equal(a["<root>"].S, b["<root>"].S) and len(list(tmp_path.iterdir())) == 1


def test_log_lines_with_eta_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVSVD_PROGRESS_INTERVAL", "0")
    with progress(4, "SVD", True) as bar:
        for i in range(4):
            bar.advance(1, f"block {i}")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"SVD: 1/4 \(25 %\), \d+s elapsed, about \d+s left · block 0", lines[0]), lines[0]
    assert lines[-1].startswith("SVD: 4/4 (100 %)") and "left" not in lines[-1]


def test_short_work_prints_no_log_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVSVD_PROGRESS_INTERVAL", "3600")
    with progress(4, "SVD", True) as bar:
        bar.advance(4)
    assert capsys.readouterr().err == ""
