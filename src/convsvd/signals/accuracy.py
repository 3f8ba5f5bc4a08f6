"""The model's own accuracy on labelled data: a check that the inputs are what the model expects.

A wrong input transform (a missing normalisation, another resize) leaves every
signal computable but the model's predictions poor; its accuracy shows it at
once. The prediction of an input is the arg-max of the model's output
``(N, K)`` (the first output of a model with several); it is compared with the
label, which must index the same classes (an image folder's sorted subfolder
names, for instance ``0 … 9``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from convsvd._progress import progress as _progress
from convsvd.data import as_source
from convsvd.data.protocol import check_batch_size
from convsvd.errors import ConvSVDError, InputError
from convsvd.signals.hooks import eval_mode, moved_to

__all__ = ["Accuracy", "PredictionRecorder", "accuracy"]


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy of a model on labelled inputs.

    Attributes
    ----------
    correct, labelled : int
        Inputs whose arg-max output equals their label; inputs with a label.
    transform : str
        The data transform the inputs went through (as the data source describes it).
    reason : str
        Why no accuracy was measured (empty when it was).
    confusion : numpy.ndarray or None
        ``(C, K)`` int64 counts: row = label, column = predicted output (None when nothing was measured).
    classes : tuple of str
        Names of the labels (rows), when the data have them.
    """

    correct: int
    labelled: int
    transform: str = ""
    reason: str = ""
    confusion: np.ndarray | None = field(default=None, repr=False, compare=False)
    classes: tuple[str, ...] = ()

    def confusion_frame(self) -> pd.DataFrame:
        """The confusion matrix as a long table: ``label, class, predicted, count`` (empty when not measured)."""
        if self.confusion is None:
            return pd.DataFrame(columns=["label", "class", "predicted", "count"])
        C, K = self.confusion.shape
        label, pred = np.meshgrid(np.arange(C), np.arange(K), indexing="ij")
        names = [self.classes[i] if i < len(self.classes) else str(i) for i in range(C)]
        return pd.DataFrame(dict(label=label.ravel(), **{"class": np.repeat(names, K)}, predicted=pred.ravel(),
                                 count=self.confusion.ravel()))

    @property
    def value(self) -> float | None:
        """``correct / labelled``, or None when nothing was measured."""
        return self.correct / self.labelled if self.labelled and not self.reason else None

    def describe(self) -> str:
        """E.g. ``"81.6 % (367 of 451 labelled inputs)"``, or the reason."""
        v = self.value
        return self.reason if v is None else f"{100 * v:.1f} % ({self.correct} of {self.labelled} labelled inputs)"

    def to_frame(self) -> pd.DataFrame:
        """One row: ``correct, labelled, accuracy, transform, reason``."""
        return pd.DataFrame([dict(correct=self.correct, labelled=self.labelled, accuracy=self.value,
                                  transform=self.transform, reason=self.reason)])


def accuracy(
    model: object,
    data: object,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    input_shape: Sequence[int] | None = None,
    progress: bool | None | Callable[[int, int, str], None] = False,
) -> Accuracy:
    """Top-1 accuracy of ``model`` on ``data`` (inputs through the data's own transform).

    Parameters
    ----------
    model : nn.Module, ONNX file, or ModelWeights holding a module
    data : anything :func:`convsvd.data.as_source` accepts
        With class labels that index the model's outputs.
    batch_size : int
    device : str or torch.device, optional
        Where the model runs (default: where it is).
    input_shape : sequence of int, optional
        ``(C, *spatial)``: image folders are resized to it.

    Returns
    -------
    Accuracy
        With a ``reason`` instead of a value when the data have no labels or the
        model's output is not one score per class.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    >>> accuracy(net, (torch.eye(4)[:2].reshape(2, 1, 2, 2), torch.tensor([0, 0]))).describe()
    '50.0 % (1 of 2 labelled inputs)'
    """
    from convsvd.data.protocol import ExpectedInput
    from convsvd.layers import as_weights

    check_batch_size(batch_size)
    source = as_source(data)
    if isinstance(model, torch.nn.Module):
        net = model
    else:
        mw = as_weights(model)
        if mw.model is None:
            raise InputError(f"model {mw.source!r}: measuring accuracy runs the model, so it needs an nn.Module or an "
                             f"ONNX file, not a weights-only {mw.format} file")
        net = mw.model
        first = mw.layers[0] if len(mw.layers) else None
        shape = input_shape if input_shape is not None else getattr(net, "sample_shape", None)
        if first is not None and not first.transposed:
            spatial = tuple(int(s) for s in shape[1:]) if shape is not None and len(shape) > 1 else None
            source = source.conform(ExpectedInput(first.name, first.kind, first.in_channels, spatial))
    transform = str(source.describe().get("transform", ""))
    if source.classes is None and not _has_labels(source, batch_size):
        return Accuracy(0, 0, transform, "the data have no class labels")
    params = [p for p in net.parameters() if p.is_floating_point()]
    dev = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    dtype = params[0].dtype if params else torch.float32
    correct = labelled = 0
    confusion: np.ndarray | None = None
    total = source.num_batches(batch_size)
    with eval_mode(net), moved_to(net, dev), torch.no_grad(), \
            _progress(total or 0, "accuracy", progress) as bar:
        for _, batch in source.iter_batches(batch_size):
            keep = batch.labels >= 0
            bar.advance(1, "accuracy")
            if not bool(keep.any()):
                continue
            try:
                out = net(batch.inputs.to(device=dev, dtype=dtype))
            except ConvSVDError:
                raise
            except Exception as e:
                raise InputError(f"model: fails on the data ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
            out = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(out, torch.Tensor) or out.dim() != 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                return Accuracy(0, 0, transform, f"the model's output {shape} is not one score per class")
            labels = batch.labels.to(out.device)
            beyond = _beyond_outputs(int(labels[keep].max()), int(out.shape[1]), transform)
            if beyond is not None:
                return beyond
            pred = out.argmax(dim=1)
            correct += int((pred == labels)[keep].sum())
            labelled += int(keep.sum())
            confusion = _tally(confusion, labels[keep].cpu().numpy(), pred[keep].cpu().numpy(), int(out.shape[1]),
                               len(source.classes or ()))
    if not labelled:
        return Accuracy(0, 0, transform, "the data have no class labels")
    return Accuracy(correct, labelled, transform, confusion=confusion,
                    classes=tuple(str(c) for c in (source.classes or ())))


def _beyond_outputs(top: int, outputs: int, transform: str) -> "Accuracy | None":
    """The accuracy that cannot be measured when the largest label ``top`` indexes no output, else None."""
    if top < outputs:
        return None
    return Accuracy(0, 0, transform, f"labels up to {top} do not index the model's {outputs} outputs")


def _tally(confusion: np.ndarray | None, labels: np.ndarray, predicted: np.ndarray, K: int,
           classes: int) -> np.ndarray:
    """``confusion`` (``(C, K)`` or None) plus the counts of ``(label, predicted)`` pairs; rows grow as needed."""
    rows = max(int(labels.max()) + 1 if labels.size else 0, classes, 0 if confusion is None else confusion.shape[0])
    part = np.bincount(labels * K + predicted, minlength=rows * K).reshape(rows, K)
    if confusion is not None:
        part[:confusion.shape[0]] += confusion
    return part


class PredictionRecorder:
    """The arg-max output of every forward call of a module, in call order.

    For the model's accuracy from a pass over the data that runs anyway (the report's profiling
    pass, one forward call per batch) instead of a second pass: :meth:`accuracy` pairs the
    predictions with the labels of the inputs in the order they were run.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    >>> with PredictionRecorder(net) as rec:
    ...     _ = net(torch.eye(4)[:2].reshape(2, 1, 2, 2))
    >>> rec.accuracy(np.array([0, 0])).describe()
    '50.0 % (1 of 2 labelled inputs)'
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.predictions: list[np.ndarray] = []
        self.outputs = 0  # scores per input (0: none seen, -1: an output that is not one score per class)
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module: torch.nn.Module, args: object, out: object) -> None:
        out = out[0] if isinstance(out, (tuple, list)) and out else out
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or self.outputs not in (0, int(out.shape[1])):
            self.outputs = -1
            return
        self.outputs = int(out.shape[1])
        self.predictions.append(out.detach().argmax(dim=1).cpu().numpy())

    def __enter__(self) -> "PredictionRecorder":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def accuracy(self, labels: np.ndarray, transform: str = "", classes: Sequence[str] = ()) -> "Accuracy | None":
        """The accuracy of the recorded predictions against ``labels`` (``-1``: unlabelled), the inputs in
        the order they were run; None when the calls do not match them one to one (another number of
        inputs, or an output that is not one score per class)."""
        pred = np.concatenate(self.predictions) if self.predictions else np.empty(0, np.int64)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if self.outputs <= 0 or pred.size != labels.size:
            return None
        keep = labels >= 0
        if not keep.any():
            return Accuracy(0, 0, transform, "the data have no class labels")
        beyond = _beyond_outputs(int(labels[keep].max()), self.outputs, transform)
        if beyond is not None:
            return beyond
        confusion = _tally(None, labels[keep], pred[keep], self.outputs, len(classes))
        return Accuracy(int((pred == labels)[keep].sum()), int(keep.sum()), transform, confusion=confusion,
                        classes=tuple(str(c) for c in classes))


def _has_labels(source: object, batch_size: int) -> bool:
    """Whether the first batch holds any label (sources without class names may still be labelled)."""
    for _, batch in source.iter_batches(batch_size, [0]):  # type: ignore[attr-defined]
        return bool((batch.labels >= 0).any())
    return False
