"""Loading: every model source becomes one :class:`ModelWeights`.

:func:`load` is the entry point; the per-format readers are public too, for
callers that already know what they hold.
"""

from convsvd.io.module import from_module
from convsvd.io.spec import KIND_BY_NDIM, MODULE_KINDS, LayerSpec, ModelWeights, SkipCode, SkippedParam
from convsvd.io.state_dict import from_state_dict
from convsvd.io.checkpoint import load_checkpoint
from convsvd.io.safetensors_io import load_safetensors
from convsvd.io.onnx_io import from_onnx, load_onnx
from convsvd.io.factory import is_factory_spec, load_factory
from convsvd.io.loaders import ACCEPTED_SUFFIXES, ModelSource, load, load_path

__all__ = [
    "ACCEPTED_SUFFIXES",
    "KIND_BY_NDIM",
    "MODULE_KINDS",
    "LayerSpec",
    "ModelSource",
    "ModelWeights",
    "SkipCode",
    "SkippedParam",
    "from_module",
    "from_onnx",
    "from_state_dict",
    "is_factory_spec",
    "load",
    "load_checkpoint",
    "load_factory",
    "load_onnx",
    "load_path",
    "load_safetensors",
]
