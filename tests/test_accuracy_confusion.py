"""The model's confusion matrix equals a brute-force count of its predictions; its figure draws it."""

from __future__ import annotations

import numpy as np
import torch

from convsvd import zoo
from convsvd.data import load_digits
from convsvd.signals.accuracy import accuracy


def test_confusion_equals_brute_force_and_accuracy() -> None:
    model = zoo.load("digits-cnn").eval()
    d = load_digits("test")
    x, y = torch.as_tensor(d.images[:200]), torch.as_tensor(d.labels[:200])
    acc = accuracy(model, (x, y), batch_size=37)  # several batches, the last one short
    with torch.no_grad():
        pred = model(x.float()).argmax(dim=1).numpy()
    want = np.zeros((10, 10), dtype=np.int64)
    for label, p in zip(y.numpy(), pred):
        want[label, p] += 1
    np.testing.assert_array_equal(acc.confusion, want)
    assert np.trace(acc.confusion) == acc.correct and acc.confusion.sum() == acc.labelled == 200
    frame = acc.confusion_frame()
    assert len(frame) == 100 and frame["count"].sum() == 200

    from convsvd.viz.accuracy import plot_confusion

    ax = plot_confusion(acc)
    assert ax.images[0].get_array().shape == (10, 10)
    assert {t.get_text() for t in ax.texts} >= {str(int(want[i, i])) for i in range(10) if want[i, i]}


def test_predictions_recorded_during_profiling_equal_a_second_pass(tmp_path) -> None:
    """The report's accuracy comes from the profiling pass: the same numbers as accuracy()'s own pass."""
    from convsvd.signals import profile
    from convsvd.signals.accuracy import PredictionRecorder

    model = zoo.load("digits-cnn").eval()
    d = load_digits("test")
    x, y = torch.as_tensor(d.images[:150]), torch.as_tensor(d.labels[:150])
    y[::7] = -1  # some inputs unlabelled
    with PredictionRecorder(model) as rec:
        table = profile(model, (x, y), batch_size=32, out=tmp_path / "run", progress=False)
    labels = np.concatenate([lab for _, lab, _, _ in table.chunks(table.layers[0])])
    got, want = rec.accuracy(labels, classes=[str(i) for i in range(10)]), accuracy(model, (x, y), batch_size=32)
    assert got is not None and (got.correct, got.labelled) == (want.correct, want.labelled) and got.labelled < 150
    np.testing.assert_array_equal(got.confusion, want.confusion)
    assert rec._handle is None  # the hook is gone
    model(x[:3].float())
    assert sum(p.size for p in rec.predictions) == 150  # nothing recorded after the block
    assert rec.accuracy(labels[:-1]) is None  # inputs and predictions that do not pair up one to one
    assert rec.accuracy(np.full(150, 10)).reason.startswith("labels up to 10")
