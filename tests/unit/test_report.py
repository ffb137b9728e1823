"""lofn.report without a browser: reading traces, the numbers, escaping, ``lofn report``.

The page in a real browser (no script error, the timeline drawn, a
screenshot) is tested in tests/integration/test_report.py.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import lofn.report
from lofn import cli
from lofn.errors import LofnError
from lofn.report import (
    SCHEMA,
    TraceError,
    human_bytes,
    human_seconds,
    load_trace,
    parse_trace,
    render_report,
    stage_summaries,
    timeline_svg,
    write_report,
)
from tests.traces import APP, SCRIPT_TAIL, T0, failed, record, sample_trace, write_trace


def lines(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def trace_dir(tmp_path) -> Path:
    return write_trace(tmp_path / "trace", sample_trace())


# ---------------------------------------------------------------------------
# load_trace: what it reads

def test_directory_gives_every_record_sorted_by_start(trace_dir):
    records = load_trace(trace_dir)
    assert len(records) == len(sample_trace()) == 16
    starts = [r["start"] for r in records]
    assert starts == sorted(starts)
    assert records[0] == record(partition=0, start=T0, end=T0 + 2.4,
                                peak_memory_bytes=10 * 2**20)


def test_one_file_of_concatenated_records(tmp_path, trace_dir):
    joined = tmp_path / "all.jsonl"
    joined.write_text("".join(f.read_text() for f in sorted(trace_dir.iterdir())))
    assert load_trace(joined) == load_trace(trace_dir)
    assert load_trace(str(joined)) == load_trace(joined)


def test_directory_reads_only_jsonl_files_and_blank_lines_are_skipped(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n" + lines(record(partition=1)) + "\n\n")
    (tmp_path / "b.jsonl").write_text(lines(record(partition=2, start=T0 - 5)))
    (tmp_path / "notes.txt").write_text("not a trace")
    (tmp_path / "empty.jsonl").write_text("")
    assert [r["partition"] for r in load_trace(tmp_path)] == [2, 1]


def test_extra_fields_are_kept(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(lines(dict(record(), future_field=[1, 2])))
    assert load_trace(path)[0]["future_field"] == [1, 2]


def test_parse_trace_takes_named_texts_from_any_store():
    records = parse_trace([("hdfs:///t/a.jsonl", lines(record(partition=3)))])
    assert records[0]["partition"] == 3
    with pytest.raises(TraceError, match=r"^hdfs:///t/b\.jsonl, line 1: not JSON"):
        parse_trace([("hdfs:///t/b.jsonl", "{")])


# ---------------------------------------------------------------------------
# load_trace: what it refuses

def refused(path: Path) -> TraceError:
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    error = caught.value
    assert isinstance(error, LofnError) and isinstance(error, ValueError)
    return error


def test_missing_path(tmp_path):
    error = refused(tmp_path / "nope")
    assert str(error) == f"{tmp_path / 'nope'}: no such file or directory"
    assert error.source == str(tmp_path / "nope") and error.line is None


def test_an_hdfs_trace_needs_a_path_from_the_root_and_a_namenode(monkeypatch):
    with pytest.raises(TraceError, match=r"^hdfs://nn/traces: an HDFS trace is given as "
                                         r"hdfs:///path"):
        load_trace("hdfs://nn/traces")
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.setenv("HDFSCLI_CONFIG", "/nonexistent/hdfscli.cfg")
    with pytest.raises(TraceError, match=r"^hdfs:///traces/run1: HDFS support needs an HDFS "
                                         r"URL"):
        load_trace("hdfs:///traces/run1")


def test_directory_without_trace_files(tmp_path):
    (tmp_path / "report.html").write_text("<html></html>")
    assert "no *.jsonl file in this directory" in str(refused(tmp_path))


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_trace(tmp_path, text):
    (tmp_path / "a.jsonl").write_text(text)
    (tmp_path / "b.jsonl").write_text(text)
    assert str(refused(tmp_path)) == "2 trace files: no record: the trace is empty"
    assert str(refused(tmp_path / "a.jsonl")) == f"{tmp_path / 'a.jsonl'}: no record: the " \
                                                 "trace is empty"


def test_truncated_last_line_names_file_and_line(tmp_path):
    good = lines(record(), record(partition=1))
    path = tmp_path / "b.jsonl"
    path.write_text(good + json.dumps(record(partition=2))[:-20])
    error = refused(tmp_path)
    assert error.source == str(path) and error.line == 3
    assert str(error).startswith(f"{path}, line 3: not JSON (cut short: the file ends in the "
                                 "middle of a record)")


def test_corrupt_line_in_the_middle(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(lines(record()) + "{'single': 'quotes'}\n" + lines(record(partition=1)))
    assert str(refused(path)) == (f"{path}, line 2: not JSON: expected one {SCHEMA} record "
                                  "(a JSON object) per line")


@pytest.mark.parametrize("content, problem", [
    ("<!DOCTYPE html>\n<html><body>report</body></html>\n", "line 1: not JSON"),
    ('{"level": "INFO", "msg": "started"}\n', "line 1: no 'schema' field: not a lofn-trace/1"),
    ('{"schema": "lofn-trace/2"}\n', "line 1: schema 'lofn-trace/2': not a lofn-trace/1"),
    ("[1, 2, 3]\n", "line 1: a JSON list, expected a lofn-trace/1 record"),
    ('"text"\n', "line 1: a JSON str, expected"),
])
def test_foreign_files(tmp_path, content, problem):
    path = tmp_path / "foreign.jsonl"
    path.write_text(content)
    assert str(refused(path)).startswith(f"{path}, {problem}")


def test_binary_file(tmp_path):
    path = tmp_path / "core.jsonl"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\n\xff\xfe\x00\x00")
    assert str(refused(path)) == (f"{path}, line 2: not UTF-8 text (a binary file?): "
                                  f"expected one {SCHEMA} JSON record per line")


@pytest.mark.parametrize("change, problem", [
    ({"stage": "3"}, "'stage' is \"3\", expected int"),
    ({"stage": True}, "'stage' is true, expected int"),
    ({"start": None}, "'start' is null, expected int or float"),
    ({"oom": 0}, "'oom' is 0, expected bool"),
    ({"exit_code": 1.5}, "'exit_code' is 1.5, expected int or null"),
    ({"stderr_tail": ["x"]}, "'stderr_tail' is [\"x\"], expected str or null"),
    ({"mode": "warm"}, "'mode' is 'warm', expected one of fresh, reuse, cache"),
    ({"status": "OK"}, "'status' is 'OK', expected one of ok, failed, cancelled"),
])
def test_fields_of_the_wrong_type(tmp_path, change, problem):
    path = tmp_path / "t.jsonl"
    path.write_text(lines(record(), record(**change)))
    assert str(refused(path)) == f"{path}, line 2: {problem}"


def test_missing_field(tmp_path):
    path = tmp_path / "t.jsonl"
    incomplete = record()
    del incomplete["meter"]
    path.write_text(lines(incomplete))
    assert str(refused(path)) == f"{path}, line 1: no 'meter' field in a {SCHEMA} record"


@pytest.mark.parametrize("end, shown", [("Infinity", "Infinity"), ("NaN", "NaN"),
                                        ("-1", "-1"), ("1796331601000", "1796331601000"),
                                        ("1" + "0" * 400, "1" + "0" * 400)])
def test_times_that_are_no_unix_time(tmp_path, end, shown):
    path = tmp_path / "t.jsonl"
    path.write_text(lines(record()).replace(f'"end": {T0 + 1.0}', f'"end": {end}'))
    assert str(refused(path)) == (f"{path}, line 1: 'end' is {shown}, expected a Unix time "
                                  "in seconds")


# ---------------------------------------------------------------------------
# the numbers

def test_stage_numbers():
    stages = {s.stage: s for s in stage_summaries(sample_trace())}
    assert list(stages) == [0, 1, 2]
    map_, binary, reduce_ = stages[0], stages[1], stages[2]
    assert map_.methods == ("map",) and map_.images == ("lofn/busybox:latest",)
    # 8 partitions, partition 5 twice; durations 2.4 + 0.2 p, the failed attempt 1.1 s
    assert (map_.records, map_.containers, map_.failures, map_.retries,
            map_.cache_hits) == (9, 9, 1, 1, 0)
    durations = sorted([2.4 + 0.2 * p for p in range(8)] + [1.1])
    assert map_.median_seconds == pytest.approx(durations[4])
    assert map_.slowest_seconds == pytest.approx(2.4 + 0.2 * 7)
    assert map_.peak_memory_bytes == 17 * 2**20  # partition 7; partition 6 (reuse) has none
    assert binary.methods == ("map_binary",) and binary.images == ("lofn/bwa:0.7.17",)
    assert (binary.containers, binary.failures, binary.retries) == (5, 1, 1)
    assert binary.median_seconds == pytest.approx(4.0)  # 3, 4, 4 (OOM), 5, 6
    assert binary.slowest_seconds == pytest.approx(6.0)
    assert binary.peak_memory_bytes == 700 * 2**20
    # the cache hit is no container: 1 of 2 records, and not in the seconds
    assert (reduce_.records, reduce_.containers, reduce_.cache_hits) == (2, 1, 1)
    assert reduce_.median_seconds == reduce_.slowest_seconds == pytest.approx(1.5)


def test_stage_of_cache_hits_only_and_no_memory_figures():
    stage, = stage_summaries([record(mode="cache", peak_memory_bytes=None),
                              record(mode="cache", partition=1, peak_memory_bytes=None)])
    assert (stage.containers, stage.cache_hits) == (0, 2)
    assert stage.median_seconds is stage.slowest_seconds is stage.peak_memory_bytes is None


def test_stages_of_two_applications_stay_apart():
    stages = stage_summaries([record(), record(app="app-2", start=T0 + 1, end=T0 + 3)])
    assert [(s.app, s.stage, s.containers) for s in stages] == [(APP, 0, 1), ("app-2", 0, 1)]
    page = render_report([record(), record(app="app-2", start=T0 + 1, end=T0 + 3)])
    assert f"{APP} stage 0" in page and "app-2 stage 0" in page


@pytest.mark.parametrize("count, text", [(None, "\u2014"), (0, "0 B"), (1023, "1023 B"),
                                         (1536, "1.5 KiB"), (230 * 2**20, "230 MiB"),
                                         (int(1.25 * 2**30), "1.25 GiB"), (2**50, "1.02e+03 TiB")])
def test_human_bytes(count, text):
    assert human_bytes(count) == text


@pytest.mark.parametrize("value, text", [(None, "\u2014"), (0.42, "0.42 s"), (12.34, "12.3 s"),
                                         (245, "4:05"), (3723, "1:02:03")])
def test_human_seconds(value, text):
    assert human_seconds(value) == text


# ---------------------------------------------------------------------------
# the page

def table_row(page: str, table: str, stage: int) -> list[str]:
    body = page.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    row = body.split(f'data-stage="{stage}">', 1)[1].split("</tr>", 1)[0]
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_page_shows_the_stage_table_and_totals():
    page = render_report(sample_trace())
    assert table_row(page, "stages", 0) == [
        "stage 0", "map", "lofn/busybox:latest",
        "sort /shared/input.txt &gt; /shared/output.txt",
        "9", "3.00 s", "3.80 s", "1", "1", "0", "17 MiB"]
    assert table_row(page, "stages", 2)[4:] == ["1", "1.50 s", "1.50 s", "0", "0", "1", "12 MiB"]
    assert f"<title>lofn report: {APP}</title>" in page
    totals = dict(re.findall(r'<dd class="total" data-name="([^"]+)">([^<]*)</dd>', page))
    assert totals["hosts"] == "2 (node-a, node-b), 4 Python workers"
    assert totals["wall time"] == "20.6 s"
    assert totals["containers"] == "15 (and 1 result from the cache)"
    assert totals["failures"] == "2 failed attempts"


def test_page_has_one_bar_per_record_and_marks_failures():
    records = sample_trace()
    page = render_report(records)
    assert page.count('<g class="bar') == len(records)
    assert page.count('<g class="bar failed"') == 2
    assert page.count('<rect class="failed-mark"') == 2
    assert page.count("data-partition=\"5\" data-attempt=\"0\" data-status=\"failed\"") == 1
    assert page.count('class="failure"') == 2
    assert "retried: a later attempt succeeded" in page


def test_memory_limits_from_resources_are_shown_beside_the_peak():
    limits = {"cpus": 1, "memory_bytes": 100 * 2**20, "gpus": None}
    older = record(partition=2)
    del older["limits"]  # written before the field was added
    page = render_report([
        failed(oom=True, exit_code=137, limits=limits, error="OutOfMemory: killed"),
        record(attempt=1, start=T0 + 2, end=T0 + 3, limits={**limits,
                                                           "memory_bytes": 300 * 2**20}),
        record(partition=1, limits={"memory_bytes": "lots"}),  # not lofn's: no limit shown
        older])
    assert "exit code 137, out of memory (limit 100 MiB); retried" in page
    # the bars' tooltips and the slowest partitions' table
    assert sorted(re.findall(r"peak memory [^<\n]*", page)) == [
        "peak memory 12 MiB", "peak memory 12 MiB", "peak memory 12 MiB of 100 MiB",
        "peak memory 12 MiB of 300 MiB"]
    slowest = page.split('<table id="slowest">', 1)[1].split("</table>", 1)[0]
    assert sorted(re.findall(r'<td class="n">(12 MiB[^<]*)</td>', slowest)) == [
        "12 MiB", "12 MiB", "12 MiB of 100 MiB", "12 MiB of 300 MiB"]


def test_cancelled_attempt_is_drawn_dashed_and_is_no_failure():
    records = [record(), record(partition=1, status="cancelled", exit_code=None,
                                start=T0 + 0.5, end=T0 + 0.9)]
    assert [r["status"] for r in parse_trace([("t.jsonl", lines(*records))])] == [
        "ok", "cancelled"]
    page = render_report(records)
    assert page.count('<g class="bar cancelled"') == page.count('class="cancelled-mark"') == 1
    assert "0.40 s, fresh, CANCELLED" in page
    assert "0 failed attempts, 1 cancelled" in page
    assert stage_summaries(records)[0].failures == 0
    assert 'class="failure"' not in page


def test_page_is_self_contained():
    page = render_report(sample_trace())
    assert not re.search(r"(?:src|href)\s*=", page)
    assert "<script" not in page.lower()
    assert "url(" not in page.replace("url(#hatch)", "")
    assert re.findall(r"https?://[^\s\"']*", page) == ["http://www.w3.org/2000/svg"]
    assert "default-src 'none'" in page


def test_everything_from_the_trace_is_escaped():
    hostile = "<script>alert(1)</script>\"'&"
    records = [failed(image=hostile, command=hostile, host=hostile, app=hostile,
                      method=hostile, error=hostile, meter=hostile, lofn_version=hostile),
               record(partition=1, start=T0 + 2, end=T0 + 3)]
    page = render_report(records, title=hostile)
    assert "<script" not in page
    assert SCRIPT_TAIL not in page
    assert ("bwa: fatal: &lt;script&gt;alert(&#x27;tail&#x27;)&lt;/script&gt; &amp; "
            "&quot;quotes&quot;") in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;" in page
    assert "&lt;b&gt;partition&lt;/b&gt;" in render_report([failed()])


def test_timeline_svg_alone_has_a_bar_per_record_and_its_legend():
    records = sample_trace()
    svg = timeline_svg(records)
    root = ET.fromstring(svg)  # one well-formed element, nothing around it
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert root.get("font-family") and root.get("font-size")  # no style sheet needed
    bars = [g for g in root.iter(f"{ns}g") if "bar" in g.get("class", "").split()]
    assert len(bars) == len(records)
    assert sum("failed" in g.get("class", "") for g in bars) == 2
    legend = ["".join(g.itertext()) for g in root.iter(f"{ns}g")
              if g.get("class") == "legend-item"]
    assert legend == ["stage 0 (map)", "stage 1 (map_binary)", "stage 2 (reduce)",
                      "failed attempt (\u2715)"]
    # the same bars as on the page, without the page's wrapper and ids
    page = render_report(records)
    assert re.findall(r'<g class="bar[^"]*" [^>]*>', svg) == re.findall(
        r'<g class="bar[^"]*" [^>]*>', page)
    assert "<div" not in svg and 'id="timeline"' not in svg


def test_timeline_svg_escapes_the_trace_and_needs_a_record():
    hostile = "<script>alert(1)</script>\"'&"
    svg = timeline_svg([failed(method=hostile, host=hostile, app=hostile, error=hostile)])
    ET.fromstring(svg)
    assert "<script" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;" in svg
    with pytest.raises(ValueError, match="at least one record"):
        timeline_svg([])


def test_control_characters_and_lone_surrogates_are_shown_not_written(tmp_path):
    tail = "\x1b[31mred\x1b[0m\x00 and \ud800\n"
    path = tmp_path / "r.html"
    write_report([failed(stderr_tail=tail)], path)
    page = path.read_text(encoding="utf-8")
    assert "\\x1b[31mred\\x1b[0m\\x00 and \\ud800" in page


def test_write_report_replaces_the_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old")
    write_report(sample_trace(), path, title="My run")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert "<h1>My run</h1>" in path.read_text()

    def broken(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lofn.report.os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        write_report(sample_trace(), path, title="New")
    assert "<h1>My run</h1>" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# ---------------------------------------------------------------------------
# lofn report

def test_cli_writes_the_report_and_says_where(trace_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli.main(["report", str(trace_dir), "-o", str(out), "--title", "run 7"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"lofn: report of 16 trace records written to {out}\n"
    assert "<h1>run 7</h1>" in out.read_text()


def test_cli_report_to_stdout(trace_dir, capsys):
    assert cli.main(["report", str(trace_dir), "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("<!DOCTYPE html>") and captured.err == ""


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope", "cannot read the trace: {d}/nope: no such file or directory"),
    (lambda d: (d / "t.jsonl").write_text("{\n") and d / "t.jsonl",
     "cannot read the trace: {d}/t.jsonl, line 1: not JSON"),
])
def test_cli_unreadable_trace_is_one_line(tmp_path, capsys, make, message):
    out = tmp_path / "report.html"
    assert cli.main(["report", str(make(tmp_path)), "-o", str(out)]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("lofn: error: " + message.format(d=tmp_path))
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not out.exists()


def test_cli_output_in_missing_directory(trace_dir, tmp_path, capsys):
    assert cli.main(["report", str(trace_dir), "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert capsys.readouterr().err == (f"lofn: error: output directory "
                                       f"'{tmp_path / 'no'}' does not exist\n")


def test_cli_unwritable_output(trace_dir, tmp_path, capsys, monkeypatch):
    def refuse(records, path, title=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lofn.report, "write_report", refuse)
    assert cli.main(["report", str(trace_dir), "-o", str(tmp_path / "r.html")]) == 1
    assert capsys.readouterr().err == (f"lofn: error: cannot write '{tmp_path / 'r.html'}': "
                                       "Permission denied\n")


def test_cli_report_needs_output(trace_dir, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", str(trace_dir)])
    assert exited.value.code == 2
    assert "the following arguments are required: -o/--output" in capsys.readouterr().err
