"""The shipped weight files of the zoo: where they live, how they are named, read and written.

Layout of :data:`WEIGHTS_DIR` (package data)::

    <name>.safetensors                final weights
    <name>-epoch<kk>.safetensors      weights after epoch kk (00 = the random initialisation)
    <name>-history.json               per-epoch losses and accuracies

Every ``.safetensors`` file holds a model's full ``state_dict`` (float32
parameters and batch-norm statistics) and string metadata (seed, epoch,
epochs, test accuracy, torch version).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from convsvd import _validate as check
from convsvd.errors import InputError
from convsvd.zoo.models import DEFAULT_SEED, MODELS, build, model_info

#: Folder of the shipped weights and histories.
WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"

_EPOCH_FILE = re.compile(r"-epoch(\d+)\.safetensors$")


def weights_filename(name: str, epoch: int | None = None) -> str:
    """File name of the final weights (``epoch=None``) or of one epoch's checkpoint.

    >>> weights_filename("digits-cnn"), weights_filename("digits-cnn", 3)
    ('digits-cnn.safetensors', 'digits-cnn-epoch03.safetensors')
    """
    return f"{name}.safetensors" if epoch is None else f"{name}-epoch{epoch:02d}.safetensors"


def history_filename(name: str) -> str:
    """File name of the training history of ``name`` (``"<name>-history.json"``)."""
    return f"{name}-history.json"


def write_weights(model: nn.Module, path: Path, metadata: dict[str, Any]) -> Path:
    """Save ``model.state_dict()`` to ``path`` as safetensors; metadata values become strings.

    A file that already holds the same tensors and metadata is left untouched:
    safetensors writes metadata keys in an arbitrary order, so rewriting it
    would change its bytes (and show up as a change in version control) for
    nothing.
    """
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {str(k): str(v) for k, v in metadata.items()}
    if not _same_file_content(path, state, meta):
        save_file(state, str(path), metadata=meta)
    return path


def _same_file_content(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bool:
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), "pt") as f:
            if f.metadata() != metadata or set(f.keys()) != set(state):
                return False
            return all(_identical(f.get_tensor(k), v) for k, v in state.items())
    except Exception:  # unreadable or not safetensors: overwrite it
        return False


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def available() -> list[str]:
    """Names of the zoo models, in registry order; each ships trained weights.

    >>> available()
    ['digits-cnn', 'digits-resnet']
    """
    return list(MODELS)


def checkpoints(name: str) -> list[Path]:
    """The shipped per-epoch checkpoints of ``name``, in epoch order (index = epoch).

    Parameters
    ----------
    name : str
        A zoo model name (see :func:`available`).

    Returns
    -------
    list of pathlib.Path
        ``[<name>-epoch00.safetensors, <name>-epoch01.safetensors, ...]``;
        empty for a model trained without per-epoch checkpoints.

    >>> [p.name for p in checkpoints("digits-cnn")[:2]]
    ['digits-cnn-epoch00.safetensors', 'digits-cnn-epoch01.safetensors']
    """
    model_info(name)
    found = {}
    for path in WEIGHTS_DIR.glob(f"{name}-epoch*.safetensors"):
        m = _EPOCH_FILE.search(path.name)
        if m and path.name == weights_filename(name, int(m.group(1))):
            found[int(m.group(1))] = path
    return [found[k] for k in sorted(found)]


def load(name: str = "digits-cnn", *, pretrained: bool = True, epoch: int | None = None) -> nn.Module:
    """A zoo model in eval mode, with its shipped weights.

    Parameters
    ----------
    name : str
        A zoo model name (see :func:`available`).
    pretrained : bool
        False gives the seeded random initialisation (the one training
        starts from), without reading any file.
    epoch : int or None
        Load the checkpoint saved after this epoch instead of the final
        weights (``0`` is the initialisation); see :func:`checkpoints`.

    Returns
    -------
    torch.nn.Module
        On the CPU, float32, in eval mode. Input ``(N, 1, 8, 8)`` in
        ``[0, 1]``; output ``(N, 10)`` logits.

    >>> model = load("digits-cnn")
    >>> model(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 10])
    """
    model = build(name, seed=DEFAULT_SEED)
    if not pretrained:
        if epoch is not None:
            raise InputError(f"epoch: expected None when pretrained=False, got {epoch!r}")
        return model.eval()
    if epoch is None:
        path = WEIGHTS_DIR / weights_filename(name)
        if not path.is_file():
            raise InputError(f"{name}: no shipped weights at {path}; expected them there (run scripts/train_zoo.py)")
    else:
        files = checkpoints(name)
        if not files:
            raise check.fail("epoch", epoch, f"None for {name!r} (no per-epoch checkpoints are shipped)")
        epoch = check.integer(epoch, "epoch", minimum=0, maximum=len(files) - 1)
        path = files[epoch]
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as err:
        raise InputError(f"{path}: expected the weights of {name!r} ({str(err).splitlines()[0]})") from err
    return model.eval()


def history(name: str) -> pd.DataFrame:
    """The training history of ``name``: one row per epoch, 0 being the initialisation.

    Columns: ``epoch``, ``train_loss``, ``train_accuracy``, ``test_accuracy``,
    ``test_error`` (``1 - test_accuracy``), ``file`` (the checkpoint's file name,
    or None when that epoch was not saved). Run facts (seed, epochs, optimiser
    settings, split) are in ``DataFrame.attrs``.

    >>> h = history("digits-cnn")
    >>> int(h.epoch.iloc[0]), bool(h.test_error.iloc[-1] < 0.05)
    (0, True)
    """
    model_info(name)
    path = WEIGHTS_DIR / history_filename(name)
    if not path.is_file():
        raise InputError(f"{name}: no training history at {path}; expected it there (run scripts/train_zoo.py)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    frame = pd.DataFrame.from_records(doc["records"])
    frame.attrs = {k: v for k, v in doc.items() if k != "records"}
    return frame
