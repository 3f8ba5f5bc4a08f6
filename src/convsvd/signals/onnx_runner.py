"""Run an ONNX model for the signals pipeline: the analysed layers' outputs become graph outputs.

Where a torch model is hooked (:mod:`convsvd.signals.hooks`), an ONNX model
(:class:`~convsvd.io.onnx_io.OnnxModule`) is run in ONNX Runtime with one extra
graph output per analysed layer: the Conv / Gemm / MatMul(+Add) output before
any following BatchNorm, or the BatchNorm's output when it is folded into the
layer. So the signal is ``Uᵀ(y − b)`` exactly as for a torch model.

Both sides of the seam hand the projection the same thing: for each forward
pass, ``(site, output)`` pairs in graph order. A value is computed once per
pass, so each layer is one site (no ``name#k`` repeats).

The graph's input name, shape and dtype come from the graph; a fixed batch
dimension is run in chunks of that size. ``device="cuda"`` uses ONNX Runtime's
CUDA provider when it has one (``onnxruntime-gpu``); the outputs are moved to
the projection's device.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from convsvd.io.onnx_io import OnnxModule

__all__ = ["OnnxRunner"]


class OnnxRunner:
    """Outputs of chosen graph values for a batch, as ``(site, tensor)`` pairs.

    Parameters
    ----------
    module : OnnxModule
    values : mapping of str to str
        ``{layer name: graph value}`` to read (see :meth:`OnnxModule.output_of`).
    device : torch.device
        Where the outputs are put (and, for CUDA, where ONNX Runtime runs when it can).

    >>> import numpy as np, torch
    >>> from onnx import helper, numpy_helper, TensorProto
    >>> from convsvd.io import from_onnx
    >>> w = numpy_helper.from_array(np.full((3, 2), 2.0, np.float32), "fc.weight")
    >>> g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["h"]),
    ...                        helper.make_node("Relu", ["h"], ["y"])], "g",
    ...                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], [w])
    >>> mw = from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    >>> runner = OnnxRunner(mw.model, {"fc": mw.model.output_of("fc")}, torch.device("cpu"))
    >>> [(site, y.tolist()) for site, y in runner.run(-torch.ones(1, 3))]
    [('fc', [[-6.0, -6.0]])]
    """

    def __init__(self, module: OnnxModule, values: Mapping[str, str], device: torch.device) -> None:
        self.module = module
        self.values = dict(values)
        self.device = torch.device(device)
        self._extra = tuple(dict.fromkeys(self.values.values()))

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """``(C, *spatial)`` the graph declares, or None when some of it is not fixed."""
        return self.module.sample_shape

    def run(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """One pass of ``x`` ``(N, C, *spatial)``; the layers' outputs in graph order."""
        where = "cuda" if self.device.type == "cuda" else "cpu"
        got = self.module.run(x, self._extra, where)
        return [(layer, torch.from_numpy(np.ascontiguousarray(got[value])).to(self.device))
                for layer, value in self.values.items()]
