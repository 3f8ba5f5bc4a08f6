"""Signals: project whole datasets onto the singular vectors of a model's layers.

>>> from convsvd import zoo
>>> from convsvd.signals import profile
>>> table = profile(zoo.load("digits-cnn"), "digits:test", out="profile-out")  # doctest: +SKIP
>>> table.class_profile("conv3")                                                # doctest: +SKIP
"""

from convsvd.signals.hooks import Capture, capture, eval_mode, moved_to, site_name
from convsvd.signals.influence import Influence, influence, weight_ranking
from convsvd.signals.project import (
    AGGREGATIONS,
    ProjectionPlan,
    Projector,
    Signals,
    plan_projection,
    signal_maps,
    signals,
)
from convsvd.signals.run import profile
from convsvd.signals.table import LayerMatrix, SignalTable

__all__ = [
    "AGGREGATIONS",
    "Capture",
    "Influence",
    "LayerMatrix",
    "ProjectionPlan",
    "Projector",
    "SignalTable",
    "Signals",
    "capture",
    "eval_mode",
    "influence",
    "moved_to",
    "plan_projection",
    "profile",
    "signal_maps",
    "signals",
    "site_name",
    "weight_ranking",
]
