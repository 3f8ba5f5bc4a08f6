"""Spectral baselines: trained ESD vs its shuffle and its initialisation, with the shuffle-null threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convsvd.errors import InputError
from convsvd.spectral import BASELINE_COLUMNS, esd_distance, spectral_baselines, spectrum


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    init = nn.Sequential(nn.Linear(200, 150), nn.ReLU(), nn.Linear(150, 120)).double()
    trained = nn.Sequential(nn.Linear(200, 150), nn.ReLU(), nn.Linear(150, 120)).double()
    trained.load_state_dict(init.state_dict())
    with torch.no_grad():  # layer 2 gets a strong rank-3 structure; layer 0 stays i.i.d.
        a, b = torch.randn(120, 3, dtype=torch.float64), torch.randn(3, 150, dtype=torch.float64)
        trained[2].weight.add_(a @ b * 0.05)
    return trained, init


def test_verdicts_on_structure_and_on_iid_layers() -> None:
    trained, init = _models()
    res = spectral_baselines(trained, init=init, n_null=4)
    frame = res.to_frame()
    assert list(frame.columns) == list(BASELINE_COLUMNS)
    iid, low = frame.set_index("name").loc["0"], frame.set_index("name").loc["2"]
    assert not iid.distinguishable_from_shuffle and not iid.distinguishable_from_init
    assert iid.ks_init == 0.0  # the same weights
    assert low.distinguishable_from_shuffle and low.distinguishable_from_init
    assert low.ks_shuffle > low.null_threshold and low.p_shuffle < 1e-3
    # the columns are what they say: KS distances of the ESDs, the threshold the largest null distance
    ref = spectrum(trained, random_baseline=True, min_evals=2)["2"]
    assert low.ks_shuffle == pytest.approx(esd_distance(ref.evals, ref.random.evals, method="ks"))
    assert res["2"].null_ks.size == 4 and low.null_threshold == pytest.approx(res["2"].null_ks.max())
    assert low.ks_init == pytest.approx(esd_distance(ref.evals, spectrum(init)["2"].evals, method="ks"))


def test_without_init_and_bad_inputs() -> None:
    trained, _ = _models()
    frame = spectral_baselines(trained, n_null=2).to_frame()
    assert frame.distinguishable_from_init.isna().all() and np.isnan(frame.ks_init).all()
    with pytest.raises(InputError, match="n_null"):
        spectral_baselines(trained, n_null=0)
    with pytest.raises(InputError, match="init: has no layer"):
        spectral_baselines(trained, init=nn.Sequential(nn.Linear(200, 150)))
