"""The Docker engine stopped and started again in the middle of a job.

The job runs against a private ``dockerd`` (``tests/engines.py``: its own
socket, data root and exec root, no bridge), through ``DOCKER_HOST``, so the
engine the rest of the suite uses is never touched. While containers run,
the test stops that engine as an operator would (SIGTERM) and starts it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engines import load_image, private_engine

JOB = Path(__file__).parent / "jobs" / "engine_restart_job.py"
JOB_TIMEOUT = 240
#: Seconds the engine gets to remove what the lost one left, once it answers again.
CLEANUP_TIMEOUT = 60


@pytest.fixture(scope="module")
def engine(session_tmp, docker_client, busybox):
    with private_engine(os.path.dirname(session_tmp)) as private:
        load_image(docker_client, private.client(), busybox)
        yield private


def restart_during_job(engine, busybox, master: str, mode: str, temp_root: Path) -> dict:
    """Run the job, stop and start ``engine`` while its containers run; the job's summary."""
    temp_root.mkdir()
    job = subprocess.Popen(
        [sys.executable, str(JOB), busybox, master, mode], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DOCKER_HOST": engine.host, "TMPDIR": str(temp_root)})
    try:
        client = engine.client()
        deadline = time.monotonic() + JOB_TIMEOUT / 2
        while not client.containers.list(filters={"label": "lofn", "status": "running"}):
            assert job.poll() is None, job.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no lofn container started"
            time.sleep(0.2)
        client.close()
        engine.stop()
        engine.start()
        out, err = job.communicate(timeout=JOB_TIMEOUT)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def assert_nothing_left(engine, temp_root: Path) -> None:
    """What the lost engine left is removed once it answers again; no temp directory stays."""
    client = engine.client()
    deadline = time.monotonic() + CLEANUP_TIMEOUT
    while client.containers.list(all=True) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [(c.name, c.status) for c in client.containers.list(all=True)] == []
    deadline = time.monotonic() + CLEANUP_TIMEOUT  # the workers' watchdogs remove theirs
    while [p for p in temp_root.iterdir() if p.name.startswith("lofn-")] \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [p.name for p in temp_root.iterdir() if p.name.startswith("lofn-")] == []


@pytest.mark.parametrize("mode", ["map", "reuse", "pipe"])
def test_a_lost_engine_is_engine_lost_and_nothing_is_left(engine, busybox, tmp_path, mode):
    """Each way lofn talks to the engine: create/start/wait, exec, attach and stream."""
    summary = restart_during_job(engine, busybox, "local[2]", mode, tmp_path / "root")
    assert summary["error"] == "EngineLost", summary
    assert summary["left_while_workers_live"] == [], summary["left_while_workers_live"]
    message = summary["message"]
    for fragment in (f"lost the Docker engine at {engine.host}", f"on host {os.uname().nodename}",
                     " while ", "(partition ", "a retry of the task runs on it then"):
        assert fragment in message, message
    assert_nothing_left(engine, tmp_path / "root")


def test_a_retry_runs_once_the_engine_is_back(engine, busybox, tmp_path):
    # local mode retries at once: enough attempts to outlast the engine's restart
    summary = restart_during_job(engine, busybox, "local[2,100]", "map", tmp_path / "root")
    assert summary["error"] is None, summary
    assert sorted(summary["lines"]) == sorted(summary["expected"])
    assert summary["failed_tasks"] >= 1, "the engine was lost, so some attempt must have failed"
    assert summary["left_while_workers_live"] == [], summary
    assert_nothing_left(engine, tmp_path / "root")
