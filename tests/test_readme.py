"""Every code example of the README runs.

The Python blocks run in order in one namespace (as a reader pasting them into one session would),
the ``convsvd`` lines of the shell blocks through the CLI's ``main``, all in a scratch folder that
holds the files the examples name: a small factory package (``mypkg``, ``my_pkg``), its weights,
small ONNX files (``resnet.onnx`` with ``layer4`` convs, ``ocr_det.onnx`` with a symbolic input side,
``resnet50.onnx``, ``mnist.onnx``), image folders and a 28×28 digits file. ``make`` lines are the two
commands CI itself runs, and ``torchrun`` lines the distributed test runs (``tests/test_profile_run.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from convsvd import cli

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
SKIPPED_COMMANDS = ("make ", "torchrun ", "python ", ".venv/")

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Sequential):
        pass


    class Net(nn.Module):
        def __init__(self, channels: int = 3, classes: int = 10) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.MaxPool2d(2))
            self.layer4 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.layer4(self.features(x))), 1))


    def build() -> nn.Module:
        torch.manual_seed(0)
        return Net()


    resnet18 = make_net = build
''')


class _Mnist(nn.Module):
    """A small MNIST-shaped CNN whose layer names the README's ``--layers 'conv*'`` matches."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn1, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 26 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.bn1(self.conv1(x))), 1))


def _blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", README.read_text(), re.S)


def _images(folder: Path, classes: int, per_class: int, side: int, rng: np.random.Generator) -> None:
    from PIL import Image

    for c in range(classes):
        (folder / str(c)).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(folder / str(c) / f"{i}.png")


def _onnx(model: nn.Module, path: Path, shape: tuple[int, ...], symbolic: bool = False) -> None:
    kwargs = dict(dynamic_axes={"x": {2: "h", 3: "w"}}) if symbolic else {}
    torch.onnx.export(model.eval(), torch.zeros(1, *shape), str(path), input_names=["x"], opset_version=17,
                      dynamo=False, **kwargs)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("readme")
    for pkg in ("mypkg", "my_pkg"):
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")
        (root / pkg / "models.py").write_text(FACTORY)
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("readme_factory", root / "mypkg" / "models.py")
    factory = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(factory)  # type: ignore[union-attr]
    from safetensors.torch import save_file

    for name in ("weights", "net", "init", "r18"):
        save_file({k: v.contiguous() for k, v in factory.build().state_dict().items()}, str(root / f"{name}.safetensors"))
    features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3))
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()},
              str(root / "model.safetensors"))
    _onnx(factory.build(), root / "resnet.onnx", (3, 32, 32))
    _onnx(factory.build(), root / "resnet50.onnx", (3, 224, 224))
    _onnx(factory.build(), root / "ocr_det.onnx", (3, 64, 64), symbolic=True)
    _onnx(_Mnist(), root / "mnist.onnx", (1, 28, 28))
    rng = np.random.default_rng(0)
    _images(root / "photos", 2, 3, 40, rng)
    _images(root / "imagenet-val", 2, 2, 300, rng)
    from convsvd.data import load_digits

    d = load_digits("test", size=28)
    np.savez(root / "digits28.npz", inputs=d.images[:64].numpy(), labels=d.labels[:64].numpy())
    fixtures = sorted(p.name for p in root.iterdir())
    for sub in ("python", "shell"):  # each test in its own folder: examples reuse names like profile-out
        (root / sub).mkdir()
        for name in fixtures:
            (root / sub / name).symlink_to(root / name)
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(root)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        for name in [m for m in sys.modules if m.split(".")[0] in ("mypkg", "my_pkg")]:
            del sys.modules[name]


def test_every_python_block_runs_in_order(scratch: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    os.chdir(scratch / "python")
    namespace: dict[str, object] = {}
    blocks = [code for lang, code in _blocks() if lang == "python"]
    assert len(blocks) >= 10
    for i, code in enumerate(blocks):
        if 'spectrum(t).save("out")' in code:
            Path("out").mkdir(exist_ok=True)
        try:
            exec(compile(code, f"README python block {i}", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"README python block {i} failed: {type(e).__name__}: {e}\\n{code}") from e


def _commands() -> list[str]:
    lines = []
    for lang, code in _blocks():
        if lang != "bash":
            continue
        for raw in code.splitlines():
            line = raw.split("  #", 1)[0].strip()
            for part in (p.strip() for p in line.split("&&")):
                if part:
                    lines.append(part)
    return lines


def test_every_shell_example_runs(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.chdir(scratch / "shell")
    commands = _commands()
    run = [c for c in commands if c.startswith("convsvd ")]
    skipped = [c for c in commands if not c.startswith("convsvd ")]
    assert all(c.startswith(SKIPPED_COMMANDS) for c in skipped), skipped
    assert len(run) >= 20
    for command in run:
        argv = shlex.split(command)[1:]
        if argv[0] in ("demo",):
            argv += ["--quick"] if "--quick" not in argv else []
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 0, f"{command}: exit {code}: {err[-800:]}"
