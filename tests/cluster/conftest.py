"""Cluster fixtures: a real Spark standalone cluster (one master, two workers) for the session,
and a real single-node Hadoop (HDFS with WebHDFS, and YARN) for the modules that need it.

The master and the workers are separate JVMs started with pyspark's own
launcher (``bin/spark-class``), all bound to 127.0.0.1 on free ports. Each
worker offers one core, so a job with several partitions must use both
executors. Workers inherit the session's ``TMPDIR`` (exported by
``tests/conftest.py``), so lofn's temp directories on the executors land in
the directory that the session's leftover check inspects.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = pytest.mark.cluster

WORKERS = 2
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOG_TAIL = 40


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(text: str | None, lines: int = 60) -> str:
    """The last ``lines`` lines of ``text`` (``None`` counts as empty)."""
    return "\n".join((text or "").splitlines()[-lines:])


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return tail(text, lines)


def run_json_job(command: list[str], *, what: str, timeout: float, logs: Callable[[], str],
                 stdout_lines: int = 10, **popen) -> tuple[dict, str, float]:
    """Run a job that prints a JSON summary as its last stdout line; fail the test otherwise.

    Returns the summary, a description of the run for assertion messages
    (exit code, the tails of stdout and stderr, then ``logs()``: the
    cluster's or server's own log) and the seconds the job took. A job that
    outlives ``timeout``, exits non-zero or prints no JSON fails the test
    with that description.
    """
    started = time.monotonic()
    try:
        job = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, **popen)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
            else exc.stderr
        pytest.fail(f"{what} did not finish in {timeout} s\n--- stderr tail:\n{tail(stderr)}"
                    f"\n{logs()}", pytrace=False)
    elapsed = time.monotonic() - started
    where = (f"{what} exited {job.returncode}\n--- stdout tail:\n"
             f"{tail(job.stdout, stdout_lines)}\n--- stderr tail:\n{tail(job.stderr)}\n{logs()}")
    assert job.returncode == 0, where
    try:
        summary = json.loads(job.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail(f"the last stdout line is not JSON\n{where}", pytrace=False)
    return summary, where, elapsed


@dataclass
class _Daemon:
    name: str
    process: subprocess.Popen
    log: Path

    def describe(self) -> str:
        code = self.process.poll()
        state = "running" if code is None else f"exited with {code}"
        return f"--- {self.name} (pid {self.process.pid}, {state}), {self.log}:\n{_tail(self.log)}"

    def stop(self) -> None:
        """SIGTERM the JVM, wait, then SIGKILL its whole process group (executors included)."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # The JVM is the session leader of its own group (start_new_session), and
        # a worker's executors stay in that group: kill what is left of it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class StandaloneCluster:
    """A running standalone cluster; ``master_url`` is ``spark://127.0.0.1:PORT``."""

    spark_home: Path
    master_url: str
    web_url: str
    base: Path
    python: str
    startup_seconds: float = 0.0
    daemons: list[_Daemon] = field(default_factory=list)

    @property
    def spark_submit(self) -> Path:
        return self.spark_home / "bin" / "spark-submit"

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
            return json.load(response)

    def logs(self) -> str:
        return "\n".join(daemon.describe() for daemon in self.daemons)

    def submit_command(self, job: Path, *arguments: str, conf: dict | None = None) -> list[str]:
        """``spark-submit`` of ``job`` to this cluster, Spark's scratch space in ``base``.

        Starts only once both executors are registered, so that both run tasks.
        """
        conf = {"spark.log.level": "ERROR", "spark.ui.enabled": "false",
                "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                "spark.executor.memory": "512m",
                "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
                "spark.local.dir": str(self.base),
                "spark.executor.extraJavaOptions": f"-Djava.io.tmpdir={self.base}",
                **(conf or {})}
        return [str(self.spark_submit), "--master", self.master_url,
                *(item for key, value in conf.items() for item in ("--conf", f"{key}={value}")),
                "--driver-java-options", f"-Djava.io.tmpdir={self.base}",
                str(job), *arguments]

    def submit_env(self, session_tmp: str) -> dict:
        """``spark-submit``'s environment: this cluster's Spark and Python, the session's TMPDIR."""
        return {**os.environ, "SPARK_HOME": str(self.spark_home), "TMPDIR": session_tmp,
                "PYSPARK_PYTHON": self.python, "PYSPARK_DRIVER_PYTHON": self.python}


def _spark_home() -> Path:
    try:
        import pyspark
    except ImportError as exc:
        require("pyspark", str(exc))
    return Path(pyspark.__file__).resolve().parent


def _start(cluster: StandaloneCluster, name: str, arguments: list[str], env: dict) -> _Daemon:
    log = cluster.base / f"{name}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [str(cluster.spark_home / "bin" / "spark-class"), *arguments],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            env=env, cwd=cluster.base, start_new_session=True)
    daemon = _Daemon(name, process, log)
    cluster.daemons.append(daemon)
    return daemon


def _wait_alive(cluster: StandaloneCluster, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer from the master web UI yet"
    while time.monotonic() < deadline:
        dead = [daemon for daemon in cluster.daemons if daemon.process.poll() is not None]
        if dead:
            pytest.fail(f"Spark standalone {', '.join(d.name for d in dead)} exited during "
                        f"startup\n{cluster.logs()}", pytrace=False)
        try:
            state = cluster.state()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = f"master web UI {cluster.web_url}/json/: {exc}"
        else:
            alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) >= workers:
                return
            last = (f"{len(alive)} of {workers} workers ALIVE: "
                    f"{[(w.get('id'), w.get('state')) for w in state.get('workers', [])]}")
        time.sleep(0.5)
    pytest.fail(f"Spark standalone cluster not ready after {timeout:.0f} s ({last})\n"
                f"{cluster.logs()}", pytrace=False)


@contextmanager
def standalone_cluster(session_tmp: str, *, workers: int = WORKERS, cores: int = 1,
                       worker_options: str = "", env: dict | None = None):
    """A started standalone master with ``workers`` workers of ``cores`` cores each.

    ``worker_options`` are Java ``-D`` settings of the workers (e.g. their
    ``spark.worker.resource.*``); ``env`` is added to every daemon's
    environment. Stopped and its files removed afterwards.
    """
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        require("Java", "no 'java' on PATH and no JAVA_HOME (Spark needs Java 17+)")
    spark_home = _spark_home()
    launcher = spark_home / "bin" / "spark-class"
    if not os.access(launcher, os.X_OK):
        require("the Spark launcher", f"{launcher} is missing or not executable")

    # Outside the session TMPDIR on purpose: its entries are not lofn's to check.
    base = Path(tempfile.mkdtemp(prefix="spark-standalone-", dir=os.path.dirname(session_tmp)))
    python = os.environ.get("PYSPARK_PYTHON") or sys.executable
    env = {**os.environ, "SPARK_HOME": str(spark_home), "TMPDIR": session_tmp,
           "PYSPARK_PYTHON": python, "SPARK_NO_DAEMONIZE": "1",
           "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(base),
           "SPARK_PID_DIR": str(base),
           # Keep the JVMs' own temp files out of /tmp, in the directory removed at the end.
           "SPARK_DAEMON_JAVA_OPTS": " ".join(filter(None, [
               os.environ.get("SPARK_DAEMON_JAVA_OPTS"), f"-Djava.io.tmpdir={base}"])),
           **(env or {})}
    port, web_port = free_port(), free_port()
    cluster = StandaloneCluster(spark_home=spark_home, master_url=f"spark://127.0.0.1:{port}",
                                web_url=f"http://127.0.0.1:{web_port}", base=base, python=python)
    started = time.monotonic()
    try:
        _start(cluster, "master", ["org.apache.spark.deploy.master.Master", "--host",
                                   "127.0.0.1", "--port", str(port), "--webui-port",
                                   str(web_port)], env)
        for number in range(1, workers + 1):
            work = base / f"worker-{number}"
            local = base / f"local-{number}"
            work.mkdir()
            local.mkdir()
            _start(cluster, f"worker-{number}",
                   ["org.apache.spark.deploy.worker.Worker", cluster.master_url,
                    "--host", "127.0.0.1", "--cores", str(cores), "--memory", "1g",
                    "--work-dir", str(work), "--webui-port", str(free_port())],
                   {**env, "SPARK_LOCAL_DIRS": str(local),
                    **({"SPARK_WORKER_OPTS": worker_options} if worker_options else {})})
        _wait_alive(cluster, workers, START_TIMEOUT)
        cluster.startup_seconds = time.monotonic() - started
        print(f"\nstandalone cluster {cluster.master_url} up in {cluster.startup_seconds:.1f} s")
        yield cluster
    finally:
        # Workers first (each kills its executors), then the master.
        for daemon in reversed(cluster.daemons):
            daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def standalone_master(docker_client, busybox, session_tmp):
    """A standalone master with two one-core workers; yields a :class:`StandaloneCluster`."""
    with standalone_cluster(session_tmp) as cluster:
        yield cluster


# ---------------------------------------------------------------------------
# Hadoop: HDFS (WebHDFS) + YARN, one JVM from Maven Central artifacts

HADOOP_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "hadoop"


class Hadoop:
    """A running single-node Hadoop started by ``scripts/hadoop/start.sh``."""

    def __init__(self, run_dir: str, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.env = env
        self.conf_dir = env["HADOOP_CONF_DIR"]
        self.webhdfs_url = env["LOFN_WEBHDFS_URL"]
        self.spark_conf = env["LOFN_SPARK_YARN_CONF"]

    def client(self):
        from hdfs import InsecureClient

        return InsecureClient(self.webhdfs_url, user=getpass.getuser())

    def webhdfs_opens(self, path: str) -> int:
        """How many times WebHDFS opened ``path`` (read) so far, from the namenode's audit log."""
        with open(os.path.join(self.run_dir, "cluster.log"), encoding="utf-8",
                  errors="replace") as log:
            return sum(1 for line in log
                       if "cmd=open" in line and f"src={path}\t" in line
                       and "proto=webhdfs" in line)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(os.path.join(self.run_dir, "cluster.log"), errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return "(no cluster log)"


@pytest.fixture(scope="session")
def hadoop():
    """A real single-node Hadoop for the session, stopped afterwards."""
    for tool in ("java", "javac", "mvn"):
        if shutil.which(tool) is None:
            require(tool, "needed to build and run the Hadoop mini cluster")
    run_dir = tempfile.mkdtemp(prefix="hadoop-run-", dir="/tmp")
    os.rmdir(run_dir)  # start.sh makes it, with its marker
    env = {**os.environ, "LOFN_HADOOP_RUN_DIR": run_dir, "LOFN_PYTHON": sys.executable}
    started = subprocess.run([str(HADOOP_SCRIPTS / "start.sh")], env=env, capture_output=True,
                             text=True, timeout=900)
    if started.returncode != 0:
        subprocess.run([str(HADOOP_SCRIPTS / "stop.sh")], env=env, capture_output=True)
        pytest.fail(f"Hadoop did not start:\n{started.stderr[-4000:]}", pytrace=False)
    exports = {}
    for line in started.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            exports[key] = shlex.split(value)[0] if value else ""
    cluster = Hadoop(run_dir, exports)
    try:
        yield cluster
    finally:
        stopped = subprocess.run([str(HADOOP_SCRIPTS / "stop.sh")], env=env, capture_output=True,
                                 text=True, timeout=300)
        assert stopped.returncode == 0, stopped.stderr[-2000:]
