"""Output sets under kill -9 and bad --out: the earlier set byte-identical or the new one complete, never a mix.

Each kill is injected by ``CONVSVD_TEST_KILL_AT`` (:func:`convsvd._atomic.kill_point`) in a child process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from convsvd._atomic import OutputSet, verify_set

from .conftest import cli, forked, hidden, killed, one_line_error, report_fn, run_cli, snapshot


def _svd(out: Path, k: int, **kw) -> int:  # type: ignore[no-untyped-def]
    return forked(cli(["svd", "digits-cnn", "--layers", "conv2,fc2", "--top-k", str(k), "--out", str(out)]), **kw)


@pytest.fixture(scope="module")
def svd_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The complete output sets of the old (k=3) and the new (k=5) run, for comparison."""
    root = tmp_path_factory.mktemp("ref")
    assert _svd(root / "old", 3) == 0 and _svd(root / "new", 5) == 0
    return snapshot(root / "old"), snapshot(root / "new")


def _k_of(out: Path) -> int:
    return json.loads((out / "svd.json").read_text())["options"]["k"]


@pytest.mark.parametrize("point, no_exchange, expect", [
    ("staged", False, "old"),        # written, not yet swapped in
    ("exchanged", False, "new"),     # swapped in, the old set not yet deleted
    ("staged", True, "old"),         # the same without renameat2 ...
    ("moved-aside", True, "old"),    # ... between its two renames: the next run restores the old set
])
def test_svd_killed_while_publishing(tmp_path: Path, svd_sets, point: str, no_exchange: bool, expect: str) -> None:
    out = tmp_path / "svd"
    assert _svd(out, 3) == 0
    old = snapshot(out)
    assert killed(_svd(out, 5, kill_at=point, no_exchange=no_exchange))
    assert hidden(tmp_path), "the killed run left its staging or old folder"
    if point == "moved-aside":
        assert not out.exists()
        with pytest.raises(RuntimeError):  # the next run restores it before any work
            with OutputSet(out):
                raise RuntimeError("stop")
    verify_set(out)  # complete, whichever it is
    assert _k_of(out) == (3 if expect == "old" else 5)
    if expect == "old":
        assert snapshot(out) == old  # byte-identical
    else:
        assert {k for k in snapshot(out)} == set(svd_sets[1])
    assert _svd(out, 5) == 0  # the next run: complete, nothing left behind
    verify_set(out)
    assert _k_of(out) == 5 and hidden(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("point, expect", [("staged", "old"), ("exchanged", "new")])
def test_spectrum_killed_while_publishing(tmp_path: Path, point: str, expect: str) -> None:
    out = tmp_path / "spec"
    args = ["spectrum", "digits-cnn", "--layers", "conv2,conv3", "--out", str(out)]
    assert forked(cli(args)) == 0
    old = snapshot(out)
    assert killed(forked(cli([*args, "--seed", "1", "--dtype", "float64"]), kill_at=point))
    verify_set(out)
    meta = json.loads((out / "spectrum.json").read_text())
    if expect == "old":
        assert snapshot(out) == old
    else:
        assert meta["options"]["seed"] == 1
    assert forked(cli(args)) == 0
    verify_set(out)
    assert hidden(tmp_path) == []


def _links_resolve(html: Path) -> list[str]:
    """The page's data links; asserts every one of them is a file."""
    hrefs = [h for h in re.findall(r'href="([^"#][^"]*)"', html.read_text()) if "://" not in h]
    assert hrefs
    for h in hrefs:
        assert (html.parent / h).is_file(), h
    return hrefs


@pytest.fixture(scope="module")
def first_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier report (neurons=1), copied for each case."""
    root = tmp_path_factory.mktemp("first")
    assert forked(report_fn(root / "r.html", 1)) == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("point, expect, then_next", [
    ("report-staged", "old", False),   # data written, not yet renamed to its version
    ("report-data", "old", True),      # new version in place, the page not yet replaced
    ("report-page", "new", True),      # the page replaced, the <stem>-data link not yet moved
    ("report-link", "new", False),     # link moved, the earlier version not yet removed
])
def test_report_killed_while_publishing(tmp_path: Path, first_report: Path, point: str, expect: str,
                                        then_next: bool) -> None:
    root = tmp_path / "site"
    shutil.copytree(first_report, root, symlinks=True)
    html = root / "r.html"
    old_html = html.read_bytes()
    old_links = _links_resolve(html)
    assert killed(forked(report_fn(html, 2), kill_at=point))
    links = _links_resolve(html)  # whichever page is there, it never links to a missing file
    if expect == "old":
        assert html.read_bytes() == old_html and links == old_links
    else:
        assert html.read_bytes() != old_html
        verify_set(root / links[0].split("/")[0])
    if not then_next:
        return
    # the next run removes every leftover, also those of older convsvd versions' killed runs
    (root / ".r-data.abc123.tmp").mkdir()
    (root / ".r-data.old.xyz").mkdir()
    assert forked(report_fn(html, 2)) == 0
    version = _links_resolve(html)[0].split("/")[0]
    assert os.readlink(root / "r-data") == version
    assert sorted(p.name for p in root.iterdir()) == [version, "r-data", "r.html"]  # no lock file either
    verify_set(root / "r-data")


@pytest.mark.slow  # whole reports
def test_report_replaces_a_data_folder_of_an_older_version(tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    legacy = tmp_path / "r-data"
    legacy.mkdir()
    (legacy / "report.json").write_text(json.dumps({"generator": "convsvd report"}))
    html.write_text('<a href="r-data/report.json">x</a>')
    assert forked(report_fn(html, 1)) == 0
    assert legacy.is_symlink() and (legacy / "convsvd-files.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.readlink(legacy), "r-data", "r.html"]


def test_report_refuses_an_existing_non_html_file(tmp_path: Path, cli_inproc) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    code, _, err = cli_inproc(["report", "digits-cnn", "--out", str(notes), "--quick"])
    assert code == 2 and "not an .html file" in err and len(err.strip().splitlines()) == 1
    assert notes.read_text() == "my notes" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("args", [
    ["features", "digits-cnn", "--layer", "nope"],
    ["features", "digits-cnn", "--layer", "conv1", "--neurons", "x-y"],
    ["profile", "digits-cnn", "no-such-data.npz"],
    ["svd", "no-such-model.pt"],
    ["spectrum", "no-such-model.pt"],
])
def test_errors_after_parsing_leave_no_out_folder(tmp_path: Path, cli_inproc, args: list[str]) -> None:
    out = tmp_path / "deep" / "out"
    code, _, err = cli_inproc([*args, "--out", str(out)])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_out_that_is_a_file_is_refused_before_work(tmp_path: Path, cli_inproc) -> None:
    f = tmp_path / "out"
    f.write_text("keep")
    for cmd in (["svd", "digits-cnn"], ["spectrum", "digits-cnn"]):
        code, _, err = cli_inproc([*cmd, "--out", str(f)])
        assert code == 2 and "is not a folder" in err
    assert f.read_text() == "keep"


@pytest.mark.slow  # the command in a child process
def test_top_k_zero_is_an_error(tmp_path: Path) -> None:
    proc = run_cli(["svd", "digits-cnn", "--top-k", "0", "--out", str(tmp_path / "o")])
    assert "--top-k 0: expected an integer ≥ 1" in one_line_error(proc, "svd")
    assert list(tmp_path.iterdir()) == []
