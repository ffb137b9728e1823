"""lofn over DataFrames through a real Spark Connect server, started from the installed pyspark.

The server is ``org.apache.spark.sql.connect.service.SparkConnectServer``
(what ``sbin/start-connect-server.sh`` runs; the pip package has no
``sbin/``) launched with pyspark's ``bin/spark-submit`` on ``local[2]``,
bound to 127.0.0.1 on a free port. Its Python workers run the containers,
with the session's ``TMPDIR``, so the leftover checks see their temp
directories. The Connect client cannot share this process with the classic
SparkContext of the other tests (pyspark refuses with
``SESSION_ALREADY_EXIST``), so it runs in ``jobs/connect_job.py``, which
prints a JSON summary on its last stdout line.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.conftest import free_port, run_json_job, tail
from tests.conftest import lofn_containers, lofn_temp_entries, require, wait_until_clean

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).resolve().parent / "jobs" / "connect_job.py"
START_TIMEOUT = 120.0
JOB_TIMEOUT = 300
STOP_TIMEOUT = 30.0
TAIL = 40
CLIENT_MODULES = ("pyarrow", "pandas", "grpc", "grpc_status", "google.protobuf",
                  "google.rpc")


@dataclass
class ConnectServer:
    """A running Spark Connect server; ``url`` is ``sc://127.0.0.1:PORT``."""

    process: subprocess.Popen
    url: str
    base: Path
    log: Path
    python: str
    startup_seconds: float = 0.0

    def log_tail(self) -> str:
        try:
            return tail(self.log.read_text(errors="replace"), TAIL)
        except OSError as exc:
            return f"<cannot read {self.log}: {exc}>"

    def stop(self) -> None:
        """SIGTERM the server's process group, wait, then SIGKILL what is left of it."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def connect_server(docker_client, busybox, session_tmp):
    """A Spark Connect server on ``local[2]`` for this module, stopped afterwards."""
    missing = [name for name in CLIENT_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        require("the Spark Connect client packages",
                f"cannot import {missing}: pip install -r requirements.txt")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        require("Java", "no 'java' on PATH and no JAVA_HOME (Spark needs Java 17+)")
    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    jars = list((spark_home / "jars").glob("spark-connect_*.jar"))
    if not jars:
        require("the Spark Connect server", f"no spark-connect_*.jar in {spark_home / 'jars'}")
    submit = spark_home / "bin" / "spark-submit"

    # Outside the session TMPDIR on purpose: the JVM's files are not lofn's to check.
    base = Path(tempfile.mkdtemp(prefix="spark-connect-", dir=os.path.dirname(session_tmp)))
    python = os.environ.get("PYSPARK_PYTHON") or sys.executable
    port = free_port()
    env = {**os.environ, "SPARK_HOME": str(spark_home), "TMPDIR": session_tmp,
           "PYSPARK_PYTHON": python, "SPARK_LOCAL_IP": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    command = [
        str(submit), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "lofn-connect-test", "--master", "local[2]",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.sql.shuffle.partitions=4",
        "--conf", "spark.sql.catalogImplementation=in-memory",
        "--conf", f"spark.sql.warehouse.dir={base / 'warehouse'}",
        "--conf", f"spark.local.dir={base}",
        "--driver-java-options", f"-Djava.io.tmpdir={base}",
        "spark-internal",
    ]
    log = base / "server.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle,
                                   stderr=subprocess.STDOUT, env=env, cwd=base,
                                   start_new_session=True)
    server = ConnectServer(process, f"sc://127.0.0.1:{port}", base, log, python)
    started = time.monotonic()
    try:
        while not _accepts(port):
            if process.poll() is not None:
                pytest.fail(f"the Spark Connect server exited with {process.returncode} "
                            f"during startup\n{server.log_tail()}", pytrace=False)
            if time.monotonic() - started > START_TIMEOUT:
                pytest.fail(f"the Spark Connect server did not listen on port {port} within "
                            f"{START_TIMEOUT:.0f} s\n{server.log_tail()}", pytrace=False)
            time.sleep(0.5)
        server.startup_seconds = time.monotonic() - started
        print(f"\nSpark Connect server {server.url} up in {server.startup_seconds:.1f} s")
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_dataframe_word_count_through_spark_connect(connect_server, busybox, docker_client,
                                                    session_tmp):
    server = connect_server
    log_dir = Path(tempfile.mkdtemp(prefix="connect-volume-", dir=server.base))
    env = {**os.environ, "TMPDIR": session_tmp,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    summary, _where, elapsed = run_json_job(
        [server.python, str(JOB), "--remote", server.url, "--image", busybox,
         "--log-dir", str(log_dir)],
        what="the Connect client job", timeout=JOB_TIMEOUT, stdout_lines=5,
        logs=lambda: f"--- server log:\n{server.log_tail()}", env=env, cwd=ROOT)
    print(f"client job took {elapsed:.1f} s (server startup {server.startup_seconds:.1f} s); "
          f"steps: { {k: round(v, 1) for k, v in summary['seconds'].items()} }")

    assert summary["session_type"] == "pyspark.sql.connect.session.SparkSession"
    assert summary["master"] == "local[2]"
    expected = summary["expected_counts"]
    assert len(expected) > 20

    # output lines as a string column, counted in Spark SQL
    assert summary["lines_schema"] == "struct<line:string>"
    assert summary["counts"] == expected

    # output lines parsed into the user's schema
    assert summary["parsed_schema"] == "struct<word:string,count:int>"
    assert summary["parsed_counts"] == expected
    # each partition counted its own words: at most one row per word and partition
    assert summary["parsed_rows_per_partition_max"] <= len(expected)

    # one container per non-empty partition; the pipe's volume was mounted
    assert summary["sparse_schema"] == "struct<id_text:string>"
    assert summary["sparse_rows"] == ["0", "1", "2"]
    assert summary["sparse_containers"] == summary["sparse_non_empty_partitions"] == 3

    # a failing command: Connect's exception holds the lofn error, recovered as itself
    failure = summary["failure"]
    assert failure is not None, "the failing command did not fail"
    assert failure["spark_exception"] == "pyspark.errors.exceptions.connect.PythonException"
    assert failure["spark_text_has_exit_code"], failure
    assert failure["lofn"] == "DockerFailure", failure
    assert failure["exit_code"] == 3
    assert failure["image"] == busybox
    assert failure["stderr"].splitlines()[-1] == "problem line 29", failure
    assert "container exited with code 3" in failure["text"]

    # nothing of this application is left: no container, no temp directory
    app = summary["application"]
    containers, entries = wait_until_clean(docker_client)
    ours = docker_client.containers.list(all=True, sparse=True,
                                         filters={"label": f"lofn.app={app}"})
    assert ours == [], f"containers of {app} left: {[c.id for c in ours]}"
    assert containers == [] and lofn_containers(docker_client) == [], containers
    assert entries == [] and lofn_temp_entries() == [], (
        f"lofn temp entries left in {session_tmp}: {entries}")
