"""lofn on a real Spark standalone cluster: a master and two workers, in separate JVMs.

A Python process holds at most one SparkContext (and the integration tests
hold a local one), so the job runs in its own driver via ``spark-submit``
and reports a JSON summary on its last stdout line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import lofn_temp_entries

pytestmark = pytest.mark.cluster

JOB = Path(__file__).resolve().parent / "jobs" / "standalone_job.py"
ROOT = Path(__file__).resolve().parents[2]
SUBMIT_TIMEOUT = 300
PARTITIONS = 8
TAIL = 60


def _tail(text: str, lines: int = TAIL) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_word_count_and_binary_round_trip_on_two_workers(standalone_master, busybox,
                                                         docker_client, session_tmp):
    cluster = standalone_master
    command = [
        str(cluster.spark_submit), "--master", cluster.master_url,
        "--conf", "spark.log.level=ERROR",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.executor.memory=512m",
        # Start only once both executors are registered, so that both run map tasks.
        "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
        "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=60s",
        "--conf", f"spark.local.dir={cluster.base}",
        "--driver-java-options", f"-Djava.io.tmpdir={cluster.base}",
        "--conf", f"spark.executor.extraJavaOptions=-Djava.io.tmpdir={cluster.base}",
        str(JOB), "--image", busybox, "--partitions", str(PARTITIONS),
    ]
    env = {**os.environ, "SPARK_HOME": str(cluster.spark_home), "TMPDIR": session_tmp,
           "PYSPARK_PYTHON": cluster.python, "PYSPARK_DRIVER_PYTHON": cluster.python}
    started = time.monotonic()
    try:
        job = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=SUBMIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"spark-submit did not finish in {SUBMIT_TIMEOUT} s\n--- stderr tail:\n"
                    f"{_tail(stderr or '')}\n{cluster.logs()}", pytrace=False)
    elapsed = time.monotonic() - started
    print(f"\nspark-submit took {elapsed:.1f} s (cluster startup {cluster.startup_seconds:.1f} s)")

    where = (f"spark-submit exited {job.returncode}\n--- stdout tail:\n{_tail(job.stdout, 10)}"
             f"\n--- stderr tail:\n{_tail(job.stderr)}")
    assert job.returncode == 0, f"{where}\n{cluster.logs()}"
    lines = job.stdout.strip().splitlines()
    assert lines, where
    try:
        summary = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"last stdout line is not JSON\n{where}", pytrace=False)

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
