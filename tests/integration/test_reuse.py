"""Reuse mode: partitions run by exec in one long-lived container per Python worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

JOB = Path(__file__).parent / "jobs" / "reuse_job.py"


def test_reuse_mode_same_results_isolated_partitions_nothing_left(busybox, session_tmp):
    result = subprocess.run([sys.executable, str(JOB), busybox], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["same_results"] and report["reduce_lines"] == 37  # w0 .. w36
    # never a file of another partition (output.txt is the listing's own redirection)
    assert report["listings"] == [["input.txt", "output.txt"]]
    # 16 partitions x 4 calls (+ merges) ran in a handful of containers: one per worker
    # and image/mounts, plus one new one after each discarded (failed) container
    assert 1 <= report["warm_containers"] <= 8
    assert report["failed"] == 1 and report["after_failure"] == 4000
    assert report["left_after_stop"] == 0 and report["left_dirs"] == []


RUNNER_JOB = Path(__file__).parent / "jobs" / "runner_job.py"


def test_the_runner_runs_commands_exactly_as_a_fresh_container_does(busybox, session_tmp):
    """Quotes, $, backslashes, newlines and non-ASCII text; user, environment, workdir and
    entrypoint; stdin, a spoofed answer, a failure's stderr tail, a timeout, a stopped runner."""
    result = subprocess.run([sys.executable, str(RUNNER_JOB), busybox], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for case in ("quoting", "context", "user", "entrypoint", "spoof", "fail"):
        assert report[f"{case}/reuse"] == report[f"{case}/fresh"], case
    assert report["quoting/reuse"]["lines"] == [
        "it's", "$HOME", "a\\b", "tab\tthere", "日本語 é", "%s %b \\c", '3 "q" back',
        "$NOT \\n 'x'"]
    uid, gid = str(os.getuid()), str(os.getgid())
    # the runner's own variables are not in the command's environment
    assert report["context/reuse"]["lines"] == [uid, gid, "/tmp", "a b$c 'q'", "0"]
    assert report["user/reuse"]["lines"] == ["1234"]
    assert report["entrypoint/reuse"]["lines"] == ["set"]
    # stdin is empty (the requests are not the command's), spoofed answers change nothing
    assert report["spoof/reuse"]["lines"] == ["0", "in 1", "in 2"]
    assert report["fail/reuse"] == {"error": "DockerFailure", "exit_code": 7,
                                    "stderr": "first line\nlast: é"}
    assert report["timeout"] == "ContainerTimeout"
    assert report["warm"] == report["after_stop"] == [str(n) for n in range(8)]
    assert report["left"] == 0


WARM_PIPE_JOB = Path(__file__).parent / "jobs" / "warm_pipe_job.py"


def test_pipe_streams_through_warm_containers_as_through_fresh_ones(busybox, session_tmp):
    """Quoting, user, environment, workdir, entrypoint, binary and text records, a failure's
    stderr tail; a pipe of a pipe; many partitions in one warm container; a command that
    leaves a process or times out gets its container replaced; nothing left."""
    result = subprocess.run([sys.executable, str(WARM_PIPE_JOB), busybox], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for case in ("quoting", "context", "user", "entrypoint", "binary", "sort", "fail"):
        assert report[f"{case}/reuse"] == report[f"{case}/fresh"], case
    text = ["plain", "日本語 é", "tab\there", "", "it's \"q\" $HOME \\n"] * 3
    assert report["quoting/reuse"]["records"] == [
        "it's", "$HOME", "a\\b", "tab\tthere", "日本語 é", "%s %b \\c", "$NOT \\n 'x'", *text]
    assert report["context/reuse"]["records"][2:] == ["/tmp", "a b$c 'q'", "15"]
    assert report["user/reuse"]["records"][0] == "1234"
    assert report["entrypoint/reuse"]["records"][0] == "set"
    assert report["binary/reuse"]["records"] == [10240 + 4 + (3 << 20), True]
    assert report["sort/reuse"]["records"] == [f"{i:05d}" for i in range(1, 20001)]
    assert report["fail/reuse"]["exit_code"] == 7
    assert report["fail/reuse"]["stderr"].splitlines()[-2:] == ["first line", "last: é"]
    # a warm container for each image and options of the cases, plus one after the failure
    assert report["cases_containers"] <= len(report) // 2
    half = len(text) // 2
    assert report["chained"]["reuse"] == report["chained"]["fresh"] == [
        *sorted(text[:half]), *sorted(text[half:])]
    assert report["many"] == 1200 and report["many_containers"] == 1
    # each of the 4 partitions left a process: 4 containers, one each, outputs intact
    assert report["leftover"] == ["0", "1", "2", "3"] and report["leftover_containers"] == 4
    assert report["timeout"] == "ContainerTimeout" and report["timeout_seconds"] < 50
    assert report["after_timeout"] == ["a", "b"]
    assert report["left"] == 0
