"""Every model source gives the same ModelWeights; every bad input gives a one-line error."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file
from torch import nn

from convsvd.errors import InputError, UnsafeFileError
from convsvd.io import LayerSpec, ModelWeights, from_onnx, from_state_dict, load

NAMES = ["conv1", "conv2", "fc"]
KINDS = ["conv2d", "conv2d", "linear"]


class SmallCNN(nn.Module):
    """Strided conv, grouped dilated conv, linear; all with biases."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


FACTORY_SOURCE = '''
import torch
from torch import nn

class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4)
        self.fc = nn.Linear(8 * 4 * 4, 5)

def make():
    return SmallCNN()

def make_list():
    return [1, 2]

NOT_CALLABLE = 3
'''


@pytest.fixture
def model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture
def sd_file(model: SmallCNN, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return path


def assert_same_weights(mw: ModelWeights, model: SmallCNN, ordered: bool = True) -> None:
    """Names, kinds, weights and biases of ``mw`` equal those of the reference model."""
    names = mw.names if ordered else sorted(mw.names)
    assert names == NAMES
    assert [mw[n].kind for n in NAMES] == KINDS
    for name in NAMES:
        module = getattr(model, name)
        spec = mw[name]
        assert torch.equal(spec.weight, module.weight.detach())
        assert spec.bias is not None and torch.equal(spec.bias, module.bias.detach())


def assert_weight_only(mw: ModelWeights) -> None:
    for spec in mw:
        assert spec.inferred
        if spec.kind == "conv2d":
            assert (spec.stride, spec.padding, spec.dilation, spec.groups) == ((1, 1), (0, 0), (1, 1), 1)


def export_onnx(model: nn.Module, path: Path) -> None:
    x = torch.randn(1, 3, 8, 8)
    try:  # the TorchScript exporter is fast and keeps parameter names
        torch.onnx.export(model, (x,), str(path), dynamo=False)
    except Exception:  # pragma: no cover - only where the legacy exporter is gone
        torch.onnx.export(model, (x,), str(path), dynamo=True)


# ---------------------------------------------------------------------------------------
# every source, same layers
# ---------------------------------------------------------------------------------------


def test_module(model: SmallCNN) -> None:
    mw = load(model)
    assert_same_weights(mw, model)
    assert mw.model is model and mw.format == "module"
    assert (mw["conv1"].stride, mw["conv1"].padding) == ((2, 2), (1, 1))
    assert (mw["conv2"].groups, mw["conv2"].dilation) == (4, (2, 2))


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model_state_dict", "model"])
def test_state_dict_file(model: SmallCNN, tmp_path: Path, wrapper: str | None) -> None:
    sd = model.state_dict()
    path = tmp_path / "weights.pth"
    torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 3, "hyper": {"lr": 0.1}}, path)
    mw = load(path)
    assert_same_weights(mw, model)
    assert_weight_only(mw)
    assert mw.format == "checkpoint" and mw.source == str(path) and mw.model is None


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.module."])
def test_wrapper_prefix_is_stripped(model: SmallCNN, tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "dp.ckpt"
    torch.save({"state_dict": {prefix + k: v for k, v in model.state_dict().items()}}, path)
    assert_same_weights(load(str(path)), model)


def test_legacy_checkpoint_format(model: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "old.bin"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert_same_weights(load(path), model)


def test_safetensors_file(model: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    mw = load(path)
    assert_same_weights(mw, model)
    assert_weight_only(mw)
    assert mw.format == "safetensors"


def test_safetensors_shards(model: SmallCNN, tmp_path: Path) -> None:
    sd = model.state_dict()
    folder = tmp_path / "sharded"
    folder.mkdir()
    first = {k: v for k, v in sd.items() if k.startswith("conv1") or k == "conv2.weight"}
    second = {k: v for k, v in sd.items() if k not in first}  # conv2.bias is split from its weight
    save_file(first, str(folder / "model-00001-of-00002.safetensors"))
    save_file(second, str(folder / "model-00002-of-00002.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    mw = load(folder)
    assert_same_weights(mw, model)
    assert mw.source == str(folder)


def test_onnx_export(model: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    mw = load(path)
    assert mw.format == "onnx"
    assert_same_weights(mw, model)
    c1, c2 = mw["conv1"], mw["conv2"]
    assert (c1.stride, c1.padding, c1.dilation, c1.groups) == ((2, 2), (1, 1), (1, 1), 1)
    assert (c2.stride, c2.padding, c2.dilation, c2.groups) == ((1, 1), (2, 2), (2, 2), 4)
    assert not any(s.inferred for s in mw)


def test_factory_spec(model: SmallCNN, sd_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "convsvd_factory_ok.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    mw = load("convsvd_factory_ok:make", weights=sd_file)
    assert_same_weights(mw, model)
    assert mw.format == "factory" and isinstance(mw.model, nn.Module) and not mw.model.training
    assert mw["conv2"].groups == 4 and mw["conv1"].stride == (2, 2)

    st = tmp_path / "w.safetensors"
    save_file({f"module.{k}": v for k, v in model.state_dict().items()}, str(st))
    assert_same_weights(load("convsvd_factory_ok:make", weights=st), model)

    bare = load("convsvd_factory_ok:make")  # no weights: the factory's own initialisation
    assert bare.names == NAMES


# ---------------------------------------------------------------------------------------
# what is skipped, and why
# ---------------------------------------------------------------------------------------


def test_state_dict_skips_with_reasons() -> None:
    sd = {
        "embed_tokens.weight": torch.randn(10, 4),
        "stem.weight": torch.randn(4, 3, 3),
        "stem.bias": torch.randn(4),
        "layer1.bn1.weight": torch.ones(4),
        "layer1.bn1.bias": torch.zeros(4),
        "layer1.bn1.running_mean": torch.zeros(4),
        "layer1.bn1.num_batches_tracked": torch.tensor(5),
        "block.conv_bn.conv.weight": torch.randn(4, 4, 1, 1, 1),
        "patch_embed.proj.weight": torch.randn(4, 3, 2, 2),
        "ln_f.weight": torch.randn(4, 2),
        "norm.weight": torch.ones(4),
        "bad.weight": torch.tensor([[1.0, math.nan], [0.0, 1.0]]),
        "bad.bias": torch.zeros(2),
        "empty.weight": torch.zeros(0, 3),
        "ints.weight": torch.ones(2, 2, dtype=torch.int64),
        "six.weight": torch.randn(1, 1, 1, 1, 1, 1),
        "cls_token": torch.randn(1, 4),
        "head.weight": torch.randn(3, 4),
        "head.bias": torch.randn(5),
        "step": 7,
    }
    mw = from_state_dict(sd, source="sd")
    assert mw.names == ["stem", "block.conv_bn.conv", "patch_embed.proj", "head"]
    assert [s.kind for s in mw] == ["conv1d", "conv3d", "conv2d", "linear"]
    assert torch.equal(mw["stem"].bias, sd["stem.bias"])
    assert mw["head"].bias is None  # wrong-sized bias is not attached
    reasons = {s.name: s.reason for s in mw.skipped}
    assert "embedding" in reasons["embed_tokens.weight"]
    assert "normalisation" in reasons["layer1.bn1.weight"] and "normalisation" in reasons["layer1.bn1.running_mean"]
    assert "normalisation" in reasons["ln_f.weight"] and "normalisation" in reasons["norm.weight"]
    assert "NaN" in reasons["bad"] and "bad.bias" not in reasons
    assert "zero-size" in reasons["empty"]
    assert "floating point" in reasons["ints"]
    assert "6-D" in reasons["six.weight"]
    assert "not named" in reasons["cls_token"]
    assert "does not match" in reasons["head.bias"]
    assert "not a tensor" in reasons["step"]


def test_root_weight_and_non_finite_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "lin.safetensors"
    save_file({"weight": torch.randn(3, 2), "bias": torch.randn(3), "x.weight": torch.full((2, 2), math.inf)}, str(path))
    mw = load(path)
    assert mw.names == ["<root>"] and mw["<root>"].bias is not None
    assert [(s.name, "NaN/Inf" in s.reason) for s in mw.skipped] == [("x", True)]


# ---------------------------------------------------------------------------------------
# hand-built ONNX graphs
# ---------------------------------------------------------------------------------------


def _graph_model(nodes: list, inits: list, in_shape: list[int], out_shape: list[int] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def _as_linear(spec: LayerSpec, x: np.ndarray) -> np.ndarray:
    out = torch.from_numpy(x) @ spec.weight.T
    return (out + spec.bias if spec.bias is not None else out).numpy()


@pytest.mark.parametrize("trans_b", [0, 1])
def test_onnx_gemm_layout_and_scaling(tmp_path: Path, trans_b: int) -> None:
    rng = np.random.default_rng(0)
    b = rng.standard_normal((3, 4) if trans_b else (4, 3)).astype(np.float32)
    c = rng.standard_normal(3).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="gemm", transB=trans_b, alpha=2.0, beta=0.5)
    model = _graph_model([node], [numpy_helper.from_array(b, "B"), numpy_helper.from_array(c, "C")], [2, 4], [2, 3])
    path = tmp_path / "gemm.onnx"
    onnx.save(model, str(path))
    spec = load(path)["gemm"]
    assert spec.kind == "linear" and tuple(spec.weight.shape) == (3, 4)
    expected_w = 2.0 * (b if trans_b else b.T)
    np.testing.assert_allclose(spec.weight.numpy(), expected_w, rtol=1e-6)
    np.testing.assert_allclose(spec.bias.numpy(), 0.5 * c, rtol=1e-6)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(_as_linear(spec, x), _run(model, x), rtol=1e-5, atol=1e-6)


def test_onnx_matmul_add_bias_and_names() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 6)).astype(np.float32)  # (in, out)
    b = rng.standard_normal(6).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["h"], name="/fc/MatMul"),
        helper.make_node("Add", ["h", "fc.bias"], ["y"], name="/fc/Add"),
    ]
    model = _graph_model(nodes, [numpy_helper.from_array(w, "onnx::MatMul_7"), numpy_helper.from_array(b, "fc.bias")], [2, 5, 4], [2, 5, 6])
    mw = from_onnx(model)
    spec = mw["fc"]  # named after the bias initializer
    assert torch.equal(spec.weight, torch.from_numpy(w.T.copy())) and torch.equal(spec.bias, torch.from_numpy(b))
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(_as_linear(spec, x), _run(model, x), rtol=1e-5, atol=1e-6)
    assert mw.skipped == ()


def test_onnx_constant_nodes_identity_and_pads() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    w2 = rng.standard_normal((4, 4, 2, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W")),
        helper.make_node("Constant", [], ["Bc"], value=numpy_helper.from_array(b, "Bc")),
        helper.make_node("Identity", ["W"], ["W_id"]),
        helper.make_node("Conv", ["x", "W_id", "Bc"], ["h"], name="conv_a", group=2, strides=[1, 2], pads=[0, 1, 1, 2], dilations=[1, 1]),
        helper.make_node("Conv", ["h", "w2"], ["h2"], name="conv_b", auto_pad="SAME_LOWER"),
        helper.make_node("Conv", ["h2", "w2"], ["y"], name="conv_c", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Constant", [], ["unused"], value=numpy_helper.from_array(np.ones(3, np.float32), "unused")),
    ]
    mw = from_onnx(_graph_model(nodes, [numpy_helper.from_array(w2, "w2")], [1, 4, 9, 9]), source="hand")
    assert mw.names == ["conv_a", "conv_b"]
    a, bb = mw["conv_a"], mw["conv_b"]
    assert torch.equal(a.weight, torch.from_numpy(w)) and torch.equal(a.bias, torch.from_numpy(b))
    assert (a.groups, a.stride, a.padding, a.dilation) == (2, (1, 2), (0, 1), (1, 1))  # begin pads kept
    assert bb.padding == (1, 1)  # SAME_LOWER, kernel 2, stride 1: the extra pad is at the beginning
    reasons = {s.name: s.reason for s in mw.skipped}
    assert "reuses the weight of layer 'conv_b'" in reasons["conv_c"]
    assert "not used" in reasons["unused"]


def test_onnx_same_padding_with_stride_and_transpose() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    wt = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)  # (in, out/groups, k, k)
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight"], ["h"], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("ConvTranspose", ["h2", "up.weight"], ["y"], group=1, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        helper.make_node("Transpose", ["conv.weight"], ["wT"], perm=[1, 0, 2, 3]),
        helper.make_node("Conv", ["h", "wT"], ["h2"], name="computed"),
    ]
    inits = [numpy_helper.from_array(w, "conv.weight"), numpy_helper.from_array(wt, "up.weight")]
    mw = from_onnx(_graph_model(nodes, inits, [1, 3, 8, 8]))
    assert mw.names == ["conv", "up"]
    assert mw["conv"].padding == "same"
    up = mw["up"]
    assert up.kind == "convtranspose2d" and (up.stride, up.padding, up.output_padding) == ((2, 2), (1, 1), (1, 1))
    assert up.out_channels == 2
    assert "computed in the graph" in {s.name: s.reason for s in mw.skipped}["computed"]


def test_onnx_without_layers(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    path = tmp_path / "relu.onnx"
    onnx.save(_graph_model([node], [], [1, 3]), str(path))
    with pytest.raises(InputError, match=r"relu\.onnx: has no Conv, ConvTranspose, Gemm or MatMul"):
        load(path)


# ---------------------------------------------------------------------------------------
# pickles
# ---------------------------------------------------------------------------------------


def test_pickled_model_needs_trust(model: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "full.pt"
    torch.save(model, path)
    with pytest.raises(UnsafeFileError) as err:
        load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: is a pickled Python object") and "trust_pickle=True" in msg and "\n" not in msg
    mw = load(path, trust_pickle=True)
    assert_same_weights(mw, model)
    assert mw["conv2"].groups == 4 and not mw["conv2"].inferred and isinstance(mw.model, SmallCNN)

    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({"model": model, "epoch": 1}, wrapped)
    with pytest.raises(UnsafeFileError):
        load(wrapped)
    assert_same_weights(load(wrapped, trust_pickle=True), model)


def test_plain_pickle_and_numpy_are_refused(model: SmallCNN, tmp_path: Path) -> None:
    plain = tmp_path / "plain.pkl.pt"
    with plain.open("wb") as f:
        pickle.dump({"fc.weight": np.ones((2, 2))}, f, protocol=4)
    with pytest.raises(UnsafeFileError, match="plain.pkl.pt: is a pickled Python object"):
        load(plain)
    with_np = tmp_path / "np.pt"
    torch.save({"state_dict": model.state_dict(), "stats": np.zeros(3)}, with_np)
    with pytest.raises(UnsafeFileError, match="np.pt"):
        load(with_np)
    assert_same_weights(load(with_np, trust_pickle=True), model)


def test_torchscript_is_refused_then_read_weight_only(model: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 8, 8)), str(path))
    with pytest.raises(UnsafeFileError, match="TorchScript"):
        load(path)
    assert_same_weights(load(path, trust_pickle=True), model)


# ---------------------------------------------------------------------------------------
# errors: one line, naming the input
# ---------------------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[BaseException], name: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and name in msg
    return msg


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load(tmp_path / "nope.pt")
    assert "no such file" in _one_line(err, "nope.pt")
    with pytest.raises(InputError) as err:
        load("runs/nope.safetensors")
    assert "no such file" in _one_line(err, "runs/nope.safetensors")
    with pytest.raises(InputError) as err:
        load("digits-cnnx")
    assert _one_line(err, "digits-cnnx") == "digits-cnnx: no such file, and not a 'package.module:factory' spec"
    with pytest.raises(InputError, match="expected an nn.Module"):
        load(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".onnx"])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_files(model: SmallCNN, tmp_path: Path, suffix: str, damage: str) -> None:
    good = tmp_path / f"good{suffix}"
    if suffix == ".pt":
        torch.save(model.state_dict(), good)
    elif suffix == ".safetensors":
        save_file(model.state_dict(), str(good))
    else:
        export_onnx(model, good)
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07not a model\xff" * 40)
    with pytest.raises(InputError) as err:
        load(bad)
    assert not isinstance(err.value, UnsafeFileError)
    assert "corrupt" in _one_line(err, str(bad))


def test_empty_unknown_and_weightless(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as err:
        load(empty)
    assert "empty" in _one_line(err, "empty.onnx")

    keras = tmp_path / "model.h5"
    keras.write_bytes(b"x")
    with pytest.raises(InputError) as err:
        load(keras)
    msg = _one_line(err, "model.h5")
    assert all(s in msg for s in (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".onnx"))

    norms = tmp_path / "norms.pt"
    torch.save(nn.BatchNorm2d(4).state_dict(), norms)
    with pytest.raises(InputError) as err:
        load(norms)
    assert "has no 2–5-D weight tensors to analyse" in _one_line(err, "norms.pt")

    folder = tmp_path / "empty_dir"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(InputError) as err:
        load(folder)
    assert "no *.safetensors" in _one_line(err, "empty_dir")


def test_factory_errors(model: SmallCNN, sd_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "convsvd_factory_bad.py").write_text(FACTORY_SOURCE)
    (tmp_path / "convsvd_factory_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {
        "convsvd_no_such_module_xyz:make": "cannot import module",
        "convsvd_factory_broken:make": "RuntimeError: boom",
        "convsvd_factory_bad:missing": "has no attribute 'missing'",
        "convsvd_factory_bad:NOT_CALLABLE": "not a callable",
        "convsvd_factory_bad:make_list": "returned a list",
    }
    for spec, expected in cases.items():
        with pytest.raises(InputError) as err:
            load(spec)
        assert expected in _one_line(err, spec)

    other = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "extra.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(InputError) as err:
        load("convsvd_factory_bad:make", weights=other)
    msg = _one_line(err, "other.pt")
    assert "missing keys conv1.bias, conv2.weight, conv2.bias (+2 more)" in msg and "unexpected keys extra.weight" in msg

    wrong = tmp_path / "wrong.safetensors"
    sd = dict(model.state_dict())
    sd["fc.weight"] = torch.zeros(5, 7)
    save_file(sd, str(wrong))
    with pytest.raises(InputError) as err:
        load("convsvd_factory_bad:make", weights=wrong)
    assert "fc.weight (5, 7) vs (5, 128)" in _one_line(err, "wrong.safetensors")

    with pytest.raises(InputError, match="only used with a 'package.module:factory' spec"):
        load(sd_file, weights=sd_file)
    with pytest.raises(InputError, match="missing.pt: no such weights file"):
        load("convsvd_factory_bad:make", weights=tmp_path / "missing.pt")


def test_tensor_digest_keys_content_dtype_and_shape() -> None:
    from convsvd.io.spec import tensor_digest

    a = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    key = tensor_digest(a)
    assert tensor_digest(a.T.contiguous().T) == key  # layout does not matter, content does
    assert tensor_digest(a.clone()) == key
    b = a.clone()
    b[3, 2] = torch.nextafter(b[3, 2], torch.tensor(float("inf")))  # one ulp in one entry
    assert tensor_digest(b) != key
    assert tensor_digest(a.reshape(5, 6)) != key
    assert tensor_digest(a.double()) != key
    assert len({tensor_digest(torch.tensor(x)) for x in (0.0, 1.0, -0.0)}) == 3  # 0-dim tensors too
    assert tensor_digest(torch.empty(0, 3)) != tensor_digest(torch.empty(3, 0))


def test_check_weight_counts_non_finite_entries_also_when_the_sum_overflows() -> None:
    from convsvd.io.spec import check_weight

    assert check_weight("w", torch.ones(5)) is None
    assert check_weight("w", torch.full((4,), 6e4, dtype=torch.float16)) is None  # the sum overflows, entries are fine
    assert check_weight("w", torch.tensor([1.0, math.inf, -math.inf])) == "weight has 2 NaN/Inf entries"
    assert check_weight("w", torch.tensor([1.0, math.nan])) == "weight has 1 NaN/Inf entry"
    assert check_weight("w", torch.tensor([1 + 1j, complex(math.nan, 0)])) == "weight has 1 NaN/Inf entry"


def test_onnx_gemm_and_matmul_operands_that_are_not_linear_layers_are_skipped_with_a_reason() -> None:
    rng = np.random.default_rng(4)
    w3 = rng.standard_normal((2, 4, 4)).astype(np.float32)  # a batched (3-D) MatMul constant
    w_left = rng.standard_normal((3, 2)).astype(np.float32)  # y = W·x layout
    nodes = [
        helper.make_node("MatMul", ["x", "w3"], ["h"], name="bmm"),
        helper.make_node("MatMul", ["w_left", "h"], ["y"], name="left"),
        helper.make_node("Gemm", ["x", "ok.weight"], ["z"], name="ok", transB=1),  # the one linear layer
    ]
    ok = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "ok.weight")
    inits = [numpy_helper.from_array(w3, "w3"), numpy_helper.from_array(w_left, "w_left"), ok]
    mw = from_onnx(_graph_model(nodes, inits, [2, 2, 4]))
    reasons = {s.name: (s.shape, s.reason) for s in mw.skipped}
    assert mw.names == ["ok"]
    assert reasons["bmm"] == ((2, 4, 4), "MatMul constant is 3-D; only a 2-D right operand is a linear layer")
    assert reasons["left"][0] == (3, 2) and "constant left operand" in reasons["left"][1]
    gemm = helper.make_node("Gemm", ["x", "B3"], ["y"], name="g3")
    mw = from_onnx(_graph_model([gemm, nodes[-1]], [numpy_helper.from_array(w3, "B3"), ok], [2, 4]))
    assert {s.name: s.reason for s in mw.skipped}["g3"] == "Gemm operand B is 3-D, expected 2-D"
