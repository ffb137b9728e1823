"""Containers sized by Spark (``DockerPipe(resources=...)``) on a local master, real engine.

The containers read their limits back from their own cgroup files (v2 or
v1); an OOM on attempt 0 succeeds on attempt 1 with more memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_trace import _records

JOB = Path(__file__).parent / "jobs" / "resources_job.py"
MIB = 1 << 20


@pytest.fixture(scope="module")
def sized(busybox, session_tmp, tmp_path_factory):
    """The job's result and its trace records."""
    trace = tmp_path_factory.mktemp("resources") / "trace"
    result = subprocess.run([sys.executable, str(JOB), busybox, str(trace)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), _records(trace)


def test_each_container_gets_its_task_s_cpus_and_share_of_the_budget(sized):
    result, _ = sized
    # local[3]: 3 executor cores; 600 MiB * 1 task CPU / 3 cores
    assert result["sized"] == [[200 * MIB, 1.0]]
    assert result["pipe"] == [[200 * MIB, 1.0]]
    assert result["reuse"] == [[200 * MIB, 1.0]]
    assert result["unsized"] == [[None, None]]


def test_binary_merges_of_binary_files_are_sized(sized):
    result, records = sized
    assert sorted(bytes.fromhex(result["binary"])) == sorted(b"\0\0\0\1\1\1\2\2\2")
    merges = [r for r in records if r["method"] == "reduce_binary"]
    assert merges and all(r["limits"]["memory_bytes"] == 200 * MIB for r in merges)


def test_docker_options_win_over_the_derived_limits(sized):
    assert sized[0]["explicit"] == [[64 * MIB, 0.5]]


def test_an_oom_on_attempt_0_succeeds_on_attempt_1_with_more_memory(sized):
    result, records = sized
    assert result["grown"] == ["survived"]
    grown = [r for r in records if r["command"].startswith("dd ") and r["limits"]]
    assert [(r["attempt"], r["oom"], r["status"], r["limits"]["memory_bytes"])
            for r in grown] == [(0, True, "failed", 100 * MIB), (1, False, "ok", 300 * MIB)]
    assert "attempt 0: 100 MiB" in grown[0]["error"]


def test_without_growth_the_oom_error_names_each_attempt_s_limit(sized):
    assert sized[0]["not_grown"] == (
        "container was killed for exceeding its memory limit of 100 MiB: budget 300 MiB "
        "(stated) * 1 task CPU / 3 executor cores (local master); attempt 0: 100 MiB, "
        "attempt 1: 100 MiB")


def test_the_trace_records_the_limits(sized):
    _, records = sized
    limits = [r["limits"] for r in records if r["method"] in ("map", "pipe")
              and "cgroup" in r["command"]]
    # 6 map, 6 pipe, 6 map with --memory and --cpus (derived limits: none)
    assert len(limits) == 18
    assert limits.count({"cpus": 1, "memory_bytes": 200 * MIB, "gpus": None}) == 12
    assert limits.count({"cpus": None, "memory_bytes": None, "gpus": None}) == 6
