"""The HTML report: every section, numbers equal to the API's, image folders, bad input, nothing half-written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from convsvd import cli, zoo
from convsvd.data import load_digits
from convsvd.decompose import decompose
from convsvd.errors import InputError
from convsvd.hypergraph import separation
from convsvd.io import from_module
from convsvd.report import SECTION_TITLES, report
from convsvd.signals import profile
from convsvd.spectral import spectrum
from report_page import decode_png, parse_report

pytestmark = pytest.mark.slow  # end-to-end: whole reports (make test-fast leaves them out)

#: Sections that must show at least one figure when the data are given.
FIGURE_SECTIONS = ("model", "spectra", "filters", "neurons", "separation")
#: Cheap settings for reports whose figures are not under test.
CHEAP = dict(quick=True, neurons=2, steps=2, k=2, input_shape=(1, 8, 8), progress=False)
HERE = Path(__file__).resolve().parent


def _digits_cnn():
    return from_module(zoo.load("digits-cnn"), source="digits-cnn")


def _tree(root: Path) -> list[str]:
    """Every path below ``root``, hidden ones included (leftovers of a failed write would show here)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def demo_quick(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
    return out, parse_report(out / "report.html")


# --------------------------------------------------------------------------- the demo report


def test_demo_quick_holds_every_section_with_figures(demo_quick) -> None:
    out, page = demo_quick
    assert page.order == list(SECTION_TITLES), "every section, in order"
    assert page.toc[: len(SECTION_TITLES)][0] == "model"
    assert set(SECTION_TITLES) <= set(page.toc), "the table of contents links every section"
    for sid, title in SECTION_TITLES.items():
        assert page.sections[sid].title.strip().startswith(title)
    for sid in FIGURE_SECTIONS:
        section = page.sections[sid]
        assert "status-missing" not in section.classes, f"{sid}: {page.section_text(sid)[:300]}"
        assert section.images, f"section {sid} has no figure"
        for src in section.images:
            rgb = decode_png(src)
            assert rgb.shape[0] > 50 and rgb.shape[1] > 50
            assert rgb.std() > 5, f"a blank figure in {sid}"
    # in the neurons section: per layer the class × neuron heat-map, then one row per shown neuron with its
    # two feature visualisations (+u, −u) and its exemplars (top and bottom) beside them
    html = (out / "report.html").read_text()
    rows = re.findall(r'<figure id="fig-neuron-[^"]*" class="figure neuron-row">.*?</figure>', html, re.S)
    shown = sum(len(page.tables[f"neurons-{n}"].rows) for n in _digits_cnn().names)
    assert len(rows) == shown
    with_fv = [r for r in rows if "data-feature-image" in r]  # the time budget may leave some layers out
    assert with_fv, "feature visualisations are shown"
    assert all(r.count("data-feature-image") == 2 for r in with_fv)
    assert all(r.count('class="exemplars"') == 1 for r in rows)
    assert len(page.sections["neurons"].images) == len(_digits_cnn().layers) + len(rows) + 2 * len(with_fv)
    # self-contained: every image embedded, nothing fetched
    assert all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in page.sources)
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert "<link" not in html


def test_every_data_link_is_a_file(demo_quick) -> None:
    out, page = demo_quick
    data_links = [h for h in page.links if not h.startswith("#")]
    assert data_links, "figures and tables link the numbers behind them"
    version = os.readlink(out / "report-data")  # the stable name links to the versioned folder
    assert re.fullmatch(r"\.report-data\.v-[0-9a-f]{16}", version)
    for href in data_links:
        assert href.startswith(f"{version}/")  # a page links to its own version: never to a missing folder
        assert (out / href).is_file(), href
    figures = re.findall(r"<figure.*?</figure>", (out / "report.html").read_text(), re.S)
    assert sum(f.count("<img") for f in figures) == sum(len(page.sections[s].images) for s in page.order)
    for fig in figures:  # every figure names the files with its numbers
        assert f'href="{version}/' in fig, fig[-300:]
    meta = json.loads((out / "report-data" / "report.json").read_text())
    assert meta["model_hash"] == _digits_cnn().content_hash()
    assert set(meta["timings"]) >= {"svd", "profile", "feature visualisation", "class separation"}
    assert meta["options"]["quick"] is True


def test_tables_equal_the_api(demo_quick) -> None:
    out, page = demo_quick
    dec = decompose(_digits_cnn())
    expected = dec.to_frame()
    svd = page.tables["svd"]
    assert svd.texts("name") == expected["name"].tolist()
    assert svd.values("sigma_max") == expected["sigma_max"].tolist()  # exact, from each cell's data-value
    assert svd.values("stable_rank") == expected["stable_rank"].tolist()
    assert svd.texts("sigma_max")[0] == f"{expected['sigma_max'][0]:.4g}"
    csv = pd.read_csv(out / "report-data" / "svd.csv")
    np.testing.assert_allclose(csv["sigma_max"], expected["sigma_max"], rtol=1e-15)

    conv3 = page.tables["neurons-conv3"]
    S = dec["conv3"].S[0].double()
    by_sigma = [i for i, why in enumerate(conv3.texts("why")) if why.startswith("σ #")]
    n = len(by_sigma)
    assert n == 4 and by_sigma == list(range(n))  # the largest-σ neurons first, in order (quick: 4)
    sigma, share = conv3.values("sigma"), conv3.values("share")
    assert sigma[:n] == S[:n].tolist()
    np.testing.assert_allclose(share[:n], (S[:n] ** 2 / dec["conv3"].fro2.sum()).tolist(), rtol=1e-12)

    trained = spectrum(zoo.load("digits-cnn"), mp=True)  # quick: no shuffled baseline
    init = spectrum(zoo.load("digits-cnn", pretrained=False), mp=True)
    spectra = page.tables["spectra"]
    assert spectra.texts("name") == trained.names
    np.testing.assert_array_equal([np.nan if v is None else float(v) for _, v in spectra.column("alpha")],
                                  trained.to_frame()["alpha"].to_numpy(float))
    hats = page.tables["spectra_summary"]
    assert hats.texts("label") == ["trained", "initialisation"]
    assert hats.values("alpha_hat") == [trained.summary()["alpha_hat"].iloc[0], init.summary()["alpha_hat"].iloc[0]]
    views = page.tables["views_metrics"]
    assert views.texts("view") == ["unfold", "slices", "operator"] and len(set(views.texts("name"))) == 1

    table = profile(zoo.load("digits-cnn"), "digits:test", batch_size=128, progress=False)
    for layer in table.layers:  # every neuron influential for at least 20 % of the inputs is shown
        prof = table.class_profile(layer)
        per = prof.groupby("neuron")[["influential_count", "inputs"]].sum()
        often = set(per.index[per["influential_count"] >= 0.2 * per["inputs"]].tolist())
        shown_neurons = {int(v) for v in page.tables[f"neurons-{layer}"].values("neuron")}
        assert often and often <= shown_neurons, (layer, often - shown_neurons)
    sep = separation(table).to_frame().set_index("layer")
    shown = page.tables["separation"]
    assert shown.texts("layer") == sep.index.tolist()
    for col in ("jaccard_mean", "exclusive_mean", "components_s1", "components_s3", "mean_size", "ncc_accuracy",
                "influential_mean", "ncc_shuffled", "ncc_chance", "modularity"):
        got = np.array([np.nan if v is None else float(v) for _, v in shown.column(col)])
        want = sep[col].to_numpy(dtype=float)
        np.testing.assert_array_equal(got, want.round(3) + 0.0 if col == "modularity" else want, err_msg=col)
    assert (sep["influential_mean"] > 1).sum() >= 3  # the default threshold: sets of several neurons
    assert (sep["ncc_shuffled"] < sep["ncc_accuracy"]).loc[["fc1", "fc2"]].all()


def test_methods_state_the_readme_definitions(demo_quick) -> None:
    _, page = demo_quick
    methods = page.section_text("methods")
    readme = (HERE.parent / "README.md").read_text()
    block = readme.split("## Definitions (as implemented)", 1)[1].split("\n#", 1)[0]
    bullets = [b for b in re.split(r"\n- ", "\n" + block.strip()) if b.strip()]
    assert len(bullets) >= 4
    for bullet in bullets:
        term, body = re.match(r"\*\*(.+?)\*\*(.*)", bullet, re.S).groups()  # type: ignore[union-attr]
        body = " ".join(body.replace("`", "").replace("**", "").split()).lstrip(". ")
        assert term.rstrip(".") in methods
        assert body in methods, f"README definition of {term!r} is not in the report's methods"
    assert "arXiv:2208.06894" in methods and "Praggastis" in methods


# --------------------------------------------------------------------------- data sources


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    for img, label, i in zip(images, labels, ids):
        (root / str(int(label))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(root / str(int(label)) / f"{int(i):04d}.png")


def test_image_folder_gives_the_numbers_of_the_builtin_loader(tmp_path: Path, demo_quick) -> None:
    d = load_digits("test")
    pixels = np.round(d.images[:, 0].numpy() * 255).astype(np.uint8)  # what a PNG holds
    _write_folder(tmp_path / "digits-png", pixels, d.labels.numpy(), d.ids.numpy())
    args = ["report", "digits-cnn", str(tmp_path / "digits-png"), "--out", str(tmp_path / "folder.html"), "--quick",
            "--neurons", "2", "--steps", "2", "--k", "2"]
    assert cli.main(args) == 0
    from_folder = pd.read_parquet(tmp_path / "folder-data" / "separation.parquet")

    # The built-in loader, with the same 8-bit pixels in the folder's order (class by class, ids ascending):
    # every number is the same.
    order = np.argsort(d.labels.numpy(), kind="stable")
    x = torch.from_numpy(pixels[order].astype(np.float32)[:, None] / np.float32(255.0))
    r = report(_digits_cnn(), (x, d.labels[order]), out=tmp_path / "arrays.html", **CHEAP)
    pd.testing.assert_frame_equal(from_folder, r.section("separation").tables[0].frame.reset_index(drop=True))

    # The built-in digits as they are (pixels k/16, another input order): the class hypergraphs are the same;
    # the cross-validated NCC accuracy moves a little, since its folds follow the input order.
    builtin = pd.read_parquet(demo_quick[0] / "report-data" / "separation.parquet")
    same = ["layer", "neurons", "mean_size", "empty_hyperedges", "jaccard_mean", "exclusive_mean", "components_s1",
            "components_s2", "components_s3", "status"]
    pd.testing.assert_frame_equal(from_folder[same], builtin[same])
    np.testing.assert_allclose(from_folder["ncc_accuracy"], builtin["ncc_accuracy"], atol=0.03)
    manifest = json.loads((tmp_path / "folder-data" / "signals" / "manifest.json").read_text())
    assert manifest["dataset"]["kind"] == "image-folder"
    assert manifest["inputs"] == len(d)


def test_without_data_only_the_weight_sections(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    r = report(_digits_cnn(), None, out=tmp_path / "weights", **{**CHEAP, "progress": lambda *a: calls.append(a)})
    assert r.path == tmp_path / "weights" / "report.html" and r.data_dir == tmp_path / "weights" / "report-data"
    page = parse_report(r.path)
    assert "No dataset was given" in " ".join(page.banner)
    assert "status-missing" in page.sections["separation"].classes
    assert "needs a dataset" in page.section_text("separation")
    for sid in ("model", "filters", "neurons"):
        assert page.sections[sid].images, sid
    assert "exemplars" not in " ".join(p.name for p in r.files)
    assert not (r.data_dir / "signals").exists()
    frame = r.to_frame().set_index("id")
    # without data: no exemplars, but both directions of every shown neuron of every layer, at full size
    layers = len(_digits_cnn().layers)
    assert frame.loc["separation", "status"] == "missing" and frame.loc["neurons", "figures"] == 0
    assert frame.loc["neurons", "pictures"] == layers * CHEAP["neurons"] * 2
    with pytest.raises(InputError, match="section 'nope'"):
        r.section("nope")
    # progress: every step reported, and the bar ends full
    done, total, _ = calls[-1]
    assert done == total == len(r.timings)
    assert {"svd", "feature visualisation"} <= {w for *_, w in calls}


# --------------------------------------------------------------------------- bad input, nothing half-written


def _bad_model(tmp: Path) -> list[str]:
    (tmp / "broken.pt").write_bytes(b"not a checkpoint at all")
    return ["report", str(tmp / "broken.pt"), "digits:test", "--out", str(tmp / "out" / "r.html")]


def _misfit_folder(tmp: Path) -> list[str]:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp / "big" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp / "big" / c / f"{i}.png")
    # a factory model does not say its input size, so 16×16 images reach fc1 with 1024 features instead of 256
    return ["report", "convsvd.zoo.models:DigitsCNN", str(tmp / "big"), "--out", str(tmp / "out" / "r.html"),
            "--quick"]


def _unwritable(tmp: Path) -> list[str]:
    (tmp / "a-file").write_text("")
    return ["report", "digits-cnn", "--out", str(tmp / "a-file" / "r.html")]


@pytest.mark.parametrize("make, expected", [
    (_bad_model, r"broken\.pt: not a readable PyTorch checkpoint"),
    (_misfit_folder, r"fails on inputs of shape 1×16×16 at layer 'fc1'"),
    (_unwritable, r"cannot be written \(.*a-file is a file, not a folder\)"),
])
def test_bad_input_one_line_and_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str], make,
                                                expected: str) -> None:
    args = make(tmp_path)
    before = _tree(tmp_path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convsvd report: error: "), err
    assert re.search(expected, err[0]), err[0]
    assert _tree(tmp_path) == before, "nothing written, no staging folder left"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert cli.main(["report", "digits-cnn", "--out", str(locked / "r.html")]) == 2
        assert "cannot be written" in capsys.readouterr().err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_failure_midway_keeps_the_earlier_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = report(_digits_cnn(), None, out=tmp_path / "r.html", **CHEAP)
    html, tree = first.path.read_bytes(), _tree(tmp_path)
    marker = (first.data_dir / "report.json").read_bytes()

    import convsvd.report.sections as sections

    def broken() -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sections, "methods_section", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        report(_digits_cnn(), None, out=tmp_path / "r.html", **{**CHEAP, "steps": 3})
    assert first.path.read_bytes() == html
    assert (first.data_dir / "report.json").read_bytes() == marker
    assert _tree(tmp_path) == tree, "no staging folder or half-written file left"


def test_an_init_of_another_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"init 'digits-resnet': has no layer 'conv3'"):
        report(_digits_cnn(), None, out=tmp_path / "r.html", init=from_module(zoo.load("digits-resnet"),
                                                                                 source="digits-resnet"), **CHEAP)
    assert list(tmp_path.iterdir()) == []


def test_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "mine-data").mkdir()
    (tmp_path / "mine-data" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="was not written by convsvd report"):
        report(_digits_cnn(), None, out=tmp_path / "mine.html", **CHEAP)
    assert (tmp_path / "mine-data" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "mine.html").exists()


def test_a_second_report_replaces_the_first(tmp_path: Path) -> None:
    a = report(_digits_cnn(), None, out=tmp_path / "r.html", **CHEAP)
    (a.data_dir / "stale.csv").write_text("x")
    b = report(_digits_cnn(), None, out=tmp_path / "r.html", **{**CHEAP, "neurons": 1})
    assert not (b.data_dir / "stale.csv").exists()
    assert len(parse_report(b.path).tables["neurons-conv1"].rows) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.readlink(tmp_path / "r-data"), "r-data", "r.html"]


def test_claims_are_read_against_baselines(demo_quick) -> None:
    out, page = demo_quick
    base = page.tables["spectra_baselines"]
    assert base.texts("name") == [l.name for l in _digits_cnn().layers]
    sep = pd.read_parquet(out / "report-data" / "separation_baselines.parquet")
    assert set(sep["basis"]) == {"svd", "channel", "random", "svd, random initialisation"}
    per = sep.set_index(["basis", "layer"])["ncc_accuracy"]
    # NCC accuracy is the same in any orthonormal basis (a rotation keeps distances); the trained fc2
    # separates the classes better than the randomly initialised copy's
    assert abs(per[("svd", "fc2")] - per[("random", "fc2")]) < 1e-6
    assert per[("svd", "fc2")] > per[("svd, random initialisation", "fc2")]
    assert "separation-baselines" in " ".join(page.sections["separation"].images) or \
        'id="fig-separation-baselines"' in (out / "report.html").read_text()


def test_long_layer_names_are_shortened_with_the_full_name_on_hover(tmp_path: Path) -> None:
    """ONNX-style names such as ``/layer4/layer4.0/conv1/Conv`` are shortened in tables, headings and figures;
    every shortened one carries its full name in a ``title``, and the figures name the full layers in title and alt."""
    from html import escape

    from safetensors.torch import save_file

    from convsvd.report.html import NAME_WIDTH
    from convsvd.viz._common import short_name

    torch.manual_seed(0)
    shapes = {"/layer4/layer4.0/conv1/Conv": (8, 3, 3, 3), "/layer4/layer4.0/conv2/Conv": (16, 8, 3, 3),
              "/backbone/head/classifier/fc/Gemm": (10, 16)}
    path = tmp_path / "long.safetensors"
    save_file({f"{n}.weight": torch.randn(*s) for n, s in shapes.items()}, str(path))
    r = report(str(path), None, out=tmp_path / "r", **{**CHEAP, "input_shape": None})
    html = r.path.read_text()
    long = [n for n in shapes if short_name(n, NAME_WIDTH) != n]
    assert long, "the names are long enough to be shortened"
    # every shortened name in the page (an ellipsis and the end of a name) sits in a span titled with its full name
    found = re.findall(r'(<span class="name" title="([^"]*)">)?(…[\w./-]+)', html)
    assert found, "the page shows shortened names"
    for span, title, short in found:
        assert span, f"{short} without its full name"
        assert title in shapes and short == short_name(title, NAME_WIDTH), (title, short)
    assert {t for _, t, _ in found} == set(long)  # every long name was shortened somewhere (tables, headings)
    # figures that draw layer names (shortened in the image) name them in full in their title and alt text
    for key in ("svd-spectra", "spectra-alpha"):
        img = re.search(rf'<figure id="fig-{key}" class="figure"><img [^>]*>', html)
        assert img, key
        for name in shapes:
            assert 'title="click to enlarge · layers: ' in img.group(0) and escape(name) in img.group(0), (key, name)


def test_large_photographic_figures_are_embedded_as_jpeg() -> None:
    """A montage of photos is a JPEG at most half its PNG's size (same display width); a plot stays PNG."""
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage
    from skimage import data as skdata

    from convsvd.report.content import JPEG_FROM, Figure, figure_png, mime_type

    photo = skdata.astronaut()

    def photos():  # type: ignore[no-untyped-def]
        fig, axes = plt.subplots(2, 4, figsize=(8, 4))
        for i, ax in enumerate(axes.flat):
            ax.imshow(photo[i * 30:i * 30 + 256, i * 20:i * 20 + 256])
            ax.set_title(f"input {i}")
            ax.axis("off")
        return fig

    png, width, _ = figure_png(photos())
    montage = Figure.from_matplotlib("montage", photos(), "photos")
    assert len(png) > JPEG_FROM and mime_type(montage.image) == "image/jpeg"
    assert 2 * len(montage.image) <= len(png) and montage.width == width
    assert PILImage.open(_io.BytesIO(montage.image)).size == PILImage.open(_io.BytesIO(png)).size
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [1, 3, 2])
    plot = Figure.from_matplotlib("plot", fig, "a line")
    assert mime_type(plot.image) == "image/png" and plot.image.startswith(b"\x89PNG")
