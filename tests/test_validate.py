"""One validator per option kind, one message style; every bad option of every command is exit 2 and one line."""

from typing import Literal

import numpy as np
import pytest
import torch

from convsvd import _validate as check
from convsvd.cli import main
from convsvd.errors import InputError

CPU_ONLY = not torch.cuda.is_available()


# --------------------------------------------------------------------------- the validators


@pytest.mark.parametrize("value, minimum, ok", [
    (3, 1, True), (np.int64(3), 1, True), (1, 1, True), (0, 1, False), (-2, 0, False), (True, 0, False),
    (1.0, 1, False), ("3", 1, False), (None, 1, False),
])
def test_integer(value, minimum, ok):
    if ok:
        assert check.integer(value, "n", minimum=minimum) == int(value) and type(check.integer(value, "n")) is int
    else:
        with pytest.raises(InputError, match=rf"^n {value!r}: expected an integer ≥ {minimum}$"):
            check.integer(value, "n", minimum=minimum)


def test_integer_range_and_optional():
    assert check.integer(5, "rank", minimum=0, maximum=5) == 5
    with pytest.raises(InputError, match=r"^rank 6: expected an integer in 0–5$"):
        check.integer(6, "rank", minimum=0, maximum=5)
    assert check.optional_integer(None, "k", minimum=1) is None
    with pytest.raises(InputError, match="k 0"):
        check.optional_integer(0, "k", minimum=1)


@pytest.mark.parametrize("value, ok", [(0.1, True), (1, True), (0, False), (1.5, False), (float("nan"), False),
                                       (True, False), ("0.5", False)])
def test_share(value, ok):
    if ok:
        assert check.share(value, "threshold") == float(value)
    else:
        with pytest.raises(InputError, match=r"^threshold .*: expected a number > 0 and ≤ 1$"):
            check.share(value, "threshold")


def test_choice_from_a_literal_type():
    Kind = Literal["a", "b"]
    assert check.choices(Kind) == ("a", "b") and check.choices(["x", "y"]) == ("x", "y")
    assert check.choice("b", "kind", Kind) == "b"
    with pytest.raises(InputError, match=r"^kind 'c': expected one of a, b$"):
        check.choice("c", "kind", Kind)


@pytest.mark.parametrize("value, expected", [("float32", torch.float32), (torch.float64, torch.float64), (None, None)])
def test_dtype_accepts_the_two_precisions(value, expected):
    assert check.dtype(value) is expected


@pytest.mark.parametrize("value", ["float16", torch.float16, torch.bfloat16, "int8", torch.int64, 32])
def test_dtype_refuses_everything_else_naming_the_input(value):
    with pytest.raises(InputError, match=r"^dtype .*: expected float32 or float64$"):
        check.dtype(value)


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "cpu:1", "tpu", "", 3, "mps"])
def test_device_refuses_unknown_names(value):
    with pytest.raises(InputError, match=r"^device .*: expected cpu, cuda or cuda:N$"):
        check.device(value)


def test_device_accepts_cpu_and_none():
    assert check.device("cpu") == torch.device("cpu") and check.device(torch.device("cpu")).type == "cpu"
    assert check.device(None) is None


@pytest.mark.skipif(not CPU_ONLY, reason="needs a torch without CUDA")
@pytest.mark.parametrize("value", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_one_input_error(value):
    with pytest.raises(InputError, match="CUDA is not available"):
        check.device(value)


def test_globs_and_sizes():
    assert check.globs(None) is None and check.globs("a*, b") == ("a*", "b") and check.globs(["x"]) == ("x",)
    for bad in (",", [], [1], 3):
        with pytest.raises(InputError, match="^layers "):
            check.globs(bad)
    assert check.size(8, "size") == (8, 8) and check.size((4, 6), "size") == (4, 6) and check.size(None, "s") is None
    for bad in (0, (1, 0), (1, 2, 3), True, 2.0):
        with pytest.raises(InputError, match="^size "):
            check.size(bad, "size")


# --------------------------------------------------------------------------- every command


def _bad_options():
    spectral = [[], ["--view", "unfold"], ["--view", "slices"], ["--view", "operator", "--n", "8"]]
    cases = []
    for view in spectral:
        cases += [(["spectrum", "digits-cnn", *view, "--device", "gpu"], "device 'gpu'"),
                  (["spectrum", "digits-cnn", *view, "--dtype", "float16"], "dtype 'float16'")]
        if CPU_ONLY:
            cases.append((["spectrum", "digits-cnn", *view, "--device", "cuda"], "CUDA is not available"))
    cases += [
        (["svd", "digits-cnn", "--device", "gpu"], "device 'gpu'"),
        (["svd", "digits-cnn", "--dtype", "float16"], "dtype 'float16'"),
        (["svd", "digits-cnn", "--top-k", "0"], "k 0"),
        (["svd", "digits-cnn", "--top-k", "-3"], "k -3"),
        (["compare", "digits-cnn", "digits-cnn@0", "--device", "gpu"], "device 'gpu'"),
        (["compare", "digits-cnn", "--dtype", "float16"], "dtype 'float16'"),
        (["profile", "digits-cnn", "digits:test", "--device", "gpu"], "device 'gpu'"),
        (["profile", "digits-cnn", "digits:test", "--batch-size", "0"], "batch_size 0"),
        (["profile", "digits-cnn", "digits:test", "--top-k", "0"], "top_k 0"),
        (["profile", "digits-cnn", "digits:test", "--threshold", "0"], "threshold 0"),
        (["profile", "digits-cnn", "digits:test", "--shard-size", "-1"], "shard_size -1"),
        (["features", "digits-cnn", "--layer", "conv1", "--device", "gpu"], "device 'gpu'"),
        (["features", "digits-cnn", "--layer", "conv1", "--steps", "0"], "steps 0"),
        (["features", "digits-cnn", "--layer", "conv1", "--input-size", "0"], "--input-size 0"),
        (["features", "digits-cnn", "--layer", "conv1", "--rank", "-1"], "rank -1"),
        (["report", "digits-cnn", "--device", "gpu"], "device 'gpu'"),
        (["report", "digits-cnn", "--neurons", "0"], "neurons 0"),
        (["report", "digits-cnn", "--input-size", "0"], "--input-size 0"),
        (["spectrum", "digits-cnn", "--view", "nope"], "invalid choice: 'nope'"),
        (["profile", "digits-cnn", "digits:test", "--aggregate", "median"], "invalid choice: 'median'"),
    ]
    if CPU_ONLY:
        cases += [(["svd", "digits-cnn", "--device", "cuda"], "CUDA is not available"),
                  (["profile", "digits-cnn", "digits:test", "--device", "cuda:0"], "CUDA is not available"),
                  (["features", "digits-cnn", "--layer", "conv1", "--device", "cuda"], "CUDA is not available")]
    return cases


@pytest.mark.parametrize("argv, needle", _bad_options(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_bad_option_is_exit_2_and_one_line(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    if argv[0] == "report":
        argv = [*argv, "--out", str(tmp_path / "r.html")]
    elif argv[0] != "compare" or "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own choices
        code = e.code
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1, err
    assert needle in lines[0] and lines[0].startswith(f"convsvd {argv[0]}: error: ")
    assert not out.exists() and not (tmp_path / "r.html").exists()  # nothing written
