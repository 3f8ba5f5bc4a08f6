"""The README's screenshots of a report, taken in headless Chromium at a 1280-pixel window.

    .venv/bin/convsvd demo --out demo-out
    .venv/bin/python scripts/report_screenshots.py demo-out/report.html docs

writes ``docs/report-screenshot.png`` (the top of the page: header, model, spectra) and
``docs/report-neurons.png`` (the first layers of the "SVD neurons that matter" section, on a page that holds
only that section), each scaled to 800 pixels wide.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

WINDOW = 1280
WIDTH = 800


def _shoot(page: Path, png: Path, height: int, profile: Path) -> Image.Image:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("report_screenshots: no chromium on PATH")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
                    "--virtual-time-budget=15000", f"--screenshot={png}", f"--window-size={WINDOW},{height}",
                    page.resolve().as_uri()], check=True, capture_output=True, timeout=300)
    img = Image.open(png).convert("RGB")
    return img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.LANCZOS)


def only_section(html: str, section: str) -> str:
    """The page with one section in its main column (the table of contents kept)."""
    start = html.index(f'<section id="{section}"')
    end = html.index("</section>", start) + len("</section>")
    main, close = html.index("<main>") + len("<main>"), html.index("</main>")
    return html[:main] + html[start:end] + html[close:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--neurons-height", type=int, default=2600, help="window height for the neurons section")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        top = _shoot(args.report, t / "top.png", 3600, t / "profile")
        top.save(args.out / "report-screenshot.png", optimize=True)
        page = t / "neurons.html"
        page.write_text(only_section(args.report.read_text(encoding="utf-8"), "neurons"), encoding="utf-8")
        neurons = _shoot(page, t / "neurons.png", args.neurons_height, t / "profile")
        neurons.save(args.out / "report-neurons.png", optimize=True)
    print(f"wrote {args.out / 'report-screenshot.png'} and {args.out / 'report-neurons.png'}")


if __name__ == "__main__":
    main()
