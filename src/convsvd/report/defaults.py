"""The report's counts, in a module without heavy imports (the command line's help reads them)."""

__all__ = ["DEFAULTS", "QUICK"]

#: Defaults of the full report: top SVD neurons per layer, feature-visualisation steps, exemplars per side,
#: and the most layers whose neurons are shown.
DEFAULTS: dict[str, int] = dict(neurons=6, steps=256, k=8, feature_layers=8)
#: The same with ``quick=True``: fewer neurons, steps and exemplars (and no shuffled-weights baseline).
QUICK: dict[str, int] = dict(neurons=4, steps=128, k=4, feature_layers=8)
