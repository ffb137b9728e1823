"""``lofn report``'s page in a real browser: headless Chromium over the DevTools Protocol.

The page of a synthetic trace (tests/traces.py: three stages on two hosts,
a failed attempt and its retry, an OOM, a cache hit, a reused container
without memory figures) is opened from a file; the browser must report no
error and no request beyond the file, the timeline must show one bar per
record with the failed ones marked, and a screenshot must come out as a PNG.

No Docker engine is needed: this module checks only that no ``lofn-*``
temp entry (the browser's profile among them) is left behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lofn.report import load_trace, write_report
from tests.browser import CHROMIUM, PNG_MAGIC, Browser, find_chromium, png_size
from tests.conftest import lofn_temp_entries, require
from tests.traces import SCRIPT_TAIL, failed, record, sample_trace, write_trace

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def clean_after_each_test(request):
    """Replaces the directory's fixture, which needs Docker: only temp entries are checked."""
    yield
    left = lofn_temp_entries()
    assert not left, f"{request.node.name} left temp entries {left}"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        require("chromium", f"no {CHROMIUM!r} on PATH (run 'bash scripts/dev.sh setup' as "
                            "root, or set LOFN_CHROMIUM)")
    assert path is not None
    return path


@pytest.fixture
def browser(chromium):
    with Browser(width=1200, height=900) as opened:
        yield opened


@pytest.fixture
def report(tmp_path) -> Path:
    """The page of the sample trace, made by ``lofn report`` as a user would."""
    trace = write_trace(tmp_path / "trace", sample_trace())
    out = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "lofn", "report", str(trace), "-o", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"lofn: report of 16 trace records written to {out}\n"
    return out


BARS = "document.querySelectorAll('#timeline g.bar')"


def test_page_loads_without_errors_or_requests(browser, report):
    page = browser.open(report.as_uri())
    assert page.errors == []
    assert page.requests == [report.as_uri()], "the page asked for more than itself"
    assert browser.evaluate("document.title").startswith("lofn report: app-")


def test_timeline_has_a_bar_per_record_and_marks_failures(browser, report):
    browser.open(report.as_uri())
    assert browser.evaluate(f"{BARS}.length") == 16
    # every bar is drawn: a visible rectangle at least 2 px wide, inside the chart
    boxes = browser.evaluate(
        f"Array.from({BARS}, g => {{ const b = g.querySelector('rect').getBoundingClientRect();"
        " return [b.width, b.height, getComputedStyle(g).display]; })")
    assert all(width >= 2 and height > 10 and display != "none"
               for width, height, display in boxes), boxes
    failed_bars = browser.evaluate(
        f"Array.from({BARS}).filter(g => g.classList.contains('failed')).map(g => ["
        " g.dataset.stage, g.dataset.partition, g.dataset.attempt,"
        " getComputedStyle(g.querySelector('rect.failed-mark')).stroke,"
        " g.querySelector('text.failed-mark').textContent])")
    assert sorted(failed_bars) == [["0", "5", "0", "rgb(214, 39, 40)", "\u2715"],
                                   ["1", "2", "0", "rgb(214, 39, 40)", "\u2715"]]
    tooltip = browser.evaluate(
        f"Array.from({BARS}).find(g => g.dataset.stage === '1' && g.dataset.partition === '2'"
        " && g.dataset.attempt === '0').querySelector('title').textContent")
    assert tooltip.splitlines()[:4] == [
        "stage 1 (map_binary), partition 2, attempt 0", "4.00 s, fresh, FAILED",
        "image lofn/bwa:0.7.17", "exit code 137, out of memory"]
    # four rows (2 hosts x 2 workers), each labelled
    labels = browser.evaluate("Array.from(document.querySelectorAll('#timeline text.row-label'),"
                              " t => t.lastChild.textContent)")
    assert labels == ["node-a / worker 4101", "node-a / worker 4102", "node-b / worker 5201",
                      "node-b / worker 5202"]


def test_stderr_tail_is_text_not_markup(browser, report):
    browser.open(report.as_uri())
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    tails = browser.evaluate("Array.from(document.querySelectorAll('.failure pre'),"
                             " p => p.textContent)")
    assert SCRIPT_TAIL in tails
    errors = browser.evaluate("Array.from(document.querySelectorAll('.failure > span:not(.muted)'),"
                              " s => s.textContent)")
    assert "DockerFailure: container exited with code 3 (<b>partition</b>)" in errors


def test_hostile_trace_runs_nothing(browser, tmp_path):
    """Markup in every text field of a trace stays text: no script runs, no element appears."""
    hostile = '<img src=x onerror="console.error(1)"><script>console.error(2)</script>'
    path = tmp_path / "hostile.html"
    write_report([failed(image=hostile, command=hostile, host=hostile, error=hostile,
                         stderr_tail=hostile, method=hostile),
                  record(partition=1, start=record()["start"] + 2, end=record()["end"] + 3)],
                 path, title=hostile)
    page = browser.open(path.as_uri())
    assert page.errors == []
    assert page.requests == [path.as_uri()]
    assert browser.evaluate("document.querySelectorAll('img, script').length") == 0
    assert browser.evaluate("document.querySelector('h1').textContent") == hostile


def test_screenshot_is_a_png(browser, report):
    browser.open(report.as_uri())
    png = browser.screenshot()
    assert png[:8] == PNG_MAGIC
    assert png_size(png) == (1200, 900)
    assert len(png) > 20_000, "a page with a chart and tables makes a bigger PNG"
    whole = browser.screenshot(full_page=True)
    width, height = png_size(whole)
    assert width == 1200 and height > 900


def test_report_of_a_concatenated_trace_is_the_same_page(tmp_path, report):
    joined = tmp_path / "all.jsonl"
    joined.write_text("".join(f.read_text() for f in sorted((tmp_path / "trace").iterdir())))
    again = tmp_path / "again.html"
    write_report(load_trace(joined), again)
    assert again.read_text() == report.read_text()


def test_browser_leaves_no_process_or_profile(chromium):
    with Browser() as opened:
        process, profile = opened.process, opened.profile
        assert process is not None and profile is not None
        assert Path(profile).name.startswith("lofn-chromium-")
    assert process.poll() is not None
    assert not Path(profile).exists()
