"""``convsvd`` command line: each subcommand parses arguments and calls one public function.

User mistakes end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from convsvd.errors import ConvSVDError, InputError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    """Register a subcommand (the registry the parser is built from)."""

    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help, add_args, fn)
        return fn

    return deco


# --------------------------------------------------------------------------- shared helpers


def _console(stderr: bool = False):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, width=None if sys.stdout.isatty() else 160)


def print_frame(frame, title: str = "", floatfmt: str = "{:.4g}") -> None:  # type: ignore[no-untyped-def]
    """Print a DataFrame as a rich table."""
    from rich.table import Table

    table = Table(title=title or None, show_lines=False, header_style="bold")
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "iuf" else "left")
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if v != v else floatfmt.format(v))
            else:
                cells.append("" if v is None else str(v))
        table.add_row(*cells)
    _console().print(table)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="a built-in model name (e.g. digits-cnn), a .pt/.pth/.bin/.safetensors/.onnx file, "
                        "a folder of .safetensors, or 'package.module:factory'")
    p.add_argument("--weights", metavar="FILE", help="weights to load into a 'package.module:factory' model")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling a full-model checkpoint (runs code from the file: only for files you trust)")


def zoo_base(name: str) -> str | None:
    """The built-in model a MODEL argument names (``digits-cnn`` or ``digits-cnn@3``), or None.

    A path that exists on disk always wins over a built-in name.
    """
    from convsvd import zoo

    base = name.partition("@")[0]
    return base if base in zoo.available() and not Path(name).exists() else None


def zoo_input_shape(name: str) -> tuple[int, ...] | None:
    """Input shape ``(c, h, w)`` of a built-in model (or one of its checkpoints), else None."""
    from convsvd import zoo

    base = zoo_base(name)
    return tuple(zoo.model_info(base).input_shape) if base else None


def resolve_model(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A built-in zoo name → its nn.Module; anything else → :func:`convsvd.io.load`."""
    from convsvd import zoo
    from convsvd.io import load

    name = args.model
    base, at, epoch = name.partition("@")  # "digits-cnn@3": the checkpoint saved after epoch 3
    if zoo_base(name):
        from convsvd.io import from_module

        if not at:
            return from_module(zoo.load(name), source=name)
        if not epoch.isdigit():
            raise InputError(f"{name}: expected NAME@EPOCH with a whole-number epoch, e.g. {base}@3")
        return from_module(zoo.load(base, epoch=int(epoch)), source=name)
    return load(name, weights=getattr(args, "weights", None), trust_pickle=getattr(args, "trust_pickle", False))


def _writable_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {path}: cannot create the folder ({e.strerror})") from None
    if not out.is_dir():
        raise InputError(f"--out {path}: is not a folder")
    probe = out / ".convsvd-write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise InputError(f"--out {path}: folder is not writable ({e.strerror})") from None
    return out


# --------------------------------------------------------------------------- describe


def _describe_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", help="also write layers.csv and layers.parquet here")


@command("describe", "list every layer that will be analysed, and what is skipped and why", _describe_args)
def cmd_describe(args: argparse.Namespace) -> int:
    from convsvd.layers import describe

    mw = resolve_model(args)
    frame = describe(mw)
    print_frame(frame, title=f"{mw.source}: {len(mw.layers)} layers analysed, {len(mw.skipped)} parameters skipped")
    if args.out:
        from convsvd._meta import write_atomic

        out = _writable_dir(args.out)
        write_atomic(out / "layers.csv", lambda p: frame.to_csv(p, index=False))
        write_atomic(out / "layers.parquet", lambda p: frame.to_parquet(p, index=False))
    return 0


# --------------------------------------------------------------------------- svd


def _svd_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--layers", metavar="GLOB", help="comma-separated glob patterns of layer names (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--top-k", type=int, metavar="K", help="only the K leading singular triplets of each layer")
    g.add_argument("--values-only", action="store_true", help="singular values only (fast Gram route)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="precision (default: the weights' own)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--fold-bn", action="store_true", help="fold a directly following BatchNorm into each layer")
    p.add_argument("--cache", metavar="DIR", help="reuse results from this cache folder")
    p.add_argument("--out", metavar="DIR", help="write svd.safetensors, svd.parquet, svd.csv and svd.json here")


@command("svd", "singular value decomposition of every conv and linear layer", _svd_args)
def cmd_svd(args: argparse.Namespace) -> int:
    from convsvd.decompose import decompose

    out = _writable_dir(args.out) if args.out else None
    mw = resolve_model(args)
    mode = "topk" if args.top_k else ("values" if args.values_only else "full")
    t0 = time.perf_counter()
    dec = decompose(mw, layers=args.layers, mode=mode, k=args.top_k, dtype=args.dtype, device=args.device,
                    fold_bn=args.fold_bn, cache_dir=args.cache, progress=True)
    dt = time.perf_counter() - t0
    top = args.top_k or 10
    print_frame(dec.to_frame(top_k=top), title=f"{mw.source}: SVD of {len(dec)} layers in {dt:.2f} s")
    for s in dec.skipped:
        if "NaN" in s.reason or "zero-size" in s.reason:
            _console(stderr=True).print(f"[yellow]skipped {s.name}: {s.reason}[/]")
    if out is not None:
        paths = dec.save(out, top_k=top)
        _console().print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


# --------------------------------------------------------------------------- profile


def _threshold(text: str) -> float | str:
    """``--threshold``: a share, or ``reference`` (checked with the other influence options)."""
    if text == "reference":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1] or 'reference', got {text!r}") from None


def _profile_args(p: argparse.ArgumentParser) -> None:
    from convsvd.signals import AGGREGATIONS

    add_model_args(p)
    p.add_argument("data", metavar="DATA",
                   help="'digits' (or digits:train|test|all), an image folder (one subfolder per class), "
                        "or a .npz/.pt file of inputs and labels")
    p.add_argument("--layers", metavar="GLOB", help="comma-separated glob patterns of layer names (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=_threshold, metavar="T",
                   help="influential set: smallest set reaching this share of the layer's Σ|signal| (default 0.3; "
                        "'reference': DeepDataProfiler's 0.1)")
    g.add_argument("--top-k", type=int, metavar="K", help="influential set: the K largest |signal| instead")
    p.add_argument("--aggregate", choices=AGGREGATIONS, default="mean", help="over a conv's locations (default mean)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="inputs per forward pass (default 64)")
    p.add_argument("--device", help="cpu or cuda (default: where the model is)")
    p.add_argument("--fold-bn", action="store_true", help="profile conv → BatchNorm pairs as one map")
    p.add_argument("--shard-size", type=int, default=1024, metavar="N",
                   help="inputs per Parquet shard, the unit of resume and of torchrun ranks (default 1024)")
    p.add_argument("--restart", action="store_true", help="discard a run already in --out instead of resuming it")
    p.add_argument("--out", metavar="DIR", default="profile-out",
                   help="run folder: manifest.json and shards/*.parquet (default: profile-out)")


@command("profile", "signals of a dataset on every SVD neuron, and each input's influential neurons", _profile_args)
def cmd_profile(args: argparse.Namespace) -> int:
    import os

    from convsvd.data import as_source
    from convsvd.signals import profile

    out = _writable_dir(args.out)
    mw = resolve_model(args)
    data = as_source(args.data)
    shape = zoo_input_shape(args.model)
    t0 = time.perf_counter()
    table = profile(mw, data, layers=args.layers, aggregate=args.aggregate, threshold=args.threshold,
                    top_k=args.top_k, batch_size=args.batch_size, device=args.device, fold_bn=args.fold_bn,
                    input_shape=shape, out=out, shard_size=args.shard_size, restart=args.restart, progress=True)
    dt = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    m = table.manifest
    summary = table.summary()[["layer", "kind", "groups", "neurons", "mean_influential"]]
    print_frame(summary.rename(columns={"mean_influential": "mean influential"}),
                title=f"{mw.source} on {m['dataset']['name']}: {table.n_inputs} inputs, {len(table.layers)} layers "
                      f"profiled in {dt:.2f} s")
    con, err = _console(), _console(stderr=True)
    con.print(f"data: {m['dataset']['transform']}")
    for item in m["not_profiled"]:
        err.print(f"[yellow]not profiled {item['layer']}: {item['reason']}[/]")
    for item, reason in m["skipped_inputs"]:
        err.print(f"[yellow]skipped {item}: {reason}[/]")
    con.print(f"wrote {out / 'manifest.json'} and {len(m['shards'])} shards in {out / 'shards'}")
    return 0


# --------------------------------------------------------------------------- report, demo


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="skip the slowest parts: fewer SVD neurons, feature-visualisation steps and exemplars, "
                        "no shuffled-weights baseline of the spectra")


def _report_args(p: argparse.ArgumentParser) -> None:
    from convsvd.report import DEFAULTS

    add_model_args(p)
    p.add_argument("data", metavar="DATA", nargs="?",
                   help="optional: 'digits' (or digits:train|test|all), an image folder (one subfolder per class), "
                        "or a .npz/.pt file of inputs and labels; without it only the weight sections are made")
    p.add_argument("--out", metavar="FILE", default="report.html",
                   help="the HTML file, or a folder for report.html (default: report.html); the numbers go to "
                        "<stem>-data/ beside it")
    _report_options(p)
    p.add_argument("--layers", metavar="GLOB", help="comma-separated glob patterns of layer names (default: all)")
    p.add_argument("--neurons", type=int, metavar="N",
                   help=f"top SVD neurons shown per layer (default {DEFAULTS['neurons']})")
    p.add_argument("--steps", type=int, metavar="N",
                   help=f"feature-visualisation steps (default {DEFAULTS['steps']})")
    p.add_argument("--k", type=int, metavar="K", help=f"dataset exemplars per side (default {DEFAULTS['k']})")
    p.add_argument("--input-size", type=int, metavar="S",
                   help="side of the model's input (default: known for built-in models, else the data's, else 224)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="inputs per forward pass (default 128)")
    p.add_argument("--device", help="cpu or cuda (default: CUDA for the SVD when available; the model runs where it is)")
    p.add_argument("--fold-bn", action="store_true", help="fold a directly following BatchNorm into each layer")
    p.add_argument("--init", metavar="MODEL",
                   help="the same model at its random initialisation (e.g. an epoch-0 checkpoint), for the spectra "
                        "(default: a built-in model's own initialisation; else none)")
    p.add_argument("--title", help="title of the page (default: the model)")


def _print_report(result) -> None:  # type: ignore[no-untyped-def]
    con = _console()
    for s in result.sections:
        if s.status != "done":
            for n in s.notes:
                if n.kind == "missing":
                    _console(stderr=True).print(f"[yellow]{s.title}: {n.text}[/]")
    n_fig = sum(len(s.figures) for s in result.sections)
    con.print(f"wrote {result.path} ({len(result.sections)} sections, {n_fig} figures) and "
              f"{len(result.files)} data files in {result.data_dir}/ in {sum(result.timings.values()):.1f} s")


@command("report", "one self-contained HTML report of a model (and a dataset): every analysis, every figure",
         _report_args)
def cmd_report(args: argparse.Namespace) -> int:
    from convsvd import zoo
    from convsvd.io import from_module, load
    from convsvd.report import report

    mw = resolve_model(args)
    shape, init = None, None
    base = zoo_base(args.model)  # a built-in model, or one of its checkpoints (NAME@EPOCH)
    if base:
        shape = zoo_input_shape(args.model)
        init = from_module(zoo.load(base, pretrained=False), source=f"{base} (initialisation)")
    if args.init is not None:
        init = load(args.init, trust_pickle=args.trust_pickle)
    if args.input_size is not None:
        if args.input_size < 1:
            raise InputError(f"--input-size {args.input_size}: expected a positive side in pixels")
        first = mw.layers[0] if len(mw.layers) else None
        shape = (first.in_channels if first is not None else 3, args.input_size, args.input_size)
    result = report(mw, args.data, out=args.out, quick=args.quick, layers=args.layers, neurons=args.neurons,
                    steps=args.steps, k=args.k, input_shape=shape, batch_size=args.batch_size, device=args.device,
                    fold_bn=args.fold_bn, init=init, title=args.title, progress=True)
    _print_report(result)
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default="demo-out",
                   help="output folder: report.html and report-data/ (default: demo-out)")
    _report_options(p)


@command("demo", "the report of the built-in digits CNN on the held-out digits (DIR/report.html)", _demo_args)
def cmd_demo(args: argparse.Namespace) -> int:
    from convsvd.report import demo

    _print_report(demo(Path(args.out), quick=args.quick, progress=True))
    return 0


# --------------------------------------------------------------------------- features


def _features_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--layer", required=True, metavar="L", help="layer name(s), comma-separated; one PNG per layer")
    p.add_argument("--neurons", metavar="RANGE", help="SVD neurons, e.g. 0-7 or 0,3,5 (default: the 8 leading ones)")
    p.add_argument("--steps", type=int, default=256, metavar="N", help="optimisation steps (default: 256)")
    p.add_argument("--size", type=int, metavar="S", help="side of the optimised image (default: the model's input side)")
    p.add_argument("--input-size", type=int, metavar="S",
                   help="side of the model's input (default: known for built-in models, else --size, else 224)")
    p.add_argument("--directions", choices=["both", "+", "-"], default="both", help="+u_i, -u_i or both (default)")
    p.add_argument("--location", choices=["mean", "centre"], default="mean",
                   help="signal averaged over locations (default) or at the centre location")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--data", metavar="DIR", help="dataset for exemplars: an image folder, a .npz/.pt file, or digits")
    p.add_argument("--k", type=int, default=8, help="exemplars per side (default: 8)")
    p.add_argument("--rank", type=int, help="rank of the filter rebuild (default: smallest keeping 90%% of ‖W̄‖²_F)")
    p.add_argument("--device", help="cpu or cuda (default: where the model is)")
    p.add_argument("--out", metavar="DIR", default="features-out", help="output folder (default: features-out)")


def _neuron_list(text: str | None) -> list[int] | None:
    """``"0-3,7"`` → ``[0, 1, 2, 3, 7]``."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise InputError(f"--neurons {text!r}: expected indices like 0-7 or 0,3,5") from None
    if not out:
        raise InputError(f"--neurons {text!r}: selects no neuron")
    return list(dict.fromkeys(out))


@command("features", "feature visualisation, dataset exemplars and singular filters of SVD neurons", _features_args)
def cmd_features(args: argparse.Namespace) -> int:
    import re

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from convsvd._meta import run_metadata, write_atomic
    from convsvd.features import exemplars, featureviz, singular_filters
    from convsvd.signals import profile
    from convsvd.viz import features_figure

    out = _writable_dir(args.out)
    mw = resolve_model(args)
    layers = [name.strip() for name in args.layer.split(",") if name.strip()]
    for name in layers:
        mw[name]  # one line naming the layers when unknown
    neurons = _neuron_list(args.neurons)
    input_size = args.input_size
    if input_size is None and zoo_base(args.model):
        input_size = zoo_input_shape(args.model)[1:]  # type: ignore[index]
    size = args.size if args.size is not None else input_size
    fvs = {name: featureviz(mw, name, neurons, steps=args.steps, size=size, input_size=input_size,
                            directions=args.directions, location=args.location, seed=args.seed, device=args.device,
                            progress=True) for name in layers}
    exs = {}
    if args.data:
        table = profile(mw, args.data, layers=layers, device=args.device, progress=True)
        for name, fv in fvs.items():
            exs[name] = exemplars(table, name, k=args.k, neurons=fv.flat_neurons(), data=args.data)
    written = []
    for name, fv in fvs.items():
        sf = singular_filters(mw, name, rank=args.rank) if mw[name].kind == "conv2d" else None
        fig = features_figure(fv, exs.get(name), sf)
        path = out / f"features-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.png"
        try:
            write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=100))
        finally:
            plt.close(fig)
        written.append(path)
    frame = pd.concat([fv.to_frame() for fv in fvs.values()], ignore_index=True)
    write_atomic(out / "features.csv", lambda p: frame.to_csv(p, index=False))
    if exs:
        ex_frame = pd.concat([e.to_frame() for e in exs.values()], ignore_index=True)
        write_atomic(out / "exemplars.csv", lambda p: ex_frame.to_csv(p, index=False))
    options = dict(layers=layers, neurons=neurons, steps=args.steps, size=size, input_size=input_size,
                   directions=args.directions, location=args.location, seed=args.seed, data=args.data, k=args.k,
                   rank=args.rank)
    meta = run_metadata(mw.source, mw.content_hash(), options, figures=[p.name for p in written])
    write_atomic(out / "features.json", lambda p: Path(p).write_text(meta))
    print_frame(frame.drop(columns=["seed", "location"]), title=f"{mw.source}: feature visualisation")
    _console().print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


# --------------------------------------------------------------------------- hypergraph


def _hypergraph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("signals", metavar="SIGNALS_DIR", help="the --out folder of a finished profile run")
    p.add_argument("--layer", metavar="L",
                   help="layer(s), comma-separated, whose class hypergraph is drawn and exported (default: all)")
    p.add_argument("--classes", metavar="C", help="comma-separated class names to analyse (default: every class)")
    p.add_argument("--min-share", type=float, default=0.5, metavar="P",
                   help="a neuron joins a class's hyperedge when influential for this share of its inputs (default 0.5)")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="NCC cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the NCC folds and of any subsample (default 0)")
    p.add_argument("--max-inputs", type=int, metavar="N",
                   help="measure modularity on a stratified subsample of about N inputs (default: all)")
    p.add_argument("--out", metavar="DIR", default="hypergraph-out", help="output folder (default: hypergraph-out)")


def _names(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise InputError(f"{what} {text!r}: expected comma-separated names")
    return names


@command("hypergraph", "class hypergraphs of a profile run: how its SVD neurons separate the classes, layer by layer",
         _hypergraph_args)
def cmd_hypergraph(args: argparse.Namespace) -> int:
    import re

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd._meta import run_metadata, write_atomic
    from convsvd.hypergraph import class_hypergraph, class_separation, incidence_frame, input_hypergraph, write_hif
    from convsvd.signals import SignalTable
    from convsvd.viz import plot_class_hypergraph, plot_class_overlap, plot_incidence, plot_separation

    table = SignalTable.open(args.signals)
    layers = _names(args.layer, "--layer") or table.layers
    for name in layers:
        if name not in table.layers:
            raise InputError(f"--layer {name!r}: not profiled in {args.signals} (layers: {', '.join(table.layers)})")
    classes = _names(args.classes, "--classes")
    out = _writable_dir(args.out)
    t0 = time.perf_counter()
    result = class_separation(table, min_share=args.min_share, classes=classes, folds=args.folds, seed=args.seed,
                              max_inputs=args.max_inputs)
    dt = time.perf_counter() - t0
    written: list[Path] = []

    def save_csv(frame, name: str) -> None:  # type: ignore[no-untyped-def]
        write_atomic(out / name, lambda p: frame.to_csv(p, index=False))
        written.append(out / name)

    def save_png(fig, name: str) -> None:  # type: ignore[no-untyped-def]
        try:
            write_atomic(out / name, lambda p: fig.savefig(p, format="png", dpi=100))
        finally:
            plt.close(fig)
        written.append(out / name)

    frame = result.to_frame()
    save_csv(frame, "separation.csv")
    save_csv(result.exclusive_frame(), "exclusive.csv")
    save_csv(result.pairs_frame(), "pairs.csv")
    deepest = result.deepest_shared()
    save_csv(deepest, "deepest-shared.csv")
    save_png(plot_separation(result), "separation.png")
    meta = dict(signals=str(args.signals), layer=None, min_share=args.min_share)
    for name in layers:
        layer = result[name]
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        save_png(plot_class_hypergraph(layer).figure, f"class-hypergraph-{safe}.png")
        save_png(plot_incidence(layer).figure, f"incidence-{safe}.png")
        save_png(plot_class_overlap(layer).figure, f"overlap-{safe}.png")
        save_csv(layer.incidence.to_frame(), f"class-incidence-{safe}.csv")
        save_csv(layer.overlap_frame().reset_index(), f"overlap-{safe}.csv")
        H_in = input_hypergraph(table, name, classes=classes)
        save_csv(incidence_frame(H_in), f"input-incidence-{safe}.csv")
        meta["layer"] = name
        for H, stem in ((class_hypergraph(layer.incidence), "class"), (H_in, "input")):
            written.append(write_hif(H, out / f"{stem}-hypergraph-{safe}.hif.json", metadata=meta))
    options = dict(signals=str(args.signals), layers=layers, classes=classes, min_share=args.min_share,
                   folds=args.folds, seed=args.seed, max_inputs=args.max_inputs)
    m = table.manifest
    text = run_metadata(str(m.get("source")), str(m.get("model_hash")), options, files=[p.name for p in written],
                        dataset=m.get("dataset", {}).get("name"), time_s=round(dt, 3))  # type: ignore[union-attr]
    write_atomic(out / "hypergraph.json", lambda p: Path(p).write_text(text))
    shown = frame.drop(columns=["inputs", "classes", "min_share", "modularity_inputs", "ncc_folds", "message"])
    num = shown.select_dtypes("float").columns
    shown[num] = shown[num].round(4) + 0.0  # a modularity of −1e-100 prints as 0
    shown = shown.rename(columns=dict(mean_size="size", empty_hyperedges="empty", jaccard_mean="jaccard",
                                      exclusive_mean="exclusive", components_s1="s=1", components_s2="s=2",
                                      components_s3="s=3", ncc_accuracy="NCC"))
    n_inputs, n_classes = int(frame["inputs"].iloc[0]), int(frame["classes"].iloc[0])
    print_frame(shown, title=f"separation of {n_classes} classes ({n_inputs} inputs) by SVD neurons at share "
                             f"p = {args.min_share:g} ({dt:.2f} s)")
    err = _console(stderr=True)
    for row in frame.itertuples():
        if row.status != "ok":
            err.print(f"[yellow]{row.layer}: {row.message}[/]")
    top = deepest[deepest["depth"] == deepest["depth"].max()] if len(deepest) else deepest
    if len(top) and top["depth"].iloc[0] >= 0:
        pairs = ", ".join(f"{a}–{b}" for a, b in zip(top["class_a"], top["class_b"]))
        _console().print(f"classes sharing SVD neurons deepest ({top['deepest_layer'].iloc[0]}): {pairs}")
    _console().print(f"wrote {len(written) + 1} files in {out}/")
    return 0


# --------------------------------------------------------------------------- spectrum, compare


def _spectrum_options(p: argparse.ArgumentParser) -> None:
    from convsvd.spectral import VIEWS

    p.add_argument("--view", choices=VIEWS, default="unfold",
                   help="a conv layer's matrices: unfold (the paper's W̄, default), slices (WeightWatcher's k×k "
                        "slices) or operator (the circular convolution on an N×N input)")
    p.add_argument("--layers", metavar="GLOB", help="comma-separated glob patterns of layer names (default: all)")
    p.add_argument("--mp", action="store_true", help="fit the Marchenko–Pastur law: spikes, MP soft rank, MP-based labels")
    p.add_argument("--random-baseline", action="store_true",
                   help="shuffle each layer's weights and compare the ESDs (rand_distance, rand_lambda_max)")
    p.add_argument("--n", type=int, metavar="N",
                   help="input side of the operator view (default: a built-in model's input side, else 32)")
    p.add_argument("--dtype", choices=["float32", "float64"],
                   help="precision of the spectra (default: the weights', float32 Gram + float64 eigenvalues)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--fold-bn", action="store_true", help="fold a directly following BatchNorm into each layer")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight shuffles (default: 0)")


def _operator_side(model: str, n: int | None) -> int | None:
    """--n, else the input side of a built-in model (``name`` or ``name@epoch``)."""

    if n is None and zoo_base(model):
        return int(zoo_input_shape(model)[-1])  # type: ignore[index]
    return n


def _finite_or_none(values: dict) -> dict:  # type: ignore[type-arg]
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}


def _spectrum_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    _spectrum_options(p)
    p.add_argument("--out", metavar="DIR",
                   help="write spectrum.csv, spectrum.parquet, spectrum.json (run metadata and summary) and PNG figures")


@command("spectrum", "random-matrix analysis of every layer's spectrum: power-law α, α̂, MP fit, phenomenology",
         _spectrum_args)
def cmd_spectrum(args: argparse.Namespace) -> int:
    import re

    import pandas as pd

    from convsvd._meta import run_metadata, write_atomic
    from convsvd._progress import progress
    from convsvd.spectral import spectrum
    from convsvd.spectral.metrics import HEADLINE_MIN_EVALS, HEADLINE_MIN_TAIL

    out = _writable_dir(args.out) if args.out else None
    mw = resolve_model(args)
    t0 = time.perf_counter()
    res = spectrum(mw, view=args.view, layers=args.layers, mp=args.mp, random_baseline=args.random_baseline,
                   n=_operator_side(args.model, args.n), dtype=args.dtype, fold_bn=args.fold_bn, device=args.device,
                   seed=args.seed, progress=True)
    dt = time.perf_counter() - t0
    frame, summary = res.to_frame(), res.summary()
    hidden = {"view", "xmin", "sigma", "log_norm", "R_exp", "headline", "alpha_hat_all", "n_headline"} \
        | ({"num_spikes", "mp_softrank"} if not args.mp else set()) \
        | ({"rand_distance", "rand_lambda_max", "correlation_trap"} if not args.random_baseline else set())
    print_frame(frame[[c for c in frame.columns if c not in hidden]],  # every column is in the files
                title=f"{mw.source}: spectra of {len(res)} layers ({args.view} view) in {dt:.2f} s")
    shown = {k: v for k, v in summary.items() if k not in hidden and k != "rand_lambda_max"}
    print_frame(pd.DataFrame([shown]), title=f"summary: α̂ = {summary['alpha_hat']:.4g} "
                                              f"(mean α·log10 λmax over the {summary['n_headline']} layers with ≥ "
                                              f"{HEADLINE_MIN_EVALS} eigenvalues and ≥ {HEADLINE_MIN_TAIL} tail points)")
    if out is None:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd.viz import esd_figure, plot_alpha_depth

    figures = {"alpha-depth.png": lambda: plot_alpha_depth(res).figure}
    for layer in res.layers:
        if layer.evals.size:
            figures[f"esd-{re.sub(r'[^A-Za-z0-9._-]', '_', layer.name)}.png"] = (lambda l=layer: esd_figure(l))
    with progress(len(figures), "figures", True) as bar:
        for name, draw in figures.items():
            fig = draw()
            try:
                write_atomic(out / name, lambda p: fig.savefig(p, format="png", dpi=90))
            finally:
                plt.close(fig)
            bar.advance(1, name)
    write_atomic(out / "spectrum.csv", lambda p: frame.to_csv(p, index=False))
    write_atomic(out / "spectrum.parquet", lambda p: frame.to_parquet(p, index=False))
    meta = run_metadata(res.source, res.model_hash, res.options, summary=_finite_or_none(summary),
                        seconds=round(dt, 3), figures=list(figures))
    write_atomic(out / "spectrum.json", lambda p: Path(p).write_text(meta))
    _console().print(f"wrote spectrum.csv, spectrum.parquet, spectrum.json and {len(figures)} figures in {out}/")
    return 0


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="CKPT",
                   help="models or checkpoints: built-in names (digits-cnn; digits-cnn@3 = after epoch 3), "
                        ".pt/.safetensors/.onnx files, folders or 'package.module:factory'")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one label per model (default: as given)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling full-model checkpoints (runs code from the files: only for files you trust)")
    _spectrum_options(p)
    p.add_argument("--out", metavar="DIR", help="write compare.csv, compare.parquet and compare.json here")


@command("compare", "α̂ and the mean spectral metrics of several models or checkpoints, one row each", _compare_args)
def cmd_compare(args: argparse.Namespace) -> int:
    from convsvd._meta import run_metadata, write_atomic
    from convsvd.spectral import compare

    out = _writable_dir(args.out) if args.out else None
    if args.labels is not None and len(args.labels) != len(args.models):
        raise InputError(f"--labels: expected {len(args.models)} labels (one per model), got {len(args.labels)}")
    sources = [resolve_model(argparse.Namespace(model=m, weights=None, trust_pickle=args.trust_pickle))
               for m in args.models]
    sides = {_operator_side(m, args.n) for m in args.models}
    t0 = time.perf_counter()
    frame = compare(sources, labels=args.labels or args.models, view=args.view, layers=args.layers, mp=args.mp,
                    random_baseline=args.random_baseline, n=sides.pop() if len(sides) == 1 else args.n,
                    dtype=args.dtype, fold_bn=args.fold_bn, device=args.device, seed=args.seed, progress=True)
    hidden = {"source", "log_norm", "alpha_hat_all"} | ({"num_spikes", "mp_softrank"} if not args.mp else set()) \
        | ({"rand_distance"} if not args.random_baseline else set())
    print_frame(frame[[c for c in frame.columns if c not in hidden]],
                title=f"{len(frame)} models ({args.view} view) in {time.perf_counter() - t0:.2f} s; "
                      "alpha_hat = mean of α·log10 λmax over the headline layers (n_headline)")
    if out is not None:
        write_atomic(out / "compare.csv", lambda p: frame.to_csv(p, index=False))
        write_atomic(out / "compare.parquet", lambda p: frame.to_parquet(p, index=False))
        options = dict(models=args.models, labels=args.labels, view=args.view, layers=args.layers, mp=args.mp,
                       random_baseline=args.random_baseline, n=args.n, dtype=args.dtype, seed=args.seed)
        meta = run_metadata(", ".join(args.models), "", options, model_hashes=[s.content_hash() for s in sources])
        write_atomic(out / "compare.json", lambda p: Path(p).write_text(meta))
        _console().print(f"wrote compare.csv, compare.parquet and compare.json in {out}/")
    return 0


# --------------------------------------------------------------------------- entry


def build_parser() -> argparse.ArgumentParser:
    from convsvd import __version__

    parser = argparse.ArgumentParser(prog="convsvd", description="Explain trained CNNs through the SVD of their weights.")
    parser.add_argument("--version", action="version", version=f"convsvd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add_args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConvSVDError as e:
        print(f"convsvd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convsvd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
