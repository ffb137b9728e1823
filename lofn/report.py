"""A report of a lofn trace: one self-contained HTML page.

With tracing on, every container attempt writes one JSON record (one line)
to a ``*.jsonl`` file in the trace directory. :func:`load_trace` reads such
a directory (or one ``.jsonl`` file, for instance the files concatenated)
and checks every record; :func:`write_report` turns the records into one
HTML file with a timeline of the containers per host and worker, a table
per stage, the slowest partitions and every failed attempt;
:func:`timeline_svg` gives the timeline alone, to show in a notebook. The page is
rendered here, in Python, as static HTML and SVG: no script, no style sheet
or font from elsewhere, nothing fetched; its Content-Security-Policy
forbids all of that, and everything taken from the trace is escaped::

    from lofn.report import load_trace, write_report

    write_report(load_trace("/tmp/trace"), "report.html")

The command line does the same: ``lofn report /tmp/trace -o report.html``.

Exceptions::

    LofnError
     +-- TraceError (ValueError)    a trace that is missing, empty, corrupt or not lofn's
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import secrets
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lofn.errors import HdfsFailure, HdfsUnavailable, LofnError
from lofn.hdfs_handler import HdfsConfig, resolve

__all__ = ["SCHEMA", "TraceError", "StageSummary", "load_trace", "parse_trace",
           "read_local", "stage_summaries", "render_report", "write_report", "timeline_svg"]

#: The ``schema`` of every record this module reads.
SCHEMA = "lofn-trace/1"

_INT = (int,)
_NUMBER = (int, float)
_STR = (str,)
_NONE = (type(None),)

#: Every field a record must have, and the types its value may have (a bool is no number).
FIELDS: dict[str, tuple[type, ...]] = {
    "schema": _STR, "app": _STR, "stage": _INT, "partition": _INT, "attempt": _INT,
    "host": _STR, "worker": _INT, "method": _STR, "mode": _STR,
    "image": _STR, "image_id": _STR + _NONE, "command": _STR, "lofn_version": _STR,
    "start": _NUMBER, "end": _NUMBER, "status": _STR, "error": _STR + _NONE,
    "exit_code": _INT + _NONE, "oom": (bool,), "timeout": (bool,),
    "peak_memory_bytes": _INT + _NONE, "cpu_seconds": _NUMBER + _NONE, "meter": _STR,
    "bytes_in": _INT + _NONE, "bytes_out": _INT + _NONE, "stderr_tail": _STR + _NONE,
}
_YEAR_5000 = 95_617_584_000  # seconds: a time in milliseconds is refused
#: The fields whose value is one of a few words.
#: ``cancelled``: the task was cancelled, or its stream cut short, while the container ran.
CHOICES = {"mode": ("fresh", "reuse", "cache"), "status": ("ok", "failed", "cancelled")}


class TraceError(LofnError, ValueError):
    """A trace that cannot be read: missing, empty, corrupt, or not a lofn trace.

    Attributes:
        source: the file (or directory) at fault.
        line: the line number in ``source`` (1 is the first), or ``None``.
    """

    def __init__(self, source: str, problem: str, line: int | None = None) -> None:
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line


# ---------------------------------------------------------------------------
# reading

def read_local(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """The ``(name, text)`` of each trace file at ``path``: a ``.jsonl`` file or a directory.

    A directory gives its ``*.jsonl`` files sorted by name (other files are
    left alone). Another store (HDFS) can give the same pairs to
    :func:`parse_trace`.

    Raises:
        TraceError: ``path`` is missing, a directory without a ``*.jsonl``
            file, unreadable, or a file that is not UTF-8 text.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(entry for entry in path.glob("*.jsonl") if entry.is_file())
        if not files:
            raise TraceError(str(path), "no *.jsonl file in this directory: not a lofn trace "
                                        "directory, or no container ran with tracing on")
    elif path.exists():
        files = [path]
    else:
        raise TraceError(str(path), "no such file or directory")
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise TraceError(str(file), f"cannot read: {exc.strerror or exc}") from exc
        try:
            yield str(file), data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise TraceError(str(file), "not UTF-8 text (a binary file?): expected one "
                                        f"{SCHEMA} JSON record per line", line) from exc


def read_hdfs(location: str, config: HdfsConfig) -> Iterator[tuple[str, str]]:
    """:func:`read_local` for a trace directory on HDFS (``hdfs:///path``), through WebHDFS."""
    root = location[len("hdfs://"):].rstrip("/") or "/"
    try:
        status = config.call(f"look up {location!r}", "status", root, strict=False)
        if status is None:
            raise TraceError(location, "no such file or directory on HDFS")
        if status["type"] == "DIRECTORY":
            names = sorted(name for name in config.call(f"list {location!r}", "list", root)
                           if name.endswith(".jsonl") and not name.startswith("."))
            if not names:
                raise TraceError(location, "no *.jsonl file in this directory: not a lofn "
                                           "trace directory, or no container ran with tracing on")
            paths = [f"{root.rstrip('/')}/{name}" for name in names]
        else:
            paths = [root]
        for path in paths:
            with config.call(f"read {path!r}", "read", path) as handle:
                data = handle.read()
            try:
                yield f"hdfs://{path}", data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = data.count(b"\n", 0, exc.start) + 1
                raise TraceError(f"hdfs://{path}", "not UTF-8 text (a binary file?): expected "
                                                   f"one {SCHEMA} JSON record per line",
                                 line) from exc
    except (HdfsFailure, HdfsUnavailable) as exc:
        raise TraceError(location, str(exc)) from exc


def parse_trace(sources: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """The records in ``sources`` (``(name, text)`` pairs), checked, sorted by start.

    Raises:
        TraceError: a line is not a JSON object of schema ``lofn-trace/1`` with
            every field of the right type, or there is no record at all.
    """
    records: list[dict[str, Any]] = []
    names = []
    for name, text in sources:
        names.append(name)
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if line.strip():
                complete = number < len(lines)  # the last line has no newline after it
                records.append(_record(name, number, line, complete))
    if not records:
        where = names[0] if len(names) == 1 else f"{len(names)} trace files"
        raise TraceError(where or "trace", "no record: the trace is empty")
    records.sort(key=lambda record: record["start"])
    return records


def load_trace(path: str | os.PathLike[str],
               hdfs: HdfsConfig | None = None) -> list[dict[str, Any]]:
    """The records of the trace at ``path`` (a ``.jsonl`` file or a directory of them).

    ``path`` may be on HDFS (``hdfs:///path``): it is read through WebHDFS
    with ``hdfs``, or the configuration :func:`lofn.hdfs_handler.resolve`
    finds (``HADOOP_CONF_DIR``, an HdfsCLI alias). Every record is checked
    (every field of the schema, of the right type); they are returned sorted
    by their ``start``.

    Raises:
        TraceError: the trace is missing, empty, not lofn's, or corrupt; the
            message names the file and the line.
    """
    if str(path).startswith("hdfs:"):
        if not str(path).startswith("hdfs:///"):
            raise TraceError(str(path), "an HDFS trace is given as hdfs:///path (the namenode "
                                        "comes from the configuration or --hdfs-url)")
        try:
            config = hdfs if hdfs is not None else resolve()
        except LofnError as exc:
            raise TraceError(str(path), str(exc)) from exc
        return parse_trace(read_hdfs(str(path), config))
    return parse_trace(read_local(path))


def _record(name: str, number: int, line: str, complete: bool) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        cut = "" if complete else " (cut short: the file ends in the middle of a record)"
        raise TraceError(name, f"not JSON{cut}: expected one {SCHEMA} record (a JSON "
                               "object) per line", number) from None
    if not isinstance(record, dict):
        raise TraceError(name, f"a JSON {type(record).__name__}, expected a {SCHEMA} "
                               "record (a JSON object)", number)
    schema = record.get("schema")
    if schema != SCHEMA:
        found = f"schema {schema!r}" if "schema" in record else "no 'schema' field"
        raise TraceError(name, f"{found}: not a {SCHEMA} record", number)
    for field, types in FIELDS.items():
        if field not in record:
            raise TraceError(name, f"no {field!r} field in a {SCHEMA} record", number)
        value = record[field]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise TraceError(name, f"{field!r} is {json.dumps(value)[:60]}, expected {wanted}",
                             number)
        if field in CHOICES and value not in CHOICES[field]:
            raise TraceError(name, f"{field!r} is {value!r}, expected one of "
                                   f"{', '.join(CHOICES[field])}", number)
    for field in ("start", "end"):
        if not 0 <= record[field] < _YEAR_5000:  # NaN and infinities fail too
            raise TraceError(name, f"{field!r} is {json.dumps(record[field])}, expected a Unix "
                                   "time in seconds", number)
    return record


# ---------------------------------------------------------------------------
# numbers

def seconds(record: dict[str, Any]) -> float:
    """How long the attempt took (0 if its host's clock went back)."""
    return max(0.0, float(record["end"]) - float(record["start"]))


def ran_container(record: dict[str, Any]) -> bool:
    """False for a result restored from lofn's cache, where no container ran."""
    return bool(record["mode"] != "cache")


@dataclass(frozen=True)
class StageSummary:
    """The numbers of one stage of one application, as the report's stage table shows them.

    ``containers``, ``median_seconds`` and ``slowest_seconds`` count the
    attempts that ran a container (cache hits apart); the other counts are of
    all records.
    """

    app: str
    stage: int
    methods: tuple[str, ...]
    images: tuple[str, ...]
    commands: tuple[str, ...]
    records: int
    containers: int
    median_seconds: float | None
    slowest_seconds: float | None
    failures: int
    retries: int
    cache_hits: int
    peak_memory_bytes: int | None


def stage_summaries(records: list[dict[str, Any]]) -> list[StageSummary]:
    """One :class:`StageSummary` per (app, stage), in the order the stages started."""
    stages: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r["start"]):
        stages.setdefault((record["app"], record["stage"]), []).append(record)
    summaries = []
    for (app, stage), group in stages.items():
        ran = [seconds(r) for r in group if ran_container(r)]
        memory = [r["peak_memory_bytes"] for r in group if r["peak_memory_bytes"] is not None]
        summaries.append(StageSummary(
            app=app, stage=stage,
            methods=tuple(dict.fromkeys(r["method"] for r in group)),
            images=tuple(dict.fromkeys(r["image"] for r in group)),
            commands=tuple(dict.fromkeys(r["command"] for r in group)),
            records=len(group), containers=len(ran),
            median_seconds=statistics.median(ran) if ran else None,
            slowest_seconds=max(ran) if ran else None,
            failures=sum(r["status"] == "failed" for r in group),
            retries=sum(r["attempt"] > 0 for r in group),
            cache_hits=sum(r["mode"] == "cache" for r in group),
            peak_memory_bytes=max(memory) if memory else None))
    return summaries


# ---------------------------------------------------------------------------
# text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(value: object) -> str:
    """``value`` as HTML text or attribute value: escaped, control characters as ``\\xNN``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", str(value))
    return html.escape(text, quote=True)


def human_bytes(count: int | None) -> str:
    """``512 B``, ``1.5 KiB``, ``230 MiB``, ``1.2 GiB``; ``—`` for unknown."""
    if count is None:
        return "\u2014"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_seconds(value: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``4:05``, ``1:02:03``; ``—`` for unknown."""
    if value is None:
        return "\u2014"
    return f"{value:.2f} s" if value < 10 else elapsed(value)


def elapsed(seconds: float) -> str:
    """``12.3 s``, ``4:05`` or ``1:02:03``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, whole = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{whole:02d}" if hours else f"{minutes}:{whole:02d}"


def plural(count: int, noun: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------------------
# the page

#: Stage colours (Okabe-Ito and Tableau hues), used in turn.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
           "#9c755f", "#bab0ac", "#56b4e9", "#009e73", "#cc79a7", "#0072b2")

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; max-width: 1240px; color: #222;
       background: #fff; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
dl.totals { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
dl.totals dt { color: #555; } dl.totals dd { margin: 0; }
code, pre { font: 12px/1.35 ui-monospace, monospace; }
td code { display: inline-block; max-width: 200px; overflow: hidden; text-overflow: ellipsis;
          white-space: nowrap; vertical-align: bottom; }
pre { background: #f7f7f7; border: 1px solid #e2e2e2; padding: 6px 8px; margin: 4px 0 0;
      max-height: 220px; overflow: auto; white-space: pre-wrap; }
.scroll { overflow-x: auto; }
.legend span { display: inline-block; margin: 0 16px 4px 0; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 5px;
            vertical-align: -1px; border-radius: 2px; }
.legend i.failed { background: repeating-linear-gradient(45deg, #fff 0 2px, #d62728 2px 4px);
                   outline: 2px solid #d62728; outline-offset: -2px; }
.legend i.cancelled { background: #ddd; outline: 2px dashed #555; outline-offset: -2px; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .bar:hover rect { opacity: 0.75; }
.failed-row { color: #b00; } td.bad { color: #b00; font-weight: 700; }
td.nowrap { white-space: nowrap; }
.muted { color: #777; }
.failure { border-left: 3px solid #d62728; padding: 4px 0 8px 10px; margin: 10px 0; }
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_LEFT, _WIDTH, _ROW, _TOP = 190, 900, 22, 26


def render_report(records: list[dict[str, Any]], title: str | None = None) -> str:
    """The HTML page of ``records`` (as :func:`load_trace` returns them), as a string."""
    if not records:
        raise ValueError("a report needs at least one record")
    records = sorted(records, key=lambda r: r["start"])
    summaries = stage_summaries(records)
    apps = list(dict.fromkeys(r["app"] for r in records))
    colours = {(s.app, s.stage): PALETTE[i % len(PALETTE)] for i, s in enumerate(summaries)}
    if title is None:
        title = "lofn report: " + ", ".join(apps)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f'<meta name="generator" content="lofn {_text(_lofn_version())}">',
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        _totals(records, apps),
        '<h2 id="timeline-title">Timeline</h2>',
        _legend(summaries, colours, len(apps) > 1,
                any(r["status"] == "cancelled" for r in records)),
        _timeline(records, colours),
        "<h2>Stages</h2>",
        _stage_table(summaries, len(apps) > 1),
        "<h2>Slowest partitions</h2>",
        _slowest(records),
        "<h2>Failed attempts</h2>",
        _failures(records),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(records: list[dict[str, Any]], output_path: str | os.PathLike[str],
                 title: str | None = None) -> None:
    """Write the HTML report of ``records`` to ``output_path``, replacing it whole.

    Args:
        records: the trace's records, as :func:`load_trace` returns them.
        output_path: the HTML file to write; it is written next to its place
            and renamed, so a failed write leaves no half page.
        title: the page's title (default: ``lofn report:`` and the app ids).

    Raises:
        OSError: the file cannot be written.
    """
    page = render_report(records, title).encode("utf-8")
    path = Path(output_path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # created as open() would create the page itself: 0666 less the umask
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as file:
            file.write(page)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _lofn_version() -> str:
    from lofn import __version__

    return __version__


def _totals(records: list[dict[str, Any]], apps: list[str]) -> str:
    first = min(r["start"] for r in records)
    wall = max(r["end"] for r in records) - first
    hosts = list(dict.fromkeys(sorted(r["host"] for r in records)))
    workers = {(r["host"], r["worker"]) for r in records}
    failures = sum(r["status"] == "failed" for r in records)
    cancelled = sum(r["status"] == "cancelled" for r in records)
    containers = sum(ran_container(r) for r in records)
    cache = len(records) - containers
    versions = sorted({r["lofn_version"] for r in records})
    rows = [
        ("application" + ("s" if len(apps) > 1 else ""), ", ".join(apps)),
        ("hosts", f"{len(hosts)} ({', '.join(hosts)}), {len(workers)} Python workers"),
        ("started", _utc(first)),
        ("wall time", human_seconds(wall)),
        ("containers", f"{containers}" + (f" (and {plural(cache, 'result')} from the cache)"
                                          if cache else "")),
        ("failures", plural(failures, "failed attempt")
         + (f", {cancelled} cancelled" if cancelled else "")),
        ("lofn", ", ".join(versions)),
    ]
    items = "".join(f'<dt>{_text(k)}</dt><dd class="total" data-name="{_text(k)}">{_text(v)}'
                    "</dd>" for k, v in rows)
    return f'<dl class="totals">{items}</dl>'


def _stage_name(app: str, stage: int, several_apps: bool) -> str:
    return f"{app} stage {stage}" if several_apps else f"stage {stage}"


def _legend(summaries: list[StageSummary], colours: dict[tuple[str, int], str],
            several_apps: bool, cancelled: bool) -> str:
    items = [f'<span><i style="background:{colours[(s.app, s.stage)]}"></i>'
             f"{_text(_stage_name(s.app, s.stage, several_apps))} "
             f"({_text(', '.join(s.methods))})</span>" for s in summaries]
    items.append('<span><i class="failed"></i>failed attempt (\u2715)</span>')
    if cancelled:
        items.append('<span><i class="cancelled"></i>cancelled</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def _ticks(span: float) -> list[float]:
    """Round times from 0 to ``span``, about eight of them."""
    raw = span / 8 if span > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(span / step) + 1)]


def timeline_svg(records: list[dict[str, Any]]) -> str:
    """The report's timeline alone, as one ``<svg>`` element with its legend, for a notebook.

    One row per host and Python worker, one bar per record (each with a
    tooltip), coloured by stage as on the page of :func:`render_report`;
    the legend is drawn under the rows, and the fonts are set on the element
    itself, so it needs no style sheet. In Jupyter::

        from IPython.display import SVG, display

        display(SVG(timeline_svg(load_trace("runs/trace"))))

    Everything taken from the trace is escaped, as on the page.

    Raises:
        ValueError: ``records`` is empty.
    """
    if not records:
        raise ValueError("a timeline needs at least one record")
    records = sorted(records, key=lambda r: r["start"])
    summaries = stage_summaries(records)
    colours = {(s.app, s.stage): PALETTE[i % len(PALETTE)] for i, s in enumerate(summaries)}
    several_apps = len({r["app"] for r in records}) > 1
    legend = [(colours[(s.app, s.stage)],
               f"{_stage_name(s.app, s.stage, several_apps)} ({', '.join(s.methods)})")
              for s in summaries]
    if any(r["status"] == "failed" for r in records):
        legend.append(("url(#hatch)", "failed attempt (\u2715)"))
    if any(r["status"] == "cancelled" for r in records):
        legend.append(("none", "cancelled"))
    return _timeline(records, colours, legend)


_LEGEND_LINE = 16


def _timeline(records: list[dict[str, Any]], colours: dict[tuple[str, int], str],
              legend: list[tuple[str, str]] | None = None) -> str:
    """The timeline's SVG: in the page's ``<div>``, or alone with ``legend`` under the rows."""
    first = min(r["start"] for r in records)
    span = max(max(r["end"] for r in records) - first, 1e-3)
    rows = sorted({(r["host"], r["worker"]) for r in records})
    row_of = {row: i for i, row in enumerate(rows)}
    height = _TOP + _ROW * len(rows) + 6
    bottom = height
    if legend is not None:
        height += 8 + _LEGEND_LINE * len(legend)
    width = _LEFT + _WIDTH + 20
    scale = _WIDTH / span
    if legend is None:
        head = ('<div class="scroll"><svg id="timeline" xmlns="http://www.w3.org/2000/svg" '
                f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
                'aria-labelledby="timeline-title">')
    else:
        head = ('<svg class="lofn-timeline" xmlns="http://www.w3.org/2000/svg" '
                f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
                f'aria-label="lofn timeline of {plural(len(records), "container attempt")}" '
                'font-family="system-ui, sans-serif" font-size="11" fill="#333">')
    out = [head,
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff" '
           'fill-opacity="0.35"/><line x1="0" y1="0" x2="0" y2="6" stroke="#d62728" '
           'stroke-width="3"/></pattern></defs>']
    for tick in _ticks(span):
        x = _LEFT + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{bottom - 6}" '
                   'stroke="#e5e5e5"/>'
                   f'<text class="tick" x="{x:.1f}" y="{_TOP - 10}" text-anchor="middle">'
                   f"{_text(_tick_label(tick, span))}</text>")
    for (host, worker), index in row_of.items():
        y = _TOP + index * _ROW
        label = f"{host} / worker {worker}"
        shown = label if len(label) <= 30 else "\u2026" + label[-29:]
        out.append(f'<text class="row-label" x="{_LEFT - 8}" y="{y + 15}" text-anchor="end">'
                   f"<title>{_text(label)}</title>{_text(shown)}</text>")
        if index % 2:
            out.append(f'<rect x="{_LEFT}" y="{y}" width="{_WIDTH}" height="{_ROW}" '
                       'fill="#000" fill-opacity="0.03"/>')
    for record in records:
        out.append(_bar(record, first, scale, _TOP + row_of[(record["host"], record["worker"])]
                        * _ROW, colours[(record["app"], record["stage"])]))
    if legend is None:
        out.append("</svg></div>")
        return "".join(out)
    for index, (fill, label) in enumerate(legend):
        y = bottom + 8 + index * _LEGEND_LINE
        stroke = ({"url(#hatch)": ' stroke="#d62728" stroke-width="2"',
                   "none": ' stroke="#555" stroke-width="1.5" stroke-dasharray="3 2"'}
                  .get(fill, ""))
        out.append(f'<g class="legend-item"><rect x="{_LEFT}" y="{y}" width="12" height="12" '
                   f'rx="2" fill="{fill}"{stroke}/><text x="{_LEFT + 18}" y="{y + 10}">'
                   f"{_text(label)}</text></g>")
    out.append("</svg>")
    return "".join(out)


def _tick_label(tick: float, span: float) -> str:
    if span >= 120:
        return human_seconds(tick) if tick >= 60 else f"{tick:g} s"
    return f"{tick:g} s"


def _bar(record: dict[str, Any], first: float, scale: float, y: int, colour: str) -> str:
    x = _LEFT + (record["start"] - first) * scale
    width = max(seconds(record) * scale, 2.0)
    failed = record["status"] == "failed"
    tip = [f"stage {record['stage']} ({record['method']}), partition {record['partition']}, "
           f"attempt {record['attempt']}",
           f"{human_seconds(seconds(record))}, {record['mode']}"
           + ("" if record["status"] == "ok" else f", {record['status'].upper()}"),
           f"image {record['image']}",
           f"exit code {record['exit_code'] if record['exit_code'] is not None else '—'}"
           + (", out of memory" if record["oom"] else "")
           + (", timed out" if record["timeout"] else ""),
           f"peak memory {_memory(record)}"]
    if failed and record["error"]:
        tip.append(record["error"])
    classes = "bar" if record["status"] == "ok" else f"bar {record['status']}"
    data = (f'data-stage="{record["stage"]}" data-partition="{record["partition"]}" '
            f'data-attempt="{record["attempt"]}" data-status="{_text(record["status"])}" '
            f'data-mode="{_text(record["mode"])}"')
    parts = [f'<g class="{classes}" {data}><title>{_text(chr(10).join(tip))}</title>',
             f'<rect x="{x:.2f}" y="{y + 3}" width="{width:.2f}" height="{_ROW - 6}" '
             f'fill="{colour}"' + (' fill-opacity="0.45"' if record["mode"] == "cache" else "")
             + "/>"]
    if record["status"] == "cancelled":
        parts.append(f'<rect class="cancelled-mark" x="{x:.2f}" y="{y + 3}" width="{width:.2f}" '
                     f'height="{_ROW - 6}" fill="none" stroke="#555" stroke-width="1.5" '
                     'stroke-dasharray="3 2"/>')
    if failed:
        parts.append(f'<rect class="failed-mark" x="{x:.2f}" y="{y + 3}" width="{width:.2f}" '
                     f'height="{_ROW - 6}" fill="url(#hatch)" stroke="#d62728" '
                     'stroke-width="2"/>'
                     f'<text class="failed-mark" x="{x + width / 2:.2f}" y="{y + 15}" '
                     'text-anchor="middle" style="fill:#d62728;stroke:#fff;stroke-width:3px;'
                     'paint-order:stroke;font-size:13px;font-weight:700">\u2715</text>')
    parts.append("</g>")
    return "".join(parts)


def _memory_limit(record: dict[str, Any]) -> int | None:
    """The memory limit ``resources`` gave the container (the optional ``limits`` field)."""
    limits = record.get("limits")
    memory = limits.get("memory_bytes") if isinstance(limits, dict) else None
    return memory if isinstance(memory, int) and not isinstance(memory, bool) else None


def _memory(record: dict[str, Any]) -> str:
    """Peak memory, and the limit out of ``resources`` if there was one."""
    limit = _memory_limit(record)
    peak = human_bytes(record["peak_memory_bytes"])
    return peak if limit is None else f"{peak} of {human_bytes(limit)}"


def _stage_table(summaries: list[StageSummary], several_apps: bool) -> str:
    head = ("<tr><th>stage</th><th>method</th><th>image</th><th>command</th>"
            '<th class="n">containers</th><th class="n">median</th><th class="n">slowest</th>'
            '<th class="n">failures</th><th class="n">retries</th>'
            '<th class="n">cache hits</th><th class="n">peak memory</th></tr>')
    rows = []
    for s in summaries:
        command = "; ".join(s.commands)
        rows.append(
            f'<tr class="stage" data-stage="{s.stage}">'
            f'<td class="nowrap">{_text(_stage_name(s.app, s.stage, several_apps))}</td>'
            f"<td>{_text(', '.join(s.methods))}</td><td>{_text(', '.join(s.images))}</td>"
            f'<td><code title="{_text(command)}">{_text(command)}</code></td>'
            f'<td class="n">{s.containers}</td>'
            f'<td class="n">{human_seconds(s.median_seconds)}</td>'
            f'<td class="n">{human_seconds(s.slowest_seconds)}</td>'
            f'<td class="n{" bad" if s.failures else ""}">{s.failures}</td>'
            f'<td class="n">{s.retries}</td>'
            f'<td class="n">{s.cache_hits}</td>'
            f'<td class="n">{human_bytes(s.peak_memory_bytes)}</td></tr>')
    return f'<div class="scroll"><table id="stages">{head}{"".join(rows)}</table></div>'


def _slowest(records: list[dict[str, Any]], count: int = 10) -> str:
    ran = sorted((r for r in records if ran_container(r)), key=seconds, reverse=True)[:count]
    if not ran:
        return '<p class="muted">No container ran: every result came from the cache.</p>'
    head = ('<tr><th>stage</th><th class="n">partition</th><th class="n">attempt</th>'
            '<th class="n">seconds</th><th>status</th><th>host / worker</th>'
            '<th class="n">peak memory</th><th class="n">CPU</th><th class="n">in</th>'
            '<th class="n">out</th></tr>')
    rows = []
    for r in ran:
        cpu = "\u2014" if r["cpu_seconds"] is None else human_seconds(r["cpu_seconds"])
        rows.append(
            f'<tr class="{"failed-row" if r["status"] == "failed" else ""}">'
            f"<td>{r['stage']} ({_text(r['method'])})</td><td class=\"n\">{r['partition']}</td>"
            f'<td class="n">{r["attempt"]}</td><td class="n">{human_seconds(seconds(r))}</td>'
            f"<td>{_text(r['status'])}</td><td>{_text(r['host'])} / {r['worker']}</td>"
            f'<td class="n">{_memory(r)}</td><td class="n">{cpu}</td>'
            f'<td class="n">{human_bytes(r["bytes_in"])}</td>'
            f'<td class="n">{human_bytes(r["bytes_out"])}</td></tr>')
    return f'<div class="scroll"><table id="slowest">{head}{"".join(rows)}</table></div>'


def _failures(records: list[dict[str, Any]]) -> str:
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return '<p class="muted">None: every attempt succeeded.</p>'
    out = []
    for r in failed:
        later = [o for o in records if (o["app"], o["stage"], o["partition"])
                 == (r["app"], r["stage"], r["partition"]) and o["start"] > r["start"]]
        if any(o["status"] == "ok" for o in later):
            outcome = "retried: a later attempt succeeded"
        elif later:
            outcome = "retried: later attempts failed too"
        else:
            outcome = "not retried"
        flags = [f"exit code {r['exit_code']}" if r["exit_code"] is not None else "no exit code"]
        limit = _memory_limit(r)
        flags += [f"out of memory (limit {human_bytes(limit)})" if limit is not None
                  else "out of memory"] if r["oom"] else []
        flags += ["timed out"] if r["timeout"] else []
        tail = (f"<pre>{_text(r['stderr_tail'])}</pre>" if r["stderr_tail"]
                else '<p class="muted">no stderr</p>')
        out.append(
            f'<div class="failure" data-stage="{r["stage"]}" data-partition="{r["partition"]}">'
            f"<b>stage {r['stage']} ({_text(r['method'])}), partition {r['partition']}, "
            f"attempt {r['attempt']}</b> on {_text(r['host'])} / worker {r['worker']}, "
            f"{_text(_utc(r['start']))}, after {human_seconds(seconds(r))}: "
            f"{_text(', '.join(flags))}; {outcome}.<br>"
            f"<span>{_text(r['error'] or 'no error message')}</span>"
            f'<br><span class="muted">image {_text(r["image"])}; command '
            f"<code>{_text(r['command'])}</code></span>{tail}</div>")
    return "".join(out)
