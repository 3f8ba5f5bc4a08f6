"""Loading: every model source becomes one :class:`ModelWeights`."""

from convsvd.io.module import from_module
from convsvd.io.spec import KIND_BY_NDIM, MODULE_KINDS, LayerSpec, ModelWeights, SkippedParam

__all__ = ["KIND_BY_NDIM", "MODULE_KINDS", "LayerSpec", "ModelWeights", "SkippedParam", "from_module", "load"]


def load(source, *, weights=None, trust_pickle: bool = False) -> ModelWeights:  # replaced by io/loaders.py
    from convsvd.io.loaders import load as _load

    return _load(source, weights=weights, trust_pickle=trust_pickle)
