"""The report's budget rule for feature visualisation: one timed step decides how many layers (or steps) fit."""

from types import SimpleNamespace

import pytest

from convsvd.report import analysis


def _budgeted(monkeypatch: pytest.MonkeyPatch, per_step: float, budget: float, layers: list[str], steps: int):
    clock = [0.0]
    calls: list[tuple[str, int]] = []

    def run(name: str, n: int, bar: object) -> None:  # a step costs per_step seconds of the fake clock
        calls.append((name, n))
        clock[0] += per_step * n

    monkeypatch.setattr(analysis.time, "perf_counter", lambda: clock[0])
    monkeypatch.setitem(analysis.FEATURE_BUDGET, "quick", budget)
    fake = SimpleNamespace(options=SimpleNamespace(quick=True), neuron_notes=[])
    chosen, n = analysis.Analysis._feature_budget(fake, layers, steps, run)  # type: ignore[arg-type]
    return chosen, n, fake.neuron_notes, calls


LAYERS = [f"l{i}" for i in range(8)]


def test_everything_that_fits_runs_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, n, notes, calls = _budgeted(monkeypatch, per_step=0.1, budget=100, layers=LAYERS, steps=48)
    assert chosen == LAYERS and n == 48 and notes == []  # 8 × 48 × 0.1 s = 38 s ≤ 100 s
    assert calls == [("l7", 1)]  # the probe: one step of the deepest layer


def test_fewer_layers_evenly_spaced_when_they_do_not_all_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, n, notes, _ = _budgeted(monkeypatch, per_step=1.0, budget=150, layers=LAYERS, steps=48)
    assert n == 48 and len(chosen) == 3 and chosen[0] == "l0" and chosen[-1] == "l7"  # 150 // 48 = 3 layers
    assert 3 * 48 * 1.0 <= 150 < 4 * 48 * 1.0
    assert len(notes) == 1 and notes[0].kind == "warning"
    assert "3 of 8 layers" in notes[0].text and "6m24s" in notes[0].text and "2m30s" in notes[0].text
    chosen, _, _, _ = _budgeted(monkeypatch, per_step=1.0, budget=60, layers=LAYERS, steps=48)
    assert chosen == ["l7"]  # one fits: the deepest


def test_fewer_steps_when_not_one_layer_fits_and_none_below_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, n, notes, _ = _budgeted(monkeypatch, per_step=2.0, budget=60, layers=LAYERS, steps=48)
    assert chosen == ["l7"] and n == 30 and "30 steps instead of 48" in notes[0].text
    chosen, n, notes, _ = _budgeted(monkeypatch, per_step=10.0, budget=60, layers=LAYERS, steps=48)
    assert chosen == [] and notes[0].kind == "missing" and f"{analysis.FEATURE_MIN_STEPS} steps" in notes[0].text
