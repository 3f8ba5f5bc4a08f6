"""When does feature visualisation converge? The objective and the image against steps and image size.

Two small models, no downloads:

- ``digits-cnn`` (the built-in 8×8 digits CNN, shipped weights);
- ``photo-cnn``: a 4-layer CNN trained here, seeded, to tell which of six
  scikit-image photos (astronaut, chelsea, coffee, rocket, immunohistochemistry,
  hubble_deep_field) a 32×32 RGB patch comes from (a minute on 2 CPU cores).

For each model, each layer and its 4 largest-σ SVD neurons (both directions), the
report's settings (Fourier parameterisation, decorrelated colour, the report's
total-variation penalty, transformation robustness) are run for
``STEPS`` Adam steps at each image side of ``SIDES`` (the model always sees its
own input side: larger images are shrunk to it). Measured per image:

- the final objective ``d · u_iᵀ(y − b)`` (untransformed image) as a share of the
  one after the most steps (the plateau);
- the image change between consecutive step counts (RMS pixel difference, pixels in
  ``[0, 1]``).

The picked defaults: the fewest steps at which the median image of every layer
is within ``FULL_TOL`` (full report) or ``QUICK_TOL`` (quick report) of its
plateau, and the smallest side (a multiple of the model's input side) whose
objective is within ``FULL_TOL`` of the best side's. Seeded, deterministic up to
float rounding; a few minutes on 2 CPU cores. Writes
``docs/featureviz-convergence.md`` and ``docs/figures/featureviz-convergence.png``.

    .venv/bin/python studies/featureviz_convergence.py [--out docs]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from convsvd import zoo  # noqa: E402
from convsvd.decompose import Decomposition, decompose  # noqa: E402
from convsvd.features import FeatureVisualization, ImageParam, featureviz  # noqa: E402
from convsvd.report.analysis import REPORT_TV, STEP_TOLERANCE, top_neurons  # noqa: E402

STEPS = (16, 32, 64, 128, 256, 512)
#: Image sides as multiples of the model's input side, compared after SIDE_STEPS steps.
SIDES = (1, 2, 4)
SIDE_STEPS = 128
NEURONS = 4
FULL_TOL = STEP_TOLERANCE["full"]
QUICK_TOL = STEP_TOLERANCE["quick"]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
DPI = 90


class PhotoCNN(nn.Module):
    """Four layers for 32×32 RGB patches: three convs (3×3, ReLU, the first two max-pooled) and a linear head."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x)).mean(dim=(2, 3))
        return self.fc(x)


def photo_patches(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 64×64 crops of the photos, halved to 32×32, in ``[0, 1]``, with their photo's index."""
    import skimage.data

    gen = torch.Generator().manual_seed(seed)
    photos = [torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, p)()[..., :3])).permute(2, 0, 1).float() / 255
              for p in PHOTOS]
    labels = torch.randint(len(photos), (n,), generator=gen)
    out = torch.empty(n, 3, 64, 64)
    for k, c in enumerate(labels.tolist()):
        img = photos[c]
        y = int(torch.randint(img.shape[1] - 64, (1,), generator=gen))
        x = int(torch.randint(img.shape[2] - 64, (1,), generator=gen))
        out[k] = img[:, y:y + 64, x:x + 64]
    return nn.functional.avg_pool2d(out, 2), labels


def train_photo_cnn(seed: int = 0) -> tuple[nn.Module, float]:
    """The photo model and its held-out accuracy (seeded; 1 thread)."""
    torch.manual_seed(seed)
    x, y = photo_patches(3000, seed)
    xt, yt = photo_patches(600, seed + 1)
    model = PhotoCNN(len(PHOTOS))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(4):
        for idx in torch.randperm(len(x), generator=order).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    return model, acc


def _run(model: nn.Module, layer: str, neurons: list[int], steps: int, size: int, side: int,
         svd: Decomposition) -> tuple[FeatureVisualization, float]:
    """The report's feature visualisation of ``neurons``: images of ``size``, shrunk to the model's ``side``."""
    t0 = time.perf_counter()
    fv = featureviz(model, layer, neurons, steps=steps, size=size, input_size=side, svd=svd,
                    image=ImageParam(tv=REPORT_TV), progress=False)
    return fv, time.perf_counter() - t0


def measure(name: str, model: nn.Module, side: int, layers: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (layer, steps, image) at the model's own side: objective, image change, seconds; and per
    (layer, side, image) after ``SIDE_STEPS`` steps: the objective."""
    svd = decompose(model, mode="full")
    rows, sides = [], []
    for layer in layers:
        neurons = top_neurons(svd[layer], NEURONS)
        prev = None
        for steps in STEPS:
            fv, secs = _run(model, layer, neurons, steps, side, side, svd)
            imgs = fv.images.double()
            change = (np.full(len(fv), np.nan) if prev is None
                      else (imgs - prev).pow(2).flatten(1).mean(1).sqrt().numpy())
            prev = imgs
            for k in range(len(fv)):
                rows.append(dict(model=name, layer=layer, steps=steps, image=k, objective=float(fv.objective[k]),
                                 change=float(change[k]), seconds=secs))
            if steps == SIDE_STEPS:
                sides += [dict(model=name, layer=layer, side=side, image=k, objective=float(fv.objective[k]),
                               seconds=secs) for k in range(len(fv))]
        for mult in SIDES[1:]:
            fv, secs = _run(model, layer, neurons, SIDE_STEPS, side * mult, side, svd)
            sides += [dict(model=name, layer=layer, side=side * mult, image=k, objective=float(fv.objective[k]),
                           seconds=secs) for k in range(len(fv))]
        print(f"{name} {layer}: done", flush=True)
    frame = pd.DataFrame(rows)
    last = frame[frame.steps == max(STEPS)].set_index(["layer", "image"])["objective"]
    frame["share"] = frame["objective"] / frame.set_index(["layer", "image"]).index.map(last).to_numpy()
    return frame, pd.DataFrame(sides)


def pick(frame: pd.DataFrame, sides: pd.DataFrame) -> dict[str, object]:
    """The fewest steps within each tolerance (every layer's median image), and the smallest good side."""
    med = frame.groupby(["layer", "steps"])["share"].median().unstack("steps")
    out: dict[str, object] = {}
    for key, tol in (("full_steps", FULL_TOL), ("quick_steps", QUICK_TOL)):
        ok = (med >= 1 - tol).all(axis=0)  # every layer
        out[key] = int(ok[ok].index.min()) if ok.any() else max(STEPS)
    best = sides.groupby(["layer", "side"])["objective"].median().unstack("side")
    rel = best.div(best.max(axis=1), axis=0)
    good = (rel >= 1 - FULL_TOL).all(axis=0)
    out["side"] = int(good[good].index.min()) if good.any() else int(rel.columns.max())
    out["side_share"] = rel
    return out


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (the index as the first column)."""
    frame = frame.reset_index()
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join("–" if isinstance(v, float) and np.isnan(v) else f"{v:g}" if isinstance(v, float)
                              else str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def figure(frames: dict[str, pd.DataFrame], path: Path) -> None:
    fig, axes = plt.subplots(2, len(frames), figsize=(4.6 * len(frames), 6.4), layout="constrained", squeeze=False)
    for col, (name, (frame, _)) in enumerate(frames.items()):
        for layer, part in frame.groupby("layer", sort=False):
            med = part.groupby("steps")[["share", "change"]].median()
            axes[0, col].plot(med.index, med["share"], marker="o", label=layer)
            axes[1, col].plot(med.index, med["change"], marker="o", label=layer)
        axes[0, col].axhline(1 - FULL_TOL, color="grey", linestyle=":", label=f"{1 - FULL_TOL:.0%} of plateau")
        axes[0, col].set(xscale="log", title=f"{name}: objective / objective at {max(STEPS)} steps",
                         xlabel="steps", ylabel="median share")
        axes[1, col].set(xscale="log", yscale="log", title=f"{name}: image change since the previous step count",
                         xlabel="steps", ylabel="RMS pixel change")
        for ax in axes[:, col]:
            ax.set_xticks(STEPS, [str(s) for s in STEPS])
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def write(frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]], out: Path, header: str) -> None:
    """The tables, the figure and the picked settings (from the measured frames)."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figure(frames, out / "figures" / "featureviz-convergence.png")
    lines = ["# Feature visualisation: steps and image size", "",
             f"Written by `studies/featureviz_convergence.py` (seeded; see its docstring for the method). {header}",
             "", "![objective and image change against steps](figures/featureviz-convergence.png)", ""]
    for name, (base, sides) in frames.items():
        p = pick(base, sides)
        share = base.groupby(["layer", "steps"])["share"].median().unstack("steps")
        change = base.groupby(["layer", "steps"])["change"].median().unstack("steps")
        secs = base.groupby(["layer", "steps"])["seconds"].first().groupby("steps").mean()  # one run per row group
        reached = ("" if p["full_steps"] < max(STEPS) else
                   f"; not reached on every layer: the objective still grows at {max(STEPS)} steps")
        lines += [f"## {name}", "",
                  f"Median objective as a share of its value after {max(STEPS)} steps (model's own side):", "",
                  markdown(share.round(3)), "",
                  "Median RMS pixel change since the previous step count (pixels in [0, 1]):", "",
                  markdown(change.round(4)), "",
                  f"Wall seconds of one run of a layer ({NEURONS} neurons × 2 directions in one pass; "
                  "on a shared, loaded 2-core machine, so only their ratios mean much):", "",
                  markdown(secs.round(2).to_frame("seconds").T), "",
                  f"Median objective after {SIDE_STEPS} steps at each image side (the model sees its own side), "
                  "as a share of the best side's:",
                  "", markdown(p["side_share"].round(3)), "",  # type: ignore[union-attr]
                  f"**Picked:** full {p['full_steps']} steps (every layer's median within {FULL_TOL:.0%} of its "
                  f"value after {max(STEPS)} steps{reached}), quick {p['quick_steps']} steps (within {QUICK_TOL:.0%}); smallest side within "
                  f"{FULL_TOL:.0%} of the best: {p['side']}.", ""]
        print(name, {k: v for k, v in p.items() if k != "side_share"}, flush=True)
        base.to_csv(out / "figures" / f"featureviz-convergence-{name}-steps.csv", index=False)
        sides.to_csv(out / "figures" / f"featureviz-convergence-{name}-sides.csv", index=False)
    (out / "featureviz-convergence.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out / 'featureviz-convergence.md'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--from-csv", type=Path, default=None,
                    help="rewrite the tables and figure from the CSVs of an earlier run in this folder")
    args = ap.parse_args()
    if args.from_csv is not None:
        frames = {name: (pd.read_csv(args.from_csv / f"featureviz-convergence-{name}-steps.csv"),
                         pd.read_csv(args.from_csv / f"featureviz-convergence-{name}-sides.csv"))
                  for name in ("digits-cnn", "photo-cnn")}
        old = (args.from_csv.parent / "featureviz-convergence.md").read_text(encoding="utf-8").splitlines()[2]
        write(frames, args.out, old.split("method). ", 1)[-1])
        return
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    t0 = time.perf_counter()
    photo, acc = train_photo_cnn()
    print(f"photo-cnn: held-out accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    models = {"digits-cnn": (zoo.load("digits-cnn"), 8, ["conv1", "conv2", "conv3", "fc1"]),
              "photo-cnn": (photo, 32, ["conv1", "conv2", "conv3"])}
    frames = {name: measure(name, m, side, layers) for name, (m, side, layers) in models.items()}
    write(frames, args.out, f"photo-cnn held-out accuracy: {acc:.3f}. Total time {time.perf_counter() - t0:.0f} s.")


if __name__ == "__main__":
    main()
