"""Small reference CNNs for the built-in digits, with shipped weights and their training.

>>> from convsvd import zoo
>>> zoo.available()
['digits-cnn', 'digits-resnet']
>>> model = zoo.load("digits-cnn")            # trained, eval mode
>>> first = zoo.load("digits-cnn", epoch=0)   # the random initialisation
"""

from convsvd.zoo.models import MODELS, DigitsCNN, DigitsResNet, ModelInfo, ResidualBlock, build, model_info
from convsvd.zoo.pretrained import WEIGHTS_DIR, available, checkpoints, history, load
from convsvd.zoo.train import CONFIGS, EpochRecord, TrainConfig, TrainResult, train

__all__ = [
    "CONFIGS",
    "MODELS",
    "WEIGHTS_DIR",
    "DigitsCNN",
    "DigitsResNet",
    "EpochRecord",
    "ModelInfo",
    "ResidualBlock",
    "TrainConfig",
    "TrainResult",
    "available",
    "build",
    "checkpoints",
    "history",
    "load",
    "model_info",
    "train",
]
