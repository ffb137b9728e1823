"""lofn on a real Spark standalone cluster: a master and two workers, in separate JVMs.

A Python process holds at most one SparkContext (and the integration tests
hold a local one), so the job runs in its own driver via ``spark-submit``
and reports a JSON summary on its last stdout line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import run_json_job
from tests.conftest import lofn_temp_entries

pytestmark = pytest.mark.cluster

JOB = Path(__file__).resolve().parent / "jobs" / "standalone_job.py"
ROOT = Path(__file__).resolve().parents[2]
SUBMIT_TIMEOUT = 300
PARTITIONS = 8


def test_word_count_and_binary_round_trip_on_two_workers(standalone_master, busybox,
                                                         docker_client, session_tmp):
    cluster = standalone_master
    summary, where, elapsed = run_json_job(
        cluster.submit_command(JOB, "--image", busybox, "--partitions", str(PARTITIONS)),
        what="spark-submit", timeout=SUBMIT_TIMEOUT, logs=cluster.logs,
        env=cluster.submit_env(session_tmp), cwd=ROOT)
    print(f"\nspark-submit took {elapsed:.1f} s (cluster startup {cluster.startup_seconds:.1f} s)")

    assert summary["master"] == cluster.master_url
    assert summary["counts"] == summary["expected_counts"], where
    assert summary["distinct_result_lines"] == len(summary["expected_counts"])
    assert summary["sorted_as_expected"], "reduce output is not sorted by count, then word"

    partitions = summary["map_partitions"]
    print("map partition -> executor:",
          {p["partition"]: p["executor"] for p in partitions}, summary["application"])
    assert [p["partition"] for p in partitions] == list(range(PARTITIONS))
    assert all(p["executor"] is not None for p in partitions), (
        f"a map partition did not run in a standalone executor's work dir: {partitions}")
    assert {p["tmpdir"] for p in partitions} == {session_tmp}, (
        f"executors do not use the session TMPDIR {session_tmp}: {partitions}")
    assert {p["python"] for p in partitions} == {cluster.python}, partitions
    assert len(summary["executors"]) >= 2, (
        f"map partitions ran on executors {summary['executors']} only: {partitions}")

    binary = summary["binary"]
    assert binary["files"] == [f"part-{index:05d}.bin" for index in range(PARTITIONS)], binary
    assert binary["directory_removed"], binary
    assert binary["line_count"] == binary["expected_line_count"], binary
    assert binary["same_lines"], binary

    # Only this job's containers: other sessions may share the Docker engine and run
    # lofn containers right now (and a listing that inspects each container races
    # with their removal, hence sparse=True).
    app = summary["application"]
    left = docker_client.containers.list(all=True, sparse=True,
                                         filters={"label": f"lofn.app={app}"})
    assert left == [], f"containers of {app} left after the job: {[c.id for c in left]}"
    assert lofn_temp_entries() == [], f"lofn temp entries left in {session_tmp}"
