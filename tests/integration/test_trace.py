"""The trace (``DockerPipe(trace=...)``, ``lofn map --trace``): one record per container attempt."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import lofn
from lofn.errors import InvalidArgument

TRACE_JOB = Path(__file__).parent / "jobs" / "trace_job.py"
MIB = 1 << 20


def _records(directory: Path) -> list[dict]:
    records = []
    for path in sorted(directory.iterdir()):
        assert path.suffix == ".jsonl" and not path.name.startswith("."), path
        lines = path.read_text().splitlines()
        assert len(lines) == 1
        records.append(json.loads(lines[0]))
    return sorted(records, key=lambda record: record["start"])


def _kernel_has_memory_peak() -> bool:
    """cgroup v1 always keeps a peak; v2 has ``memory.peak`` from Linux 5.19."""
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return True
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (5, 19)


@pytest.fixture(scope="module")
def traced(busybox, session_tmp, tmp_path_factory):
    """The trace job's output and its records."""
    base = tmp_path_factory.mktemp("trace")
    trace, state, cache = base / "trace", base / "state", base / "cache"
    state.mkdir()
    state.chmod(0o777)
    result = subprocess.run([sys.executable, str(TRACE_JOB), busybox, str(trace), str(state),
                             str(cache)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), _records(trace), trace


def test_every_container_attempt_has_a_record_with_what_ran(traced, busybox):
    job, records, _ = traced
    assert job["outputs"] == [["a", "big", "c", "d"], ["x", "y", "z"], ["p", "q"], ["r", "s"],
                              ["u", "v"], ["u", "v"], "MissingOutputError"]
    # 4 map partitions and the retry of the one that failed; 2 merges (3 blocks on 2
    # cores: 2 merged, 1 passed on, then the last merge); 2 streams; 2 in warm
    # containers; 2 run and 2 restored from the cache; 2 tries without an output
    methods = [(r["method"], r["mode"]) for r in records]
    assert methods.count(("map", "fresh")) == 5 + 2 + 2
    assert methods.count(("reduce", "fresh")) == 2
    assert methods.count(("pipe", "fresh")) == 2
    assert methods.count(("map", "reuse")) == 2
    assert methods.count(("map", "cache")) == 2
    assert len(records) == 17
    for record in records:
        assert record["schema"] == "lofn-trace/1"
        assert record["app"] == job["app"]
        assert record["host"] == socket.gethostname()
        assert record["image"] == busybox
        assert record["image_id"] == job["image_id"]
        assert record["lofn_version"] == lofn.__version__
        assert record["start"] <= record["end"]
        assert record["worker"] != os.getpid() and isinstance(record["worker"], int)
    # a map's partition sends its line, newline included, and gets it back
    sent = [r for r in records if r["method"] == "map" and r["status"] == "ok"
            and r["mode"] == "fresh"]
    assert all(r["bytes_in"] == r["bytes_out"] and r["bytes_in"] in (2, 4) for r in sent)
    assert all(r["bytes_in"] == r["bytes_out"] == 2 for r in records if r["method"] == "pipe")


def test_a_failed_attempt_and_its_retry(traced):
    _, records, _ = traced
    failed = [r for r in records if r["status"] != "ok" and r["command"] != "true"]
    assert len(failed) == 1
    failure = failed[0]
    assert failure["status"] == "failed" and failure["exit_code"] == 3
    assert failure["error"].startswith("DockerFailure: container exited with code 3")
    assert failure["stderr_tail"] == "first try fails\n"
    assert failure["oom"] is False and failure["timeout"] is False
    assert failure["attempt"] == 0 and failure["bytes_out"] is None
    retry = [r for r in records if (r["stage"], r["partition"]) ==
             (failure["stage"], failure["partition"]) and r is not failure]
    assert [(r["attempt"], r["status"], r["exit_code"]) for r in retry] == [(1, "ok", 0)]
    assert all(r["stderr_tail"] is None and r["error"] is None
               for r in records if r["status"] == "ok")


def test_peak_memory_and_cpu_time_come_from_the_cgroup(traced):
    _, records, _ = traced
    big = [r for r in records if r["method"] == "map" and r["mode"] == "fresh"
           and r["bytes_in"] == 4 and r["status"] == "ok"]
    assert len(big) == 1, big
    big = big[0]
    assert big["meter"].startswith("cgroup v"), big["meter"]
    assert big["cpu_seconds"] > 0.2  # the count to 1000000; far less in the others
    assert big["cpu_seconds"] <= (big["end"] - big["start"]) * 2  # 2 cores at most
    if _kernel_has_memory_peak():
        assert 64 * MIB <= big["peak_memory_bytes"] < 1024 * MIB
    small = [r for r in records if r["method"] == "reduce" and r["peak_memory_bytes"]]
    assert small and all(r["peak_memory_bytes"] < 64 * MIB for r in small)
    for record in records:
        if record["mode"] == "reuse":
            assert "reuse mode" in record["meter"] and record["cpu_seconds"] is not None
        if record["mode"] == "cache":
            assert record["exit_code"] is None and record["cpu_seconds"] is None


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_trace_location_that_cannot_be_written_fails_on_the_driver(sc, tmp_path, where):
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    (tmp_path / "file").write_text("not a directory")
    location = str(tmp_path / "file") + ("/trace" if where == "under a file" else "")
    with pytest.raises(InvalidArgument, match=f"trace {location!r} cannot be written"):
        DockerPipe(SparkConf(), trace=location)
    with pytest.raises(InvalidArgument, match="trace must be a directory path"):
        DockerPipe(SparkConf(), trace="hdfs://namenode/trace")


def test_a_relative_trace_location_is_the_drivers(sc, tmp_path, monkeypatch):
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    monkeypatch.chdir(tmp_path)
    pipe = DockerPipe(SparkConf(), trace="runs/trace")
    assert pipe.options.trace == str(tmp_path / "runs" / "trace")
    assert (tmp_path / "runs" / "trace").is_dir()
    assert list((tmp_path / "runs" / "trace").iterdir()) == []  # the probe is gone


def test_a_container_that_wrote_no_output_is_a_failed_attempt(traced):
    _, records, _ = traced
    tries = [r for r in records if r["command"] == "true"]
    assert [(r["attempt"], r["status"], r["exit_code"]) for r in tries] == [
        (0, "failed", 0), (1, "failed", 0)]
    assert all(r["error"].startswith("MissingOutputError: container exited 0 but did not "
                                     "write /shared/output.txt") for r in tries)


def test_the_command_line_refuses_a_trace_location_before_spark_starts(busybox, tmp_path,
                                                                       session_tmp):
    (tmp_path / "in.txt").write_text("a\n")
    (tmp_path / "taken").write_text("a file")
    result = subprocess.run(
        [sys.executable, "-m", "lofn", "map", "--master", "local[1]", "--image", busybox,
         "--command", "cp /shared/input.txt /shared/output.txt", "--trace", "taken/trace",
         "in.txt", "-o", "out.txt"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 2, result.stderr
    where = str(tmp_path / "taken" / "trace")
    assert result.stderr.startswith(f"lofn: error: trace {where!r} cannot be written: "
                                    "Not a directory"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.txt").exists()


def test_the_command_line_traces_its_containers(busybox, tmp_path, session_tmp):
    (tmp_path / "in.txt").write_text("".join(f"{i}\n" for i in range(30)))
    result = subprocess.run(
        [sys.executable, "-m", "lofn", "map", "--master", "local[2]", "--conf",
         "spark.ui.enabled=false", "--image", busybox, "-p", "3", "--trace", "runs/trace",
         "--command", "cp /shared/input.txt /shared/output.txt", "in.txt", "-o", "out.txt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path / "runs" / "trace")
    assert [(r["method"], r["mode"], r["status"]) for r in records] == [("map", "fresh", "ok")] * 3
    assert sorted(r["partition"] for r in records) == [0, 1, 2]
    assert sum(r["bytes_out"] for r in records) == len((tmp_path / "in.txt").read_bytes())


def test_the_report_of_a_real_trace_renders_in_a_browser(traced, tmp_path):
    from tests.browser import Browser, find_chromium
    from tests.conftest import require

    if find_chromium() is None:
        require("chromium", "no Chromium (run 'bash scripts/dev.sh setup' as root)")
    _, records, trace = traced
    page = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "lofn", "report", str(trace), "-o", str(page)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with Browser(width=1200, height=900) as browser:
        opened = browser.open(page.as_uri())
        assert opened.errors == [] and opened.requests == [page.as_uri()]
        bars = "document.querySelectorAll('#timeline g.bar')"
        assert browser.evaluate(f"{bars}.length") == len(records) == 17
        assert browser.evaluate(f"Array.from({bars}).filter(g => g.classList.contains("
                                "'failed')).length") == 3
        tails = browser.evaluate("Array.from(document.querySelectorAll('.failure pre'),"
                                 " p => p.textContent)")
        assert any("first try fails" in tail for tail in tails), tails
