"""``convsvd`` command line: each subcommand parses arguments and calls one public function.

User mistakes end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from convsvd import _validate as check
from convsvd._typing import Aggregation, Direction, DTypeName, Location, View
from convsvd.errors import ConvSVDError, InputError

if TYPE_CHECKING:
    from convsvd.target import Target

Handler = Callable[[argparse.Namespace], int]

#: ``--dtype`` is checked by the library's validator (one message for the CLI and the API), not by argparse.
_DTYPES = "{" + ",".join(check.choices(DTypeName)) + "}"


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit status 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    """Register a subcommand (the registry the parser is built from)."""

    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help, add_args, fn)
        return fn

    return deco


# --------------------------------------------------------------------------- shared helpers


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, width=None if sys.stdout.isatty() else 160)


def print_frame(frame, title: str = "", floatfmt: str = "{:.4g}") -> None:
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


def resolve_model(args: argparse.Namespace, **options: object) -> "Target":
    """MODEL and the shared options → :func:`convsvd.target.resolve`, the API's own resolution
    (built-in names and ``NAME@EPOCH`` included), so the CLI and the API share every default."""
    from convsvd.target import resolve

    return resolve(args.model, weights=getattr(args, "weights", None),
                   trust_pickle=getattr(args, "trust_pickle", False), **options)  # type: ignore[arg-type]


def _out_folder(path: str | None) -> Path | None:
    """``--out DIR`` checked before any work (nothing is created: :class:`OutputSet` publishes it whole)."""
    if path is None:
        return None
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {path}: exists and is not a folder")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {path}: cannot create the folder ({parent} is a file)")
    if not os.access(parent if not out.exists() else out, os.W_OK):
        raise InputError(f"--out {path}: folder is not writable")
    return out


def add_preprocess_args(p: argparse.ArgumentParser) -> None:
    """``--normalize``, ``--resize``, ``--crop``: how the data are prepared for the model."""
    p.add_argument("--normalize", metavar="SPEC",
                   help="input normalisation: imagenet (also resize 256, crop 224), mnist, none, or MEAN/STD per "
                        "channel, e.g. 0.1307/0.3081 or 0.485,0.456,0.406/0.229,0.224,0.225 (default: the model's "
                        "own metadata, else none)")
    p.add_argument("--resize", metavar="S", help="resize the short side of every image to S pixels (or to HxW)")
    p.add_argument("--crop", metavar="S", help="then centre-crop S×S (or HxW) pixels")


def resolve_preprocess(args: argparse.Namespace, mw: object):
    """The data transform of a command: the model's own, overridden by --normalize / --resize / --crop."""
    from convsvd.data.preprocess import resolve

    return resolve(args.normalize, args.resize, args.crop, model=mw)


def prepared_data(args: argparse.Namespace, mw: object, data: object):
    """``data`` as a source with the command's transform applied; the transform is printed."""
    from convsvd.data.preprocess import apply

    transform = resolve_preprocess(args, mw)
    if not transform.is_identity:
        origin = f" (from {transform.origin})" if transform.origin else ""
        _console(stderr=True).print(f"preprocess: {transform.describe()}{origin}")
    return apply(data, transform), transform


# --------------------------------------------------------------------------- describe


def _describe_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", help="also write layers.csv and layers.parquet here")


@command("describe", "list every layer that will be analysed, and what is skipped and why", _describe_args)
def cmd_describe(args: argparse.Namespace) -> int:
    out = _out_folder(args.out)
    target = resolve_model(args)
    frame = target.to_frame()
    mw = target.weights
    print_frame(frame, title=f"{mw.source}: {len(mw.layers)} layers analysed, {len(mw.skipped)} parameters skipped")
    if out is not None:
        from convsvd._atomic import OutputSet
        from convsvd._results import write_frame

        with OutputSet(out, "the layer table") as staging:
            write_frame(staging, "layers", frame)
    return 0


# --------------------------------------------------------------------------- svd


def _svd_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--layers", metavar="GLOB", help="comma-separated glob patterns of layer names (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--top-k", type=int, metavar="K", help="only the K leading singular triplets of each layer")
    g.add_argument("--values-only", action="store_true", help="singular values only (fast Gram route)")
    p.add_argument("--dtype", metavar=_DTYPES, help="precision (default: the weights' own)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--fold-bn", action="store_true", help="fold a directly following BatchNorm into each layer")
    p.add_argument("--cache", metavar="DIR", help="reuse results from this cache folder")
    p.add_argument("--out", metavar="DIR", help="write svd.safetensors, svd.parquet, svd.csv and svd.json here")
    p.add_argument("--figures", choices=["none", "summary", "all"], default="none",
                   help="with --out: summary or all also draws svd.png (singular values and energy of every layer; "
                        "default none)")


@command("svd", "singular value decomposition of every conv and linear layer", _svd_args)
def cmd_svd(args: argparse.Namespace) -> int:
    from convsvd.decompose import decompose
    from convsvd.io.spec import SkipCode

    out = _out_folder(args.out)
    target = resolve_model(args, layers=args.layers, dtype=args.dtype, device=args.device, fold_bn=args.fold_bn)
    check.optional_integer(args.top_k, "--top-k", minimum=1)  # 0 is a value, not "not given"
    mode = "topk" if args.top_k is not None else ("values" if args.values_only else "full")
    t0 = time.perf_counter()
    dec = decompose(target, mode=mode, k=args.top_k, cache_dir=args.cache, progress=True)
    dt = time.perf_counter() - t0
    top = args.top_k if args.top_k is not None else 10
    print_frame(dec.to_frame(top_k=top), title=f"{target.source}: SVD of {len(dec)} layers in {dt:.2f} s")
    for s in dec.skipped:
        if s.code in (SkipCode.NONFINITE, SkipCode.ZERO_SIZE):
            _console(stderr=True).print(f"[yellow]skipped {s.name}: {s.reason}[/]")
    for note in dec.notes:  # e.g. a damaged cache entry, recomputed
        print(f"convsvd svd: note: {note}", file=sys.stderr)
    if out is not None:
        from convsvd._atomic import OutputSet

        with OutputSet(out, "the SVD results") as staging:
            names = [p.name for p in dec.save(staging, top_k=top)]
            if args.figures != "none" and mode != "values":
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt

                from convsvd.viz import svd_figure

                fig = svd_figure(dec)
                try:
                    fig.savefig(staging / "svd.png", format="png", dpi=90)
                finally:
                    plt.close(fig)
                names.append("svd.png")
        _console().print(f"wrote {', '.join(str(out / n) for n in names)}")
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
    p.add_argument("--aggregate", choices=check.choices(Aggregation), default="mean",
                   help="over a conv's locations (default mean)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="inputs per forward pass (default 64)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: where the model is)")
    p.add_argument("--dtype", metavar=_DTYPES, help="precision of the SVD and the projection (default: the model's)")
    p.add_argument("--fold-bn", action="store_true", help="profile conv → BatchNorm pairs as one map")
    p.add_argument("--basis", choices=["svd", "channel", "random"], default="svd",
                   help="project on the SVD neurons (default), the raw output channels or a seeded random basis")
    add_preprocess_args(p)
    p.add_argument("--shard-size", type=int, default=1024, metavar="N",
                   help="inputs per shard, the unit of resume and of torchrun ranks (default 1024)")
    p.add_argument("--store-dtype", choices=("float32", "float16", "float64"),
                   help="precision of the stored signals (default: the projection's; float16 halves the store)")
    p.add_argument("--nonfinite", choices=("skip", "error"), default="skip",
                   help="inputs with NaN/inf values: leave them out and list them (default), or stop with an error")
    p.add_argument("--restart", action="store_true", help="discard a run already in --out instead of resuming it")
    p.add_argument("--out", metavar="DIR", default="profile-out",
                   help="run folder: manifest.json and shards/*.arrow (default: profile-out)")


@command("profile", "signals of a dataset on every SVD neuron, and each input's influential neurons", _profile_args)
def cmd_profile(args: argparse.Namespace) -> int:
    import os

    from convsvd.data import as_source
    from convsvd.signals import profile

    target = resolve_model(args, layers=args.layers, device=args.device, fold_bn=args.fold_bn, dtype=args.dtype)
    out = _out_folder(args.out)  # profile creates it (and resumes a run found there)
    assert out is not None  # --out has a default
    data, _ = prepared_data(args, target.weights, as_source(args.data))
    t0 = time.perf_counter()
    table = profile(target, data, aggregate=args.aggregate, threshold=args.threshold, top_k=args.top_k,
                    batch_size=args.batch_size, out=out, shard_size=args.shard_size, restart=args.restart,
                    progress=True, store_dtype=args.store_dtype, nonfinite=args.nonfinite, basis=args.basis)
    dt = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    m: dict[str, Any] = table.manifest  # JSON: its shape is documented in convsvd.signals.store
    summary = table.summary()[["layer", "kind", "groups", "neurons", "mean_influential"]]
    print_frame(summary.rename(columns={"mean_influential": "mean influential"}),
                title=f"{target.source} on {m['dataset']['name']}: {table.n_inputs} inputs, {len(table.layers)} layers "
                      f"profiled in {dt:.2f} s")
    con, err = _console(), _console(stderr=True)
    con.print(f"data: {m['dataset']['transform']}")
    for item in m["not_profiled"]:
        err.print(f"[yellow]not profiled {item['layer']}: {item['reason']}[/]")
    nonfinite = [item for item, reason in m["skipped_inputs"] if reason.startswith("non-finite")]
    if nonfinite:
        err.print(f"[yellow]skipped {len(nonfinite)} inputs with non-finite values (NaN or inf): ids "
                  f"{', '.join(nonfinite[:5])}{' ...' if len(nonfinite) > 5 else ''} (all listed in manifest.json)[/]")
    for item, reason in m["skipped_inputs"]:
        if not reason.startswith("non-finite"):
            err.print(f"[yellow]skipped {item}: {reason}[/]")
    for item in m.get("repaired_shards", []):
        err.print(f"[yellow]recomputed {item}[/]")
    con.print(f"wrote {out / 'manifest.json'} and {len(m['shards'])} shards in {out / 'shards'}")
    return 0


def _profile_graph_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("data", metavar="DATA", help="'digits' (or digits:train|test|all), an image folder or a .npz/.pt file")
    p.add_argument("--neuron-type", default="channel", metavar="TYPE", help="channel (default), element, spatial or svd")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, metavar="T", help="keep the smallest set of contributors reaching "
                                                                "this share of Σ|contribution| (default 0.1)")
    g.add_argument("--top-k", type=int, metavar="K", help="keep the K largest contributions instead")
    p.add_argument("--rule", default="share", metavar="RULE", help="share (default) or ddp (DeepDataProfiler's rule)")
    p.add_argument("--start", default="class", metavar="S",
                   help="class (default: backwards from the predicted class) or layers (DeepDataProfiler's profiles)")
    p.add_argument("--layers", metavar="GLOB", help="with --start layers: comma-separated glob patterns of the layers "
                                                    "to profile (default: all)")
    p.add_argument("--targets", default="predicted", metavar="T", help="predicted (default) or label")
    p.add_argument("--unknown", default="refuse", metavar="U",
                   help="an operation without a contribution rule: refuse (default) or pass (part of its input's layer)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="inputs per forward pass (default 64)")
    p.add_argument("--limit", type=int, metavar="N", help="profile only the first N inputs")
    p.add_argument("--device", help="cpu or cuda (default: where the model is)")
    p.add_argument("--out", metavar="DIR", help="run folder: manifest.json, chunks/, profile/ and CSV tables "
                                                "(resumed when run again)")
    p.add_argument("--stream", action="store_true",
                   help="with --out: write each chunk and let it go, then sum and compare the chunks one at a time "
                        "(element profiles of large models on many inputs)")


@command("profile-graph", "attribution profiles: neurons and synapses that carried each decision, per class",
         _profile_graph_args)
def cmd_profile_graph(args: argparse.Namespace) -> int:
    from convsvd.profiles import class_similarity, profile_graph, write_outputs

    out = _out_folder(args.out)
    if args.stream and out is None:
        raise InputError("--stream: expected a run folder (--out DIR) to write the chunks to")
    target = resolve_model(args, device=args.device)
    t0 = time.perf_counter()
    ps = profile_graph(target, args.data, neuron_type=args.neuron_type, threshold=args.threshold,
                       top_k=args.top_k, rule=args.rule, start=args.start, targets=args.targets,
                       unknown=args.unknown, layers=args.layers, batch_size=args.batch_size, limit=args.limit,
                       device=args.device,
                       input_shape=target.stated_input_shape(), out=out, progress=True, stream=args.stream)
    total = ps.profile()
    print_frame(total.summary(), title=f"{len(ps)} inputs, {ps.neuron_type} neurons, {time.perf_counter() - t0:.2f} s")
    sim = class_similarity(ps) if (ps.labels >= 0).any() else None
    if sim is not None:
        print_frame(sim.to_frame(), title="nearest class profile (leave-one-out), per layer")
    if out is not None:
        try:
            names = write_outputs(ps, out, total=total, similarity=sim)
        except OSError as e:
            from convsvd._atomic import environment_error, os_error

            raise environment_error(os_error(e) or e, "the profile and its tables", out) from None
        _console().print(f"wrote {', '.join(['manifest.json', 'chunks/'] + names)} in {out}/")
    return 0


# --------------------------------------------------------------------------- report, demo


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="skip the slowest parts: fewer SVD neurons, feature-visualisation steps and exemplars, "
                        "no shuffled-weights baseline of the spectra")


def _report_args(p: argparse.ArgumentParser) -> None:
    from convsvd.report.defaults import DEFAULTS

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
    add_preprocess_args(p)
    p.add_argument("--init", metavar="MODEL",
                   help="the same model at its random initialisation (e.g. an epoch-0 checkpoint), for the spectra "
                        "(default: a built-in model's own initialisation; else none)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=_threshold, metavar="T",
                   help="influential set: smallest set reaching this share of a layer's Σ|signal| (default 0.3; "
                        "'reference': DeepDataProfiler's 0.1)")
    g.add_argument("--top-k", type=int, metavar="K", help="influential set: the K largest |signal| instead")
    p.add_argument("--min-share", type=float, default=0.5, metavar="P",
                   help="class hyperedges: neurons influential for at least this share of a class's inputs "
                        "(default 0.5)")
    p.add_argument("--title", help="title of the page (default: the model)")


def _print_report(result) -> None:
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
    from convsvd.report import report
    from convsvd.target import resolve

    target = resolve_model(args, layers=args.layers, device=args.device, fold_bn=args.fold_bn,
                           input_size=check.optional_integer(args.input_size, "--input-size", minimum=1))
    init = None if args.init is None else resolve(args.init, trust_pickle=args.trust_pickle)
    data = prepared_data(args, target.weights, args.data)[0] if args.data is not None else None
    result = report(target, data, out=args.out, quick=args.quick, neurons=args.neurons, steps=args.steps,
                    k=args.k, batch_size=args.batch_size, init=init, title=args.title, progress=True,
                    threshold=args.threshold, top_k=args.top_k, min_share=args.min_share)
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
                   help="side of the model's input (default: what the model states — a built-in model's input, an "
                        "ONNX graph's, a shape trace — else --size, else 224)")
    p.add_argument("--directions", choices=check.choices(Direction), default="both",
                   help="+u_i, -u_i or both (default)")
    p.add_argument("--location", choices=check.choices(Location), default="mean",
                   help="signal averaged over locations (default) or at the centre location")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--data", metavar="DIR", help="dataset for exemplars: an image folder, a .npz/.pt file, or digits "
                                                 "(also gives the input size when the model does not)")
    add_preprocess_args(p)
    p.add_argument("--k", type=int, default=8, help="exemplars per side (default: 8)")
    p.add_argument("--rank", type=int, help="rank of the filter rebuild (default: smallest keeping 90%% of ‖W̄‖²_F)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: where the model is)")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from convsvd._atomic import OutputSet
    from convsvd._meta import run_metadata
    from convsvd._results import safe_name, write_frame
    from convsvd.features import exemplars, featureviz, singular_filters
    from convsvd.signals import profile
    from convsvd.viz import features_figure

    out = _out_folder(args.out)
    assert out is not None  # --out has a default
    target = resolve_model(args, device=args.device,
                           input_size=check.optional_integer(args.input_size, "--input-size", minimum=1))
    layers = [name.strip() for name in args.layer.split(",") if name.strip()]
    for name in layers:
        target.weights[name]  # one line naming the layers when unknown
    neurons = _neuron_list(args.neurons)
    data, transform = (prepared_data(args, target.weights, args.data) if args.data
                       else (None, resolve_preprocess(args, target.weights)))
    if data is not None:  # the data's own size (after the transform), when no earlier source states one
        shape = data.describe().get("input_shape")
        if isinstance(shape, list) and len(shape) == 3:
            target = target.with_input_shape(shape, "data")
    gradients = target.weights.format != "onnx" or data is None  # an ONNX model with data: exemplars only
    if not gradients:
        _console(stderr=True).print("[yellow]feature visualisation skipped: an ONNX model runs without gradients "
                                    "(load the torch model for it); exemplars and singular filters only[/]")
    preprocess = transform if transform.mean is not None else None
    fvs = {} if not gradients else {
        name: featureviz(target, name, neurons, steps=args.steps, size=args.size, directions=args.directions,
                         location=args.location, seed=args.seed, preprocess=preprocess, progress=True)
        for name in layers}
    exs = {}
    if data is not None:
        table = profile(target, data, layers=layers, progress=True)
        for name in layers:
            fv = fvs.get(name)
            exs[name] = exemplars(table, name, k=args.k, neurons=fv.flat_neurons() if fv else neurons, data=data)
    sfs = {name: singular_filters(target, name, rank=args.rank) for name in layers
           if target.weights[name].kind == "conv2d"}
    frame = pd.concat([fv.to_frame() for fv in fvs.values()], ignore_index=True) if fvs else None
    if frame is not None:
        print_frame(frame.drop(columns=["seed", "location"]), title=f"{target.source}: feature visualisation")
    first = next(iter(fvs.values()), None)
    side = target.input_side()
    options = dict(layers=layers, neurons=neurons, steps=args.steps,
                   size=args.size or (list(first.images.shape[-2:]) if first is not None else None),
                   input_size=list(first.input_size) if first is not None else (list(side) if side else None),
                   directions=args.directions, location=args.location, seed=args.seed, data=args.data, k=args.k,
                   rank=args.rank, preprocess=transform.to_dict())
    figures = [f"features-{safe_name(name)}.png" for name in layers]
    with OutputSet(out, "the feature figures") as staging:
        for name, png in zip(layers, figures):
            fig = features_figure(fvs.get(name), exs.get(name), sfs.get(name))
            try:
                fig.savefig(staging / png, format="png", dpi=100)
            finally:
                plt.close(fig)
        if frame is not None:
            write_frame(staging, "features", frame, ("csv",))
        if exs:
            write_frame(staging, "exemplars", pd.concat([e.to_frame() for e in exs.values()], ignore_index=True),
                        ("csv",))
        for result in [*fvs.values(), *exs.values(), *sfs.values()]:
            result.save(staging)
        meta = run_metadata(target.source, target.weights.content_hash(), options, figures=figures)
        (staging / "features.json").write_text(meta)
    _console().print(f"wrote {', '.join(str(out / p) for p in figures)}")
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
    from convsvd._atomic import OutputSet
    from convsvd._meta import run_metadata
    from convsvd._results import safe_name, write_frame
    from convsvd.hypergraph import class_hypergraph, class_separation, incidence_frame, input_hypergraph, write_hif
    from convsvd.signals import SignalTable
    from convsvd.viz import save_figures

    table = SignalTable.open(args.signals)
    layers = _names(args.layer, "--layer") or table.layers
    for name in layers:
        if name not in table.layers:
            raise InputError(f"--layer {name!r}: not profiled in {args.signals} (layers: {', '.join(table.layers)})")
    classes = _names(args.classes, "--classes")
    out = _out_folder(args.out)
    assert out is not None  # --out has a default
    t0 = time.perf_counter()
    result = class_separation(table, min_share=args.min_share, classes=classes, folds=args.folds, seed=args.seed,
                              max_inputs=args.max_inputs)
    dt = time.perf_counter() - t0
    frame, deepest = result.to_frame(), result.deepest_shared()
    with OutputSet(out, "the hypergraph results") as staging:
        written = result.save(staging, layers) + save_figures(result, staging, layers=layers)
        meta = dict(signals=str(args.signals), layer=None, min_share=args.min_share)
        for name in layers:
            safe = safe_name(name)
            H_in = input_hypergraph(table, name, classes=classes)
            written += write_frame(staging, f"input-incidence-{safe}", incidence_frame(H_in), ("csv",))
            meta["layer"] = name
            for H, stem in ((class_hypergraph(result[name].incidence), "class"), (H_in, "input")):
                written.append(write_hif(H, staging / f"{stem}-hypergraph-{safe}.hif.json", metadata=meta))
        options = dict(signals=str(args.signals), layers=layers, classes=classes, min_share=args.min_share,
                       folds=args.folds, seed=args.seed, max_inputs=args.max_inputs)
        m: dict[str, Any] = table.manifest
        text = run_metadata(str(m.get("source")), str(m.get("model_hash")), options, files=[p.name for p in written],
                            dataset=m.get("dataset", {}).get("name"), time_s=round(dt, 3))
        (staging / "hypergraph.json").write_text(text)
    shown = frame.drop(columns=["inputs", "classes", "min_share", "modularity_inputs", "ncc_folds", "message"])
    shown = shown.drop(columns=["collapsed", "influential_mean", "influential_median", "ncc_chance", "ncc_shuffled"],
                       errors="ignore")  # in separation.csv; the console keeps the columns it had
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
    p.add_argument("--view", choices=check.choices(View), default="unfold",
                   help="a conv layer's matrices: unfold (the paper's W̄, default), slices (WeightWatcher's k×k "
                        "slices) or operator (the circular convolution on an N×N input)")
    p.add_argument("--layers", metavar="GLOB", help="comma-separated glob patterns of layer names (default: all)")
    p.add_argument("--mp", action="store_true", help="fit the Marchenko–Pastur law: spikes, MP soft rank, MP-based labels")
    p.add_argument("--random-baseline", action="store_true",
                   help="shuffle each layer's weights and compare the ESDs (rand_distance, rand_lambda_max)")
    p.add_argument("--n", type=int, metavar="N",
                   help="grid side of the operator view for every conv layer (default: the size each layer sees, "
                        "traced from --input-size / a built-in model's input / an ONNX file's shapes, else 32)")
    p.add_argument("--input-size", type=int, metavar="S",
                   help="side of the model's input, to trace the size each conv layer sees (operator view)")
    p.add_argument("--view-budget", type=float, metavar="SECONDS",
                   help="seconds one layer's operator view may take (estimated first); a layer over it runs on a "
                        "smaller grid, stated in n_reason (default: no bound)")
    p.add_argument("--dtype", metavar=_DTYPES,
                   help="precision of the spectra (default: the weights', float32 Gram + float64 eigenvalues)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--fold-bn", action="store_true", help="fold a directly following BatchNorm into each layer")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight shuffles (default: 0)")
    p.add_argument("--convention", choices=["convsvd", "ddp", "ww"], default="convsvd",
                   help="eigenvalue scale and log of α̂: convsvd (σ²/N, log10; default), ddp (σ²/rows, ln, "
                        "DeepDataProfiler) or ww (σ², log10, WeightWatcher)")




def _view_budget(args: argparse.Namespace) -> float | None:
    """``--view-budget``: seconds per layer of the operator view, or None."""
    return None if args.view_budget is None else check.number(args.view_budget, "--view-budget", low=0, low_open=True)


def _spectrum_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    _spectrum_options(p)
    p.add_argument("--out", metavar="DIR",
                   help="write spectrum.csv, spectrum.parquet, spectrum.json (run metadata and summary) and PNG figures")
    p.add_argument("--figures", choices=["none", "summary", "all"], default="all",
                   help="with --out: none, summary (alpha-depth.png only) or all (also one ESD figure per layer; "
                        "default)")


@command("spectrum", "random-matrix analysis of every layer's spectrum: power-law α, α̂, MP fit, phenomenology",
         _spectrum_args)
def cmd_spectrum(args: argparse.Namespace) -> int:
    import pandas as pd

    from convsvd.spectral import spectrum
    from convsvd.spectral.metrics import HEADLINE_MIN_EVALS, HEADLINE_MIN_TAIL

    out = _out_folder(args.out)
    target = resolve_model(args, layers=args.layers, dtype=args.dtype, device=args.device, fold_bn=args.fold_bn,
                           input_size=check.optional_integer(args.input_size, "--input-size", minimum=1))
    t0 = time.perf_counter()
    res = spectrum(target, view=args.view, mp=args.mp, random_baseline=args.random_baseline, n=args.n,
                   budget=_view_budget(args), seed=args.seed, progress=True, convention=args.convention)
    dt = time.perf_counter() - t0
    frame, summary = res.to_frame(), res.summary().to_dict("records")[0]
    hidden = {"view", "convention", "xmin", "sigma", "log_norm", "R_exp", "headline", "alpha_hat_all", "n_headline"} \
        | ({"num_spikes", "mp_softrank"} if not args.mp else set()) \
        | ({"rand_distance", "rand_lambda_max", "correlation_trap"} if not args.random_baseline else set()) \
        | ({"n", "input_size", "n_reason"} if args.view != "operator" else set())
    print_frame(frame[[c for c in frame.columns if c not in hidden]],  # every column is in the files
                title=f"{target.source}: spectra of {len(res)} layers ({args.view} view) in {dt:.2f} s")
    shown = {k: v for k, v in summary.items() if k not in hidden and k != "rand_lambda_max"}
    log = "ln" if args.convention == "ddp" else "log10"
    print_frame(pd.DataFrame([shown]), title=f"summary: α̂ = {summary['alpha_hat']:.4g} "
                                              f"(mean α·{log} λmax over the {summary['n_headline']} layers with ≥ "
                                              f"{HEADLINE_MIN_EVALS} eigenvalues and ≥ {HEADLINE_MIN_TAIL} tail points, "
                                              f"{args.convention} convention)")
    if out is None:
        return 0
    from convsvd._atomic import OutputSet
    from convsvd.viz import figure_names, save_figures

    with OutputSet(out, "the spectra") as staging:
        res.save(staging, seconds=round(dt, 3), figures=figure_names(res, which=args.figures))
        figures = save_figures(res, staging, progress=True, which=args.figures)
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
    from convsvd._atomic import OutputSet
    from convsvd._meta import run_metadata
    from convsvd._results import write_frame
    from convsvd.spectral import compare

    out = _out_folder(args.out)
    if args.labels is not None and len(args.labels) != len(args.models):
        raise InputError(f"--labels: expected {len(args.models)} labels (one per model), got {len(args.labels)}")
    targets = [resolve_model(argparse.Namespace(model=m, weights=None, trust_pickle=args.trust_pickle),
                             layers=args.layers, dtype=args.dtype, device=args.device, fold_bn=args.fold_bn,
                             input_size=check.optional_integer(args.input_size, "--input-size", minimum=1))
               for m in args.models]
    t0 = time.perf_counter()
    frame = compare(targets, labels=args.labels or args.models, view=args.view, mp=args.mp,
                    random_baseline=args.random_baseline, n=args.n, budget=_view_budget(args),
                    seed=args.seed, progress=True, convention=args.convention)
    hidden = {"source", "log_norm", "alpha_hat_all"} | ({"num_spikes", "mp_softrank"} if not args.mp else set()) \
        | ({"rand_distance"} if not args.random_baseline else set())
    print_frame(frame[[c for c in frame.columns if c not in hidden]],
                title=f"{len(frame)} models ({args.view} view) in {time.perf_counter() - t0:.2f} s; "
                      "alpha_hat = mean of α·log10 λmax over the headline layers (n_headline)")
    if out is not None:
        options = dict(models=args.models, labels=args.labels, view=args.view, layers=args.layers, mp=args.mp,
                       random_baseline=args.random_baseline, n=args.n, dtype=args.dtype, seed=args.seed,
                       convention=args.convention)
        meta = run_metadata(", ".join(args.models), "", options,
                            model_hashes=[t.weights.content_hash() for t in targets])
        with OutputSet(out, "the comparison") as staging:
            write_frame(staging, "compare", frame)
            (staging / "compare.json").write_text(meta)
        _console().print(f"wrote compare.csv, compare.parquet and compare.json in {out}/")
    return 0


# --------------------------------------------------------------------------- ablate


def _int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} {text!r}: expected comma-separated whole numbers, e.g. 0,1,2,4,8") from None
    if not values or any(v < 0 for v in values):
        raise InputError(f"{what} {text!r}: expected comma-separated whole numbers ≥ 0")
    return values


def _ablate_args(p: argparse.ArgumentParser) -> None:
    from convsvd._registry import ABLATION_BASES as BASES

    add_model_args(p)
    p.add_argument("data", metavar="DATA", help="labelled data: 'digits:test', an image folder, a .npz/.pt file")
    p.add_argument("--layer", required=True, metavar="L", help="layer name(s) to ablate, comma-separated")
    p.add_argument("--k", metavar="K,K,...", help="numbers of directions (default 0,1,2,4,8,… up to the rank)")
    p.add_argument("--bases", metavar="B,B,...", default=",".join(BASES),
                   help=f"among {', '.join(BASES)} (default: all)")
    p.add_argument("--seeds", type=int, default=3, help="random bases per k (default 3)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="inputs read per step (default 256)")
    p.add_argument("--device", help="cpu or cuda (default: where the model is)")
    p.add_argument("--out", metavar="DIR", help="write ablation.parquet/.csv/-summary.csv/.json and ablation-LAYER.png")


@command("ablate", "remove the top-k SVD directions, channels or random directions of a layer: accuracy vs k",
         _ablate_args)
def cmd_ablate(args: argparse.Namespace) -> int:
    import re

    from convsvd.ablation import BASES, ablate

    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    unknown = [b for b in bases if b not in BASES]
    if unknown or not bases:
        raise InputError(f"--bases {args.bases!r}: expected comma-separated names among {', '.join(BASES)}")
    ks = _int_list(args.k, "--k")
    if args.seeds < 1:
        raise InputError(f"--seeds {args.seeds}: expected a positive number of random bases")
    out = _out_folder(args.out)
    target = resolve_model(args, device=args.device)
    t0 = time.perf_counter()
    res = ablate(target, args.data, layers=args.layer, ks=ks, bases=bases, seeds=args.seeds,
                 batch_size=args.batch_size, device=args.device, progress=True)
    summary = res.summary()
    for layer in res.layers:
        part = summary[summary.layer == layer.layer].pivot(index="k", columns="basis", values="accuracy")
        part = part[[b for b in bases if b in part.columns]].reset_index()
        print_frame(part, title=f"{target.source} {layer.layer}: accuracy with k directions removed "
                                f"(unmodified {layer.accuracy:.4f}; {time.perf_counter() - t0:.1f} s)")
    if out is None:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd._atomic import OutputSet
    from convsvd.viz import plot_ablation
    from convsvd.viz._common import figure_of

    with OutputSet(out, "the ablation results") as staging:
        res.save(staging)
        for layer in res.layers:
            fig = figure_of(plot_ablation(layer))
            try:
                name = f"ablation-{re.sub(r'[^A-Za-z0-9._-]', '_', layer.layer)}.png"
                fig.savefig(staging / name, format="png", dpi=90)
            finally:
                plt.close(fig)
    _console().print(f"wrote ablation.parquet, ablation.csv, ablation-summary.csv, ablation.json and "
                     f"{len(res.layers)} figure(s) in {out}/")
    return 0


# --------------------------------------------------------------------------- entry


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the subcommand it names gets its arguments (some option lists
    import the library, so ``convsvd --help`` stays fast and does not import torch)."""
    from convsvd import __version__

    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), "")
    parser = _Parser(prog="convsvd", description="Explain trained CNNs through the SVD of their weights.")
    parser.add_argument("--version", action="version", version=f"convsvd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, (help_, add_args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if chosen is None or name == chosen:
            add_args(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Every :class:`ConvSVDError` (bad input, bad option) ends here, and only here,
    as one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConvSVDError as e:
        print(f"convsvd {args.command}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convsvd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
