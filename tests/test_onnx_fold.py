"""BatchNorm folded from an ONNX graph: the folded map equals the graph's own BatchNorm output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from convsvd.io import from_onnx
from convsvd.layers import fold_batchnorm
from unfold_reference import apply_unfolded

ort = pytest.importorskip("onnxruntime")


def _bn_params(rng: np.random.Generator, c: int, prefix: str) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(a.astype(np.float32), f"{prefix}.{n}") for n, a in (
        ("weight", rng.uniform(0.5, 1.5, c)), ("bias", rng.uniform(-0.5, 0.5, c)),
        ("running_mean", rng.uniform(-0.5, 0.5, c)), ("running_var", rng.uniform(0.3, 2.0, c)))]


def _graph(rng: np.random.Generator) -> onnx.ModelProto:
    """conv → Identity → BN (folded), grouped conv → BN (folded), conv read twice (not folded), Gemm → BN (folded)."""
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)  # groups=3
    w3 = rng.standard_normal((4, 6, 1, 1)).astype(np.float32)
    wf = rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "c1.weight", "c1.bias"], ["h1"], name="/c1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["h1"], ["h1i"], name="id1"),
        helper.make_node("BatchNormalization", ["h1i", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                                "bn1.running_var"], ["a1"], name="/bn1/BatchNormalization",
                         epsilon=1e-3),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2.weight"], ["h2"], name="/c2/Conv", group=3, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h2", "bn2.weight", "bn2.bias", "bn2.running_mean",
                                                "bn2.running_var"], ["a2"], name="bn_two"),
        helper.make_node("Conv", ["a2", "c3.weight"], ["h3"], name="/c3/Conv"),
        helper.make_node("BatchNormalization", ["h3", "bn3.weight", "bn3.bias", "bn3.running_mean",
                                                "bn3.running_var"], ["a3"], name="bn_three"),
        helper.make_node("Add", ["h3", "a3"], ["s3"]),  # h3 has two readers: not folded
        helper.make_node("Flatten", ["s3"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.weight"], ["g"], name="/fc/Gemm", transB=1),
        helper.make_node("BatchNormalization", ["g", "bnf.weight", "bnf.bias", "bnf.running_mean",
                                                "bnf.running_var"], ["y"], name="bn_fc"),
    ]
    inits = [numpy_helper.from_array(w1, "c1.weight"), numpy_helper.from_array(b1, "c1.bias"),
             numpy_helper.from_array(w2, "c2.weight"), numpy_helper.from_array(w3, "c3.weight"),
             numpy_helper.from_array(wf, "fc.weight")]
    inits += _bn_params(rng, 6, "bn1") + _bn_params(rng, 6, "bn2") + _bn_params(rng, 4, "bn3") + _bn_params(rng, 5, "bnf")
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _values(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Intermediate values of the graph, computed by ONNX Runtime."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, {"x": x})))


def test_folded_layers_equal_the_graphs_batchnorm_output() -> None:
    rng = np.random.default_rng(0)
    model = _graph(rng)
    mw = from_onnx(model)
    folded = fold_batchnorm(mw)
    assert {s.name: s.folded for s in folded} == {
        "c1": "/bn1/BatchNormalization", "c2": "bn_two", "c3": None, "fc": "bn_fc"}
    assert mw["c1"].folded is None  # the input is not changed
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    v = _values(model, x, ["r1", "a1", "a2", "a3", "h3", "f", "g", "y"])
    cases = [("c1", x, "a1"), ("c2", v["r1"], "a2"), ("fc", v["f"], "y")]
    for name, inp, out in cases:
        spec = folded[name]
        got = apply_unfolded(torch.from_numpy(inp).double(), spec).numpy()
        np.testing.assert_allclose(got, v[out], rtol=1e-4, atol=1e-4, err_msg=name)
    # c3 keeps its own weights and bias: its output is the conv's
    got = apply_unfolded(torch.from_numpy(v["a2"]).double(), folded["c3"]).numpy()
    np.testing.assert_allclose(got, v["h3"], rtol=1e-4, atol=1e-4)


def test_folded_site_is_the_batchnorm_output_and_training_mode_is_not_folded() -> None:
    rng = np.random.default_rng(1)
    model = _graph(rng)
    mw = fold_batchnorm(from_onnx(model))
    assert mw.model.output_of("c1", mw["c1"].folded) == "a1"
    for node in model.graph.node:
        if node.name == "bn_two":
            node.attribute.append(helper.make_attribute("training_mode", 1))
    assert fold_batchnorm(from_onnx(model))["c2"].folded is None


def test_fold_needs_per_channel_constants() -> None:
    rng = np.random.default_rng(2)
    model = _graph(rng)
    for init in model.graph.initializer:
        if init.name == "bn1.running_var":  # made a graph input: computed at run time
            model.graph.input.append(helper.make_tensor_value_info(init.name, TensorProto.FLOAT, [6]))
    kept = [i for i in model.graph.initializer if i.name != "bn1.running_var"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    assert fold_batchnorm(from_onnx(model))["c1"].folded is None
