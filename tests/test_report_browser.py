"""The demo report opened in a real browser (headless Chromium): every section, no broken image, no console error.

Needs Debian's ``chromium`` package (``make test`` installs it through
``scripts/install-system-deps.sh``). The screenshots stay in
``test-output/report-browser/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convsvd import cli
from convsvd.report import SECTION_TITLES

CHROMIUM = os.environ.get("CONVSVD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "report-browser"

pytestmark = [pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: install Debian's chromium package (make test does: "
           "bash scripts/install-system-deps.sh chromium)",
), pytest.mark.slow]

#: A tiny page with one broken image and one script error: proves the checks below can fail.
BROKEN_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<section id="model"><h2>x</h2><img src="data:image/png;base64,AAAA" alt="broken"></section>
<script>undefinedFunction();</script>
<script>window.addEventListener("load", function () {
  var i = document.images, ok = 0;
  for (var k = 0; k < i.length; k++) { if (i[k].complete && i[k].naturalWidth > 0) { ok++; } }
  document.body.setAttribute("data-images", String(i.length));
  document.body.setAttribute("data-images-ok", String(ok));
});</script></body></html>"""


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local file, offline (every host name fails to resolve)."""
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--no-default-browser-check", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000",
        *args, page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _console_messages(stderr: str) -> list[str]:
    """Every message the page wrote to the console, and every uncaught error."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.body: dict[str, str | None] = {}
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "body":
            self.body = a
        elif tag == "img":
            self.images += 1


#: Smallest text the report may show, in CSS pixels, at a 1280-pixel window (figures included).
MIN_TEXT_PX = 11.0
#: Narrowest a feature visualisation may be shown, in CSS pixels, at a 1280-pixel window.
MIN_FEATURE_PX = 128.0


def _check(page: Path, profile: Path) -> tuple[_Dom, list[str]]:
    run = _chromium(page, profile, "--dump-dom", "--window-size=1280,1600")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = _Dom()
    dom.feed(run.stdout)
    return dom, _console_messages(run.stderr)


def _screenshot(page: Path, profile: Path, path: Path, size: str) -> np.ndarray:
    run = _chromium(page, profile, f"--screenshot={path}", f"--window-size={size}")
    assert run.returncode == 0 and path.is_file(), run.stderr[-2000:]
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_checks_catch_a_broken_page(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(BROKEN_PAGE)
    dom, console = _check(page, tmp_path / "profile")
    assert dom.body.get("data-images") == "1" and dom.body.get("data-images-ok") == "0"
    assert any("undefinedFunction" in line for line in console), console


def test_the_legibility_checks_can_fail(tmp_path: Path) -> None:
    from convsvd.report.html import package_text

    script = package_text("template.html").split("<script>", 1)[1].split("</script>", 1)[0]
    page = tmp_path / "small.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><main>'
                    '<p style="font-size:7px">tiny</p><div style="width:3000px">wide</div>'
                    '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ'
                    'DwAEhQGAhKmMIQAAAABJRU5ErkJggg==" width="2000" style="max-width:100%" data-min-font-pt="9">'
                    '<div style="width:60px"><img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ'
                    'AAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==" width="144" style="max-width:100%" '
                    'data-feature-image></div>'
                    f'</main><script>{script}</script></body></html>')
    dom, _ = _check(page, tmp_path / "profile")
    assert float(dom.body["data-min-text-px"]) == pytest.approx(7.0)
    assert float(dom.body["data-min-figure-font-px"]) < MIN_TEXT_PX  # a 2000-px figure shrunk to the window
    assert int(dom.body["data-page-overflow"]) > 0
    assert dom.body["data-feature-images"] == "1"
    assert float(dom.body["data-min-feature-px"]) < MIN_FEATURE_PX  # squeezed to its 60-px box


def test_demo_report_in_chromium(tmp_path: Path) -> None:
    if OUTPUT.exists():
        shutil.rmtree(OUTPUT)
    OUTPUT.mkdir(parents=True)
    assert cli.main(["demo", "--quick", "--out", str(OUTPUT)]) == 0
    page = OUTPUT / "report.html"
    html = page.read_text()
    n_images = len(re.findall(r"<img\b", html))

    dom, console = _check(page, tmp_path / "profile")
    assert [s for s in dom.sections if s in SECTION_TITLES] == list(SECTION_TITLES), dom.sections
    assert dom.images == n_images > 5
    # set by the page's own script once loaded: every image decoded to a real picture
    assert dom.body.get("data-images") == str(n_images), dom.body
    assert dom.body.get("data-images-ok") == str(n_images), dom.body
    assert console == [], console
    # legibility at 1280 px, measured by the page itself once laid out: text in figures (their smallest
    # font × the shown/own width) and in the page, and nothing wider than the window
    assert float(dom.body["data-min-figure-font-px"]) >= MIN_TEXT_PX, dom.body
    assert float(dom.body["data-min-text-px"]) >= MIN_TEXT_PX, dom.body
    assert dom.body["data-page-overflow"] == "0", dom.body
    # every feature visualisation at least 128 px wide, beside its exemplars
    assert int(dom.body["data-feature-images"]) > 0, dom.body
    assert float(dom.body["data-min-feature-px"]) >= MIN_FEATURE_PX, dom.body
    assert dom.body["data-features-apart"] == "0", dom.body

    top = _screenshot(page, tmp_path / "profile", OUTPUT / "screenshot.png", "1280,1600")
    assert top.shape[:2] == (1600, 1280)
    assert top.std() > 20, "the screenshot is blank"
    assert (top[:, :150].mean(axis=(0, 1)) < 100).all(), "the dark table-of-contents column is drawn"
    whole = _screenshot(page, tmp_path / "profile", OUTPUT / "screenshot-long.png", "1280,9000")
    assert whole[4000:].std() > 20, "the page goes on below the first screen"
