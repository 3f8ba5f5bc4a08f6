"""``report`` and ``demo``: run every part of convsvd on one model (and dataset) and write one HTML report.

The computing steps are those of :mod:`convsvd.report.analysis`; then the
sections are drawn (:mod:`convsvd.report.sections`), the page is rendered
(:mod:`convsvd.report.html`) and everything is written at once
(:mod:`convsvd.report.files`). One progress bar follows the steps, its status
text following the step's own progress; every step is timed.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import pandas as pd

from convsvd._meta import run_metadata, versions
from convsvd._progress import progress as _progress
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.report import files
from convsvd.report import sections as S
from convsvd.report.analysis import STEPS, Analysis, Options
from convsvd.report.content import Note, Section
from convsvd.report.html import Page, render
from convsvd.target import TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack
from convsvd.report.profiles_section import profiles_section_for

__all__ = ["ReportResult", "demo", "report"]

#: Every step of a report, in order (the progress bar's total and the timings' keys).
STEP_NAMES: tuple[str, ...] = tuple(name for name, _ in STEPS) + ("figures", "write")


@dataclass(frozen=True, eq=False)
class ReportResult:
    """A written report.

    Attributes
    ----------
    path : Path
        The HTML file.
    data_dir : Path
        The folder beside it with the numbers behind every figure and table.
    sections : tuple of Section
        What the page shows, in order (figures as PNG bytes, tables as DataFrames).
    timings : dict of str to float
        Seconds per step.
    options : Options
        The options the report was made with, defaults filled in.
    files : tuple of Path
        Every file written in ``data_dir`` (the signal table's shards aside).
    source, model_hash : str
    """

    path: Path
    data_dir: Path
    sections: tuple[Section, ...] = field(repr=False)
    timings: dict[str, float] = field(repr=False)
    options: Options = field(repr=False)
    files: tuple[Path, ...] = field(repr=False)
    source: str = ""
    model_hash: str = ""

    def section(self, sid: str) -> Section:
        """The section with this id (``"model"``, ``"spectra"``, ...)."""
        for s in self.sections:
            if s.id == sid:
                return s
        raise InputError(f"section {sid!r}: not in this report (sections: {', '.join(s.id for s in self.sections)})")

    def save(self, folder: PathLike) -> list[Path]:
        """The report is its own file set: :func:`report` writes the HTML file and ``data_dir`` and
        publishes them together; this writes only ``sections.csv`` (:meth:`to_frame`) into ``folder``."""
        from convsvd._results import folder as existing, write_frame

        return write_frame(existing(folder), "sections", self.to_frame(), ("csv",))

    def _repr_html_(self) -> str:
        from convsvd._results import html_table

        return html_table(f"report {self.path} ({sum(self.timings.values()):.1f} s)", self.to_frame())

    def to_frame(self) -> pd.DataFrame:
        """One row per section: ``id, title, status, figures, pictures, tables, notes`` (pictures: the
        feature visualisations shown at their own size beside the exemplars)."""
        return pd.DataFrame([dict(id=s.id, title=s.title, status=s.status, figures=len(s.figures),
                                  pictures=len(s.pictures), tables=len(s.tables), notes=len(s.notes))
                             for s in self.sections],
                            columns=["id", "title", "status", "figures", "pictures", "tables", "notes"])


class _Clock:
    """Times each step and moves one progress bar; the calls inside a step report into the bar's status text."""

    def __init__(self, bar: object, enabled: object) -> None:
        self.bar, self.enabled = bar, enabled
        self.timings: dict[str, float] = {}
        self.current = ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.current = name
        self.bar.advance(0, name)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - t0
        self.bar.advance(1, f"{name} done")  # type: ignore[attr-defined]

    def inner(self) -> "bool | Callable[[int, int, str], None]":
        """What to pass as ``progress=`` to an API call inside a step."""
        if self.enabled is False:
            return False

        def update(done: int, total: int, what: str) -> None:
            self.bar.advance(0, f"{self.current}: {what} ({done}/{total})")  # type: ignore[attr-defined]

        return update


def report(
    model: object,
    data: object | None = None,
    *,
    out: PathLike,
    quick: bool = False,
    neurons: int | None = None,
    steps: int | None = None,
    k: int | None = None,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 128,
    init: object | None = None,
    seed: int = 0,
    title: str | None = None,
    progress: "bool | None | Callable[[int, int, str], None]" = None,
    threshold: float | str | None = None,
    top_k: int | None = None,
    min_share: float = 0.5,
    **options: Unpack[TargetOptions],
) -> ReportResult:
    """Analyse a model (and a dataset) with every part of convsvd and write one self-contained HTML report.

    Sections: the model (every analysed layer, what was skipped and why, singular values); spectra;
    first-layer singular filters; the top SVD neurons of each layer (σ, share of energy, feature
    visualisation, dataset exemplars); class separation across depth; methods; run metadata. Every
    figure is embedded (base64 PNG), so the page reads offline; the numbers behind every figure and
    table are written to ``<stem>-data/`` beside it (Parquet, CSV, JSON; the signal table in ``signals/``).

    Parameters
    ----------
    model : Target, nn.Module, ModelWeights, path, built-in name or ``"pkg.mod:factory"``
        Anything :func:`convsvd.target.resolve` accepts. A weights-only file gives the weight sections only (the data sections run the model).
    data : dataset, optional
        Anything :func:`convsvd.data.as_source` takes (``"digits:test"``, an image folder with one
        subfolder per class, a ``.npz``/``.pt`` file, tensors, a DataLoader). Without it the report
        holds the weight sections only, and says so.
    out : path
        The HTML file, or a folder (existing, or a path without suffix) for ``report.html``.
    quick : bool
        Skip the slowest parts: fewer SVD neurons, feature-visualisation steps and exemplars
        (:data:`~convsvd.report.QUICK` instead of :data:`~convsvd.report.DEFAULTS`), and no
        shuffled-weights baseline of the spectra.
    neurons, steps, k : int, optional
        Top SVD neurons shown per layer, feature-visualisation steps, exemplars per side.
    input_shape : sequence of int, optional
        ``(C, H, W)`` the model takes (default: what the target states — a Target's ``input_size``, a built-in
        model's, an ONNX graph's — else the data's first input's; else images are optimised at 224×224).
    batch_size : int
        Inputs per forward pass when profiling.
    init : nn.Module, ModelWeights or path, optional
        The same model at its random initialisation (e.g. an epoch-0 checkpoint; weights-only files do):
        its spectra are shown beside the trained ones. Default: a built-in model's own initialisation;
        otherwise the trained layers are compared with their own weights shuffled.
    seed : int
        Seed of the feature visualisation.
    title : str, optional
        Page title (default: the model's source).
    progress : bool, None or callable
        One progress bar over the steps (None: when stderr is a terminal) or ``fn(done, total, what)``.
    threshold, top_k : optional
        The influence rule of the signals (:func:`convsvd.signals.profile`; default threshold 0.3,
        ``"reference"`` for DeepDataProfiler's 0.1).
    min_share : float
        Class hyperedges: a neuron joins a class's hyperedge when it is influential for at least
        this share of the class's inputs (:func:`convsvd.hypergraph.class_separation`).
    **options
        Checked by :func:`convsvd.target.resolve` (or carried by a Target): ``layers`` (glob patterns
        of the layers to analyse; default all), ``device`` (``"cpu"`` or ``"cuda"`` for the SVD,
        profiling and feature visualisation), ``fold_bn`` (fold each BatchNorm that directly follows
        a layer into it, everywhere; the model is not changed), ``input_size``.

    Returns
    -------
    ReportResult

    Raises
    ------
    InputError
        One line naming the input: a model that cannot be read, data that do not fit the model,
        an ``out`` that cannot be written. Nothing is written then, and an earlier report stays as it was.

    >>> from convsvd import zoo
    >>> r = report(zoo.load("digits-cnn"), "digits:test", out="report.html", quick=True)  # doctest: +SKIP
    >>> r.to_frame()[["id", "status"]]                                                   # doctest: +SKIP
    """
    paths = files.plan_paths(out)
    target = resolve(model, **options)
    if input_shape is None:
        input_shape = target.stated_input_shape()  # the user's input_size, a built-in model's, an ONNX graph's
    if init is None and target.zoo is not None:  # a built-in model's own initialisation
        from convsvd import zoo
        from convsvd.io import from_module

        init = from_module(zoo.load(target.zoo, pretrained=False), source=f"{target.zoo} (initialisation)")
    model = target.weights
    settings = Options.resolve(quick=quick, neurons=neurons, steps=steps, k=k, layers=target.layers,
                               input_shape=input_shape, batch_size=batch_size,
                               device=None if target.device is None else str(target.device), fold_bn=target.fold_bn,
                               seed=seed, data=_describe(data), init=_describe(init), threshold=threshold,
                               top_k=top_k, min_share=min_share)
    with files.Publication(paths) as pub:  # lock, leftovers of killed runs removed, staging folder
        with _progress(len(STEP_NAMES), "report", progress, threshold=1) as bar:
            clock = _Clock(bar, progress)
            analysis = Analysis(model, data, settings, pub.staging / "signals", init=init)
            for name, run in STEPS:
                with clock.step(name):
                    run(analysis, clock.inner())
            return _write(analysis, clock, paths, pub, title)


def _describe(source: object | None) -> str | None:
    """A model or dataset argument as text for the run metadata."""
    if source is None or isinstance(source, (str, os.PathLike)):
        return None if source is None else os.fspath(source)
    return str(getattr(source, "source", None) or getattr(source, "name", None) or type(source).__name__)


def _sections(a: Analysis) -> list[Section]:
    """Every section but the run metadata, drawn from the analysis."""
    return [
        S.model_section(a.mw, a.layer_table, a.dec, accuracy=a.accuracy),
        S.spectra_section(a.spectrum, a.spectrum_init, a.views, list(a.top), a.baselines),  # type: ignore[arg-type]
        S.filters_section(a.filters, a.filters_reason),
        S.neurons_section(a.dec, {n: a.why.get(n) or a.top[n] for n in a.top}, a.table, a.featureviz, a.exemplars,
                          a.neuron_notes, a.separation),
        S.missing_section("separation", a.separation_reason) if a.separation is None
        else S.separation_section(a.separation, a.separation_baselines, a.baselines_note),
        profiles_section_for(a),  # attribution profiles (convsvd.report.profiles_section)
        S.methods_section(),
    ]


_NO_DATA = ("No dataset was given, so this report holds only what the weights tell: the model, spectra, singular "
            "filters, SVD neurons and their feature visualisations. Give a dataset (DATA: 'digits', an image folder "
            "with one subfolder per class, a .npz/.pt file) to add dataset exemplars and class separation.")


def _write(a: Analysis, clock: _Clock, paths: files.ReportPaths, pub: files.Publication,
           title: str | None) -> ReportResult:
    staging = pub.staging
    mw, table, layer_table = a.mw, a.table, a.layer_table
    assert layer_table is not None  # set with the weights by the load step
    with clock.step("figures"):
        built = _sections(a)
    data_name = "no data" if a.source is None else f"{a.source.name} ({table.n_inputs if table else 0} inputs)"
    params = int(layer_table.loc[layer_table["status"] == "analysed", "params"].sum())
    model_hash = mw.content_hash()
    facts = [("model", f"{mw.source} ({mw.format})"), ("layers", str(len(mw.layers))), ("parameters", f"{params:,}"),
             ("data", data_name)]
    if a.accuracy is not None:
        facts.append(("model accuracy", a.accuracy.describe()))
    if a.spectrum is not None:
        facts.append(("α̂ (spectra)", f"{a.spectrum.summary()['alpha_hat'].iloc[0]:.3g}"))
    if a.separation is not None:
        last = a.separation.layers[-1]
        facts.append((f"nearest-centroid separability of the classes at {last.layer} (not the model's accuracy)",
                      f"{100 * last.ncc_accuracy:.1f} %"))
    facts.append(("model hash", model_hash[:12]))
    run = [("model", mw.source), ("format", mw.format), ("model hash (XXH3-128)", model_hash), ("data", data_name)]
    if table is not None:
        ds: dict = table.manifest["dataset"]
        run += [("data transform", str(ds.get("transform", "–"))),
                ("model accuracy", a.accuracy.describe() if a.accuracy is not None else "–"), ("data fingerprint", str(ds.get("fingerprint", "–"))),
                ("signal table", f"{paths.data_dir.name}/signals/ (convsvd.signals.SignalTable.open)")]
    built.append(S.metadata_section(run, a.options.to_dict(), dict(clock.timings), versions()))
    with clock.step("write"):
        written = files.write_data([t for s in built for t in s.tables] + [d for s in built for d in s.data], staging)
        if table is not None:
            written["signals"] = ["signals/manifest.json"]
        created = time.strftime("%Y-%m-%d %H:%M")
        page = Page(
            title=title or f"convsvd report: {mw.source}",
            subtitle=f"{len(mw.layers)} layers · {data_name} · {'quick' if a.options.quick else 'full'} report · "
                     f"{created}",
            facts=facts, banners=[Note(_NO_DATA, "warning")] if a.source is None else [],
            data_dir=pub.version.name, files=written,  # links go to the versioned folder: never a missing one
            footer=f"Made by convsvd {versions()['convsvd']} · the numbers behind every figure are in "
                   f"{paths.data_dir.name}/ · {created}",
        )
        html_text = render(built, page)
        meta = run_metadata(mw.source, model_hash, a.options.to_dict(), timings=dict(clock.timings),
                            sections=[dict(id=s.id, title=s.title, status=s.status) for s in built],
                            files=written, report=paths.html.name)
        files.write_marker(staging, meta)
        pub.publish(html_text)
    data_dir = pub.data_dir
    written_files = tuple(data_dir / n for names in written.values() for n in names)
    return ReportResult(paths.html, data_dir, tuple(built), dict(clock.timings), a.options,
                        written_files + (data_dir / files.MARKER,), mw.source, model_hash)


def demo(out: PathLike = "demo-out", *, quick: bool = False,
         progress: "bool | None | Callable[[int, int, str], None]" = None) -> ReportResult:
    """The report of the built-in digits CNN on the held-out digits: ``out/report.html`` and ``out/report-data/``.

    >>> r = demo("demo-out", quick=True)  # doctest: +SKIP
    """
    from convsvd import zoo
    from convsvd.io import from_module

    model = from_module(zoo.load("digits-cnn"), source="digits-cnn")
    init = from_module(zoo.load("digits-cnn", pretrained=False), source="digits-cnn (initialisation)")
    return report(model, "digits:test", out=out, quick=quick, input_shape=zoo.model_info("digits-cnn").input_shape,
                  init=init, title="convsvd demo: digits-cnn on the held-out digits", progress=progress)
