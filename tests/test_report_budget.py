"""The report's budget rule for feature visualisation: one timed step decides how many layers (or steps) fit."""

from types import SimpleNamespace

import pytest

from convsvd.report import analysis


def _budgeted(monkeypatch: pytest.MonkeyPatch, per_step: float, budget: float, layers: list[str], steps: int):
    clock = [0.0]
    calls: list[tuple[str, int]] = []

    def run(name: str, n: int, bar: object) -> None:  # setting up takes 100 s, a step per_step s of the fake clock
        calls.append((name, n))
        clock[0] += 100.0
        for i in range(n):
            clock[0] += per_step
            if callable(bar):
                bar(i + 1, n, "step")

    monkeypatch.setattr(analysis.time, "perf_counter", lambda: clock[0])
    monkeypatch.setitem(analysis.FEATURE_BUDGET, "quick", budget)
    fake = SimpleNamespace(options=analysis.Options(quick=True), neuron_notes=[])
    chosen, n = analysis.Analysis._feature_budget(fake, layers, steps, run)  # type: ignore[arg-type]
    return chosen, n, fake.neuron_notes, calls


LAYERS = [f"l{i}" for i in range(8)]


def test_everything_that_fits_runs_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, n, notes, calls = _budgeted(monkeypatch, per_step=0.1, budget=100, layers=LAYERS, steps=48)
    assert chosen == LAYERS and n == 48 and notes == []  # 8 × 48 × 0.1 s = 38 s ≤ 100 s
    # the probes: a few steps of the deepest layer and of the first
    assert calls == [("l7", analysis.FEATURE_PROBE_STEPS), ("l0", analysis.FEATURE_PROBE_STEPS)]


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


def test_attribution_profiles_are_cut_to_the_inputs_that_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first PROFILE_PROBE inputs are timed; the count is cut to what the budget allows, and said."""
    import convsvd.profiles as profiles

    clock = [0.0]
    calls: list[int] = []

    def fake_profile_graph(model, source, *, limit, **kw):  # type: ignore[no-untyped-def]
        calls.append(limit)
        clock[0] += 0.5 * limit  # half a second an input
        return SimpleNamespace(limit=limit)

    monkeypatch.setattr(profiles, "profile_graph", fake_profile_graph)
    monkeypatch.setattr(analysis.time, "perf_counter", lambda: clock[0])
    monkeypatch.setitem(analysis.PROFILE_BUDGET, "quick", 30.0)
    a = SimpleNamespace(source=list(range(1000)), runnable=True, mw=None, input_shape=None, profiles=None,
                        profiles_reason="", profiles_note="",
                        options=analysis.Options(quick=True, batch_size=128, device=None))
    analysis.Analysis.attribution_profiles(a, False)  # type: ignore[arg-type]
    assert calls == [analysis.PROFILE_PROBE, 60] and a.profiles.limit == 60  # 30 s / 0.5 s
    assert "first 60 inputs instead of 128" in a.profiles_note
    calls.clear()
    monkeypatch.setitem(analysis.PROFILE_BUDGET, "quick", 1000.0)
    a.profiles_note = ""
    analysis.Analysis.attribution_profiles(a, False)  # type: ignore[arg-type]
    assert calls == [analysis.PROFILE_PROBE, 128] and a.profiles_note == ""
    a.source = list(range(5))  # fewer inputs than the probe: the probe is the result
    calls.clear()
    analysis.Analysis.attribution_profiles(a, False)  # type: ignore[arg-type]
    assert calls == [5] and a.profiles.limit == 5


def test_shallow_layers_cost_less_and_more_of_them_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step's cost grows with depth: timed on the first and the deepest layer, the rest estimated between."""
    clock = [0.0]
    costs = {f"l{i}": 0.1 + 0.9 * i / 7 for i in range(8)}  # 0.1 s a step on l0 … 1.0 s on l7, linear in depth

    def run(name: str, n: int, bar: object) -> None:
        clock[0] += 50.0  # setting up
        for i in range(n):
            clock[0] += costs[name]
            if callable(bar):
                bar(i + 1, n, "step")

    monkeypatch.setattr(analysis.time, "perf_counter", lambda: clock[0])
    monkeypatch.setitem(analysis.FEATURE_BUDGET, "quick", 100.0)
    fake = SimpleNamespace(options=analysis.Options(quick=True), neuron_notes=[])
    chosen, n = analysis.Analysis._feature_budget(fake, LAYERS, 40, run)  # type: ignore[arg-type]
    # every layer: 40 × (0.1 + … + 1.0) = 40 × 4.4 = 176 s > 100 s; the largest evenly spaced set that fits
    want = next(analysis._evenly_spaced(LAYERS, m) for m in range(7, 0, -1)
                if 40 * sum(costs[c] for c in analysis._evenly_spaced(LAYERS, m)) <= 100)
    assert chosen == want and n == 40 and len(chosen) > 100 // (40 * 1.0)  # more than the deepest's cost allows
    assert "0.10 s a step on l0 and 1.00 s on l7" in fake.neuron_notes[0].text


def test_visualisation_stops_when_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps slower than the probe measured: the layers left once the budget is spent are not started."""
    clock = [0.0]
    done: list[str] = []

    def run(name: str, n: int, bar: object) -> str:
        clock[0] += 40.0  # each layer takes 40 s
        done.append(name)
        return name

    monkeypatch.setattr(analysis.time, "perf_counter", lambda: clock[0])
    monkeypatch.setitem(analysis.FEATURE_BUDGET, "quick", 100.0)
    fake = SimpleNamespace(options=analysis.Options(quick=True), neuron_notes=[], featureviz={})
    analysis.Analysis._visualise_within(fake, LAYERS, 10, run, False, 0.0)  # type: ignore[arg-type]
    assert done == ["l0", "l1", "l2"] and list(fake.featureviz) == done  # 120 s spent > 100 s before l3
    assert "stopped after 3 of 8 layers" in fake.neuron_notes[0].text
