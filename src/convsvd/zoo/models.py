"""Small reference CNNs for the 1×8×8 digits, and the registry that names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from convsvd.data.digits import CLASSES
from convsvd.errors import InputError

#: Seed of the shipped training runs, and of ``build`` / ``load(pretrained=False)``.
DEFAULT_SEED: int = 0


class DigitsCNN(nn.Module):
    """Three 3×3 convolutions and two linear layers (40,394 parameters).

    ``conv1`` 1→16 · ReLU · ``conv2`` 16→32 · ReLU · max-pool 2 · ``conv3``
    32→64 · ReLU · max-pool 2 · flatten (256) · ``fc1`` 256→64 · ReLU · ``fc2``
    64→10. Every convolution has padding 1, so it keeps the spatial size.

    Input ``(N, 1, 8, 8)`` in ``[0, 1]``; output ``(N, 10)`` logits.

    >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class ResidualBlock(nn.Module):
    """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))`` with 3×3 convolutions, same shape in and out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class DigitsResNet(nn.Module):
    """A DigitsCNN-sized network with batch-norm and one residual block (32,314 parameters).

    ``conv1`` 1→16 · ``bn1`` · ReLU · ``conv2`` 16→32 · ``bn2`` · ReLU · max-pool 2 ·
    ``block`` (32→32→32, identity skip) · max-pool 2 · flatten (128) · ``fc1``
    128→64 · ReLU · ``fc2`` 64→10. Convolutions followed by batch-norm have no bias.

    Input ``(N, 1, 8, 8)`` in ``[0, 1]``; output ``(N, 10)`` logits.

    >>> DigitsResNet().eval()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.block = ResidualBlock(32)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(self.block(x), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about one model.

    Parameters
    ----------
    name : str
        Registry key, also the stem of its weight files (``"digits-cnn"``).
    constructor : callable
        Builds the untrained module (no arguments).
    description : str
        One line for listings.
    input_shape : tuple of int
        ``(C, H, W)`` of one input, ``(1, 8, 8)``.
    classes : tuple of str
        Output names, in logit order.
    dataset : str
        The built-in dataset it is trained on.
    """

    name: str
    constructor: Callable[[], nn.Module]
    description: str
    input_shape: tuple[int, int, int] = (1, 8, 8)
    classes: tuple[str, ...] = CLASSES
    dataset: str = "digits"


#: Every zoo model by name.
MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            name="digits-cnn",
            constructor=DigitsCNN,
            description="3 conv + 2 linear layers, ReLU, max-pool; 40k parameters; sklearn digits 8×8",
        ),
        ModelInfo(
            name="digits-resnet",
            constructor=DigitsResNet,
            description="2 conv + 1 residual block, batch-norm, 2 linear layers; 32k parameters; sklearn digits 8×8",
        ),
    )
}


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; :class:`~convsvd.errors.InputError` naming the choices otherwise."""
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(f"model name: expected one of {', '.join(map(repr, MODELS))}, got {name!r}")
    return MODELS[name]


def build(name: str, seed: int = DEFAULT_SEED) -> nn.Module:
    """The randomly initialised model ``name``, seeded, float32, in train mode.

    The global RNG and default dtype are left as they were: initialisation
    draws from a forked RNG seeded with ``seed``, so the same ``seed`` always
    gives the same weights. The values are drawn in float64 and rounded to
    float32, because float32 draws differ in the last bit between CPUs with
    different vector units; rounded float64 draws do not (in all but rare cases).

    >>> a, b = build("digits-cnn"), build("digits-cnn")
    >>> all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    True
    """
    info = model_info(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model = info.constructor()
        finally:
            torch.set_default_dtype(previous)
    return model.float()
