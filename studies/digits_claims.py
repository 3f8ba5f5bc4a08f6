"""The paper's claims, measured on the digits CNN: conventions, ablations, bases, baselines.

Over the 21 shipped checkpoints of ``digits-cnn`` (epoch 0 = the random initialisation)
and the held-out digits (``digits:test``, 451 images):

1. α̂ in the three eigenvalue conventions (``convsvd`` σ²/N log10, ``ddp`` σ²/rows ln,
   ``ww`` σ² log10 in WeightWatcher's slices view) against test error (Spearman ρ);
2. directional ablation of every layer of the final model: top-k SVD directions vs
   bottom-k, channels (by weight norm, by activity), random directions (5 seeds), and
   the rank-k truncation;
3. class separation in the SVD, channel and random bases, for the trained and the
   initial model;
4. per-layer spectral baselines: trained ESD vs its shuffle and vs its initialisation.

Writes ``docs/claims-data.md`` (every table) and PNGs under ``docs/figures/``;
``docs/claims.md`` discusses them.

    .venv/bin/python studies/digits_claims.py [--out docs] [--seeds 5]

Deterministic (shipped weights, fixed seeds); a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from convsvd import zoo  # noqa: E402
from convsvd.ablation import AblationResult, ablate  # noqa: E402
from convsvd.bases import compare_bases  # noqa: E402
from convsvd.spectral import spectral_baselines, spectrum  # noqa: E402
from convsvd.viz import plot_ablation  # noqa: E402

MODEL = "digits-cnn"
DATA = "digits:test"
LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")
CONVENTIONS = (("convsvd", "unfold"), ("ddp", "unfold"), ("ww", "slices"), ("ww", "unfold"))
LARGE = 32  # the layers with at least 32 eigenvalues: conv2, conv3, fc1 (fc2 has 10, conv1 9)
DPI = 90


def conventions() -> tuple[pd.DataFrame, pd.DataFrame]:
    """α̂ per checkpoint in every convention, and Spearman ρ with test error."""
    history = zoo.history(MODEL).set_index("epoch")
    rows = []
    for epoch in range(len(zoo.checkpoints(MODEL))):
        model = zoo.load(MODEL, epoch=epoch)
        row: dict[str, object] = {"epoch": epoch, "test_error": float(history.loc[epoch, "test_error"])}
        for conv, view in CONVENTIONS:
            res = spectrum(model, convention=conv, view=view)
            s = res.summary().iloc[0]
            tag = f"{conv}_{view}"
            row[f"alpha_hat_{tag}"] = s["alpha_hat"]
            row[f"alpha_hat_large_{tag}"] = spectrum(model, convention=conv, view=view,
                                                     min_evals=LARGE).summary()["alpha_hat"].iloc[0]
            row[f"fc2_term_{tag}"] = res["fc2"].alpha_weighted
        rows.append(row)
    table = pd.DataFrame(rows)
    corr = []
    for conv, view in CONVENTIONS:
        tag = f"{conv}_{view}"
        for part, name in ((table, "all"), (table[table.epoch >= 1], "trained")):
            rho, p = spearmanr(part[f"alpha_hat_{tag}"], part["test_error"])
            rho_l, p_l = spearmanr(part[f"alpha_hat_large_{tag}"], part["test_error"])
            corr.append({"convention": conv, "view": view, "epochs": name, "rho": float(rho), "p": float(p),
                         "rho_large": float(rho_l), "p_large": float(p_l),
                         "alpha_hat_init": float(table[f"alpha_hat_{tag}"].iloc[0]),
                         "alpha_hat_final": float(table[f"alpha_hat_{tag}"].iloc[-1]),
                         "fc2_term_sd": float(table[f"fc2_term_{tag}"].std())})
    return table, pd.DataFrame(corr)


def ablations(seeds: int) -> AblationResult:
    return ablate(zoo.load(MODEL), DATA, layers=",".join(LAYERS), seeds=seeds, progress=False)


def drops(res: AblationResult, ks: tuple[int, ...] = (1, 2, 4, 8)) -> pd.DataFrame:
    """Accuracy drop at k per layer and basis (random: mean ± sd over the seeds)."""
    s = res.summary()
    rows = []
    for (layer, basis), part in s.groupby(["layer", "basis"], sort=False):
        row: dict[str, object] = {"layer": layer, "basis": basis}
        for k in ks:
            hit = part[part.k == k]
            if hit.empty:
                row[f"k={k}"] = ""
            elif basis == "random":
                row[f"k={k}"] = f"{hit.accuracy_drop.iloc[0]:.3f} ± {hit.accuracy_drop_std.iloc[0]:.3f}"
            else:
                row[f"k={k}"] = f"{hit.accuracy_drop.iloc[0]:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def separations() -> pd.DataFrame:
    frames = []
    for label, epoch in (("trained", None), ("init", 0)):
        model = zoo.load(MODEL) if epoch is None else zoo.load(MODEL, epoch=epoch)
        f = compare_bases(model, DATA, progress=False)
        f.insert(0, "model", label)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def figures(table: pd.DataFrame, corr: pd.DataFrame, abl: AblationResult, sep: pd.DataFrame,
            out: Path) -> list[Path]:
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, axes = plt.subplots(1, len(CONVENTIONS), figsize=(13.5, 3.3), layout="constrained")
    for ax, (conv, view) in zip(axes, CONVENTIONS):
        tag = f"{conv}_{view}"
        rho = corr[(corr.convention == conv) & (corr.view == view) & (corr.epochs == "all")].rho.iloc[0]
        sc = ax.scatter(table.test_error, table[f"alpha_hat_{tag}"], c=table.epoch, cmap="viridis", s=14)
        ax.set_xlabel("test error", fontsize=9)
        ax.set_ylabel("α̂", fontsize=9)
        ax.set_title(f"{conv} ({view}): ρ = {rho:+.2f}", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, linewidth=0.6)
    fig.colorbar(sc, ax=axes, label="epoch", shrink=0.8)
    paths.append(figdir / "claims-alpha-hat-conventions.png")
    fig.savefig(paths[-1], dpi=DPI)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(LAYERS), figsize=(19, 4.4), layout="constrained")
    for ax, layer in zip(axes, LAYERS):
        plot_ablation(abl, layer, ax=ax)
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    paths.append(figdir / "claims-ablation.png")
    fig.savefig(paths[-1], dpi=DPI)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.5), layout="constrained")
    colours = {"svd": "#C44E52", "channel": "#4C72B0", "random": "#7F7F7F"}
    for ax, metric, title in zip(axes, ("jaccard_mean", "modularity", "exclusive_mean"),
                                 ("mean Jaccard overlap of class hyperedges (lower: more separated)",
                                  "hypergraph modularity of the class partition", "mean exclusive share")):
        for (model, basis), part in sep.groupby(["model", "basis"], sort=False):
            ax.plot(part.layer, part[metric], marker="o" if model == "trained" else "x", markersize=4,
                    linestyle="-" if model == "trained" else ":", color=colours[basis], label=f"{basis}, {model}")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, linewidth=0.6)
    axes[-1].legend(fontsize=7, frameon=False)
    paths.append(figdir / "claims-separation-bases.png")
    fig.savefig(paths[-1], dpi=DPI)
    plt.close(fig)
    return paths


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    return str(v)


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"), help="docs folder")
    parser.add_argument("--seeds", type=int, default=5, help="random bases per k in the ablation (default 5)")
    args = parser.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    table, corr = conventions()
    print(corr.to_string(index=False), flush=True)
    abl = ablations(args.seeds)
    drop = drops(abl)
    print(drop.to_string(index=False), flush=True)
    sep = separations()
    sep_cols = ["model", "layer", "basis", "neurons", "mean_size", "jaccard_mean", "exclusive_mean",
                "components_s1", "modularity", "ncc_accuracy", "status"]
    print(sep[sep_cols].to_string(index=False), flush=True)
    base = spectral_baselines(zoo.load(MODEL), init=zoo.load(MODEL, epoch=0)).to_frame()
    base_init = spectral_baselines(zoo.load(MODEL, epoch=0)).to_frame()
    print(base.drop(columns=["test"]).to_string(index=False), flush=True)
    paths = figures(table, corr, abl, sep, out)
    unmod = pd.DataFrame([{"layer": l.layer, "channels": l.channels, "rank": l.rank, "accuracy": l.accuracy,
                           "loss": l.loss} for l in abl.layers])
    full = abl.summary()[["layer", "basis", "k", "n_seeds", "accuracy", "accuracy_std", "loss", "logit_change"]]
    text = f"""# Data of the claims study (generated)

Written by `python studies/digits_claims.py`; the discussion is in [claims.md](claims.md).
Model `{MODEL}` (21 checkpoints), data `{DATA}`.

## 1. α̂ in three conventions vs test error

Spearman ρ(α̂, test error) over all 21 checkpoints and over epochs ≥ 1; `rho_large`: α̂ over the
layers with ≥ {LARGE} eigenvalues only (conv2, conv3, fc1); `fc2_term_sd`: the standard deviation across
checkpoints of fc2's term α·log λmax (fc2 has 10 eigenvalues and a jumpy α):

{_markdown(corr)}

Per checkpoint:

{_markdown(table)}

## 2. Directional ablation of the final model

Unmodified model:

{_markdown(unmod)}

Accuracy drop at k = 1, 2, 4, 8 (random: mean ± sd over {args.seeds} seeds):

{_markdown(drop)}

Every k (mean over seeds for random):

{_markdown(full)}

## 3. Class separation per basis

{_markdown(sep[sep_cols])}

## 4. Spectral baselines

Trained (epoch 20) vs its shuffle and vs its initialisation (test: {base.test.iloc[0]}):

{_markdown(base.drop(columns=["test", "convention"]))}

The initialisation (epoch 0) vs its own shuffle:

{_markdown(base_init.drop(columns=["test", "convention", "alpha_init", "phenomenology_init", "ks_init",
                                   "p_init", "distinguishable_from_init"]))}
"""
    (out / "claims-data.md").write_text(text, encoding="utf-8")
    print(f"done in {time.perf_counter() - t0:.1f} s; wrote {out / 'claims-data.md'} and "
          + ", ".join(p.name for p in paths))


if __name__ == "__main__":
    main()
