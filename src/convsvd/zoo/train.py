"""Reproducible training of the zoo models on the built-in digits.

A run is a pure function of ``(name, epochs, seed)`` and the torch build: the
initialisation comes from ``torch.manual_seed(seed)``, batches from a
``torch.Generator`` seeded with ``seed``, deterministic algorithms are on and
one intra-op thread is used, so the core count does not change the sums, and
the arithmetic is float64 (the saved weights are float32), so neither does the
CPU's vector unit. The caller's RNG state, thread count and determinism
setting are restored afterwards. The learning rate is constant, so the first
``k`` epochs of a long run equal a ``k``-epoch run bit for bit.

Files are written only when ``out_dir`` is given; ``scripts/train_zoo.py``
writes the shipped ones into :data:`~convsvd.zoo.pretrained.WEIGHTS_DIR`.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from convsvd import _validate as check
from convsvd._typing import PathLike
from convsvd.data.digits import SPLIT_SEED, TEST_FRACTION, DigitsData, load_digits
from convsvd.zoo.models import DEFAULT_SEED, build, model_info
from convsvd.zoo.pretrained import history_filename, weights_filename, write_weights


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one zoo model (Adam, constant learning rate).

    Parameters
    ----------
    epochs : int
        Passes over the training split.
    batch_size : int
        Mini-batch size; the incomplete last batch of an epoch is dropped.
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam's L2 penalty.
    save_every_epoch : bool
        Also write a checkpoint after every epoch (and epoch 0, the init).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    save_every_epoch: bool = False


#: Training settings by model name.
CONFIGS: dict[str, TrainConfig] = {
    "digits-cnn": TrainConfig(epochs=20, save_every_epoch=True),
    "digits-resnet": TrainConfig(epochs=20),
}


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch (epoch 0: before training), on the whole splits, in eval mode."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    test_error: float
    file: str | None


@dataclass(frozen=True, eq=False)
class TrainResult:
    """The outcome of :func:`train`.

    Parameters
    ----------
    name : str
        Model name.
    seed : int
        Seed of the initialisation and of the batch order.
    config : TrainConfig
        Settings used (``epochs`` as run).
    model : torch.nn.Module
        The trained model, in eval mode.
    history : tuple of EpochRecord
        ``epochs + 1`` records, epoch 0 first.
    seconds : float
        Wall-clock time of the run.
    files : tuple of pathlib.Path
        Files written (empty without ``out_dir``).
    """

    name: str
    seed: int
    config: TrainConfig
    model: nn.Module
    history: tuple[EpochRecord, ...]
    seconds: float
    files: tuple[Path, ...]

    @property
    def test_accuracy(self) -> float:
        """Held-out accuracy of the final model."""
        return self.history[-1].test_accuracy

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch with the :class:`EpochRecord` fields as columns."""
        return pd.DataFrame([asdict(r) for r in self.history])


@contextmanager
def reproducible(seed: int, threads: int = 1) -> Iterator[None]:
    """Seed torch, use ``threads`` intra-op threads and deterministic algorithms; restore all on exit."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        try:
            torch.manual_seed(seed)
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)


@torch.no_grad()
def evaluate(model: nn.Module, data: DigitsData) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    logits = model(data.images)
    loss = float(F.cross_entropy(logits, data.labels))
    accuracy = float((logits.argmax(dim=1) == data.labels).double().mean())
    model.train(was_training)
    return loss, accuracy


def train(
    name: str,
    epochs: int | None = None,
    seed: int = DEFAULT_SEED,
    out_dir: PathLike | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a zoo model on the digits training split, reproducibly.

    Parameters
    ----------
    name : str
        A zoo model name (``"digits-cnn"``, ``"digits-resnet"``).
    epochs : int or None
        Passes over the data; None uses the model's :data:`CONFIGS` value.
    seed : int
        Seeds the initialisation (as :func:`~convsvd.zoo.models.build`) and
        the batch order.
    out_dir : path or None
        When given, write ``<name>.safetensors``, ``<name>-history.json``
        and, for models configured so, ``<name>-epochKK.safetensors`` for
        every epoch including 0 (files are replaced).
    progress : bool
        Print one line per epoch to stderr.

    Returns
    -------
    TrainResult

    >>> result = train("digits-resnet", epochs=1)
    >>> len(result.history), result.test_accuracy > 0.9
    (2, True)
    """
    info = model_info(name)
    config = CONFIGS.get(name, TrainConfig())
    if epochs is not None:
        epochs = check.integer(epochs, "epochs", minimum=0)
        config = TrainConfig(**{**asdict(config), "epochs": epochs})
    seed = check.integer(seed, "seed")
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    train_data, test_data = load_digits("train"), load_digits("test")
    start = time.perf_counter()
    records: list[EpochRecord] = []
    files: list[Path] = []
    with reproducible(seed):
        # The arithmetic is float64 and only the shipped copies are float32: CPUs with
        # other vector units (AVX-512, AVX2, none) round float32 sums differently, and
        # training amplifies those differences far beyond one float32 ulp within a few
        # epochs; float64 differences stay below float32 resolution, so the float32
        # weights come out the same on (nearly) every CPU.
        model = build(name, seed=seed).double()
        images, labels = train_data.images.double(), train_data.labels
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=False
        )
        order = torch.Generator().manual_seed(seed)
        n = len(train_data)
        for epoch in range(config.epochs + 1):
            if epoch > 0:
                _train_epoch(model, optimizer, images, labels, torch.randperm(n, generator=order), config.batch_size)
            shipped = _float32_copy(model)
            train_loss, train_acc = evaluate(shipped, train_data)
            _, test_acc = evaluate(shipped, test_data)
            file = None
            if out is not None and config.save_every_epoch:
                file = weights_filename(name, epoch)
                meta = _metadata(name, seed, epoch, config.epochs, test_acc)
                files.append(write_weights(shipped, out / file, meta))
            records.append(EpochRecord(epoch, train_loss, train_acc, test_acc, 1.0 - test_acc, file))
            if progress:
                print(
                    f"{name} epoch {epoch:2d}/{config.epochs}  train loss {train_loss:.4f}  "
                    f"train acc {train_acc:.4f}  test acc {test_acc:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    seconds = time.perf_counter() - start
    if out is not None:
        split: dict[str, object] = {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION, "train": n, "test": len(test_data)}
        files.extend(_write_final(out, name, info.description, seed, config, split, shipped, records))
    return TrainResult(name, seed, config, shipped, tuple(records), seconds, tuple(files))


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
) -> None:
    """One pass in the given sample ``order``; the incomplete last batch is dropped."""
    model.train()
    for i in range(0, order.numel() - batch_size + 1, batch_size):
        idx = order[i : i + batch_size]
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _write_final(
    out: Path,
    name: str,
    description: str,
    seed: int,
    config: TrainConfig,
    split: dict[str, object],
    model: nn.Module,
    records: list[EpochRecord],
) -> list[Path]:
    """Write ``<name>.safetensors`` and ``<name>-history.json``; fill in the last record's file if unset."""
    final = out / weights_filename(name)
    write_weights(model, final, _metadata(name, seed, config.epochs, config.epochs, records[-1].test_accuracy))
    if records[-1].file is None:
        records[-1] = EpochRecord(**{**asdict(records[-1]), "file": final.name})
    doc = {
        "name": name,
        "description": description,
        "seed": seed,
        "epochs": config.epochs,
        "config": asdict(config),
        "split": split,
        "torch_version": torch.__version__,
        "records": [asdict(r) for r in records],
    }
    history_path = out / history_filename(name)
    history_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return [final, history_path]


def _float32_copy(model: nn.Module) -> nn.Module:
    """A float32 copy of ``model`` in eval mode (integer buffers keep their dtype)."""
    return copy.deepcopy(model).float().eval()


def _metadata(name: str, seed: int, epoch: int, epochs: int, test_accuracy: float) -> dict[str, object]:
    return {
        "name": name,
        "seed": seed,
        "epoch": epoch,
        "epochs": epochs,
        "test_accuracy": repr(test_accuracy),
        "split_seed": SPLIT_SEED,
        "test_fraction": TEST_FRACTION,
        "torch_version": torch.__version__,
    }
