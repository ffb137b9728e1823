"""Shared fixtures: a real Docker engine, real Spark, and a check that nothing is left behind.

Every test session gets its own temp root (exported as ``TMPDIR`` before
any Spark process starts, so executors inherit it). When the session ends,
any container labelled ``lofn`` or any ``lofn-*`` entry in that root fails
the run. With ``CI=true`` a missing Docker engine fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
BUSYBOX = "lofn/busybox:latest"

_SESSION_TMP = tempfile.mkdtemp(prefix="lofn-tests-")
os.environ["TMPDIR"] = _SESSION_TMP
tempfile.tempdir = None
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def require(what: str, reason: str):
    """Skip a test for lack of ``what`` locally; in CI, fail it."""
    message = f"{what} is not available: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing dependency is a failure)", pytrace=False)
    pytest.skip(message)


def _our_pids() -> set[str]:
    """This process and its descendants (Spark's JVMs and Python workers among them)."""
    children: dict[str, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = stat.read().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(entry)
    ours, todo = set(), [str(os.getpid())]
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo.extend(children.get(pid, []))
    return ours


def lofn_containers(client) -> list[dict]:
    """This session's containers labelled ``lofn`` (as listed: Id, Names, Labels, State).

    Other test sessions may share the Docker engine: a container is this
    session's if it mounts something under the session's temp root (every
    task directory is there) or was started by this process or a descendant.
    """
    pids = _our_pids()
    return [c for c in client.api.containers(all=True, filters={"label": "lofn"})
            if c["Labels"].get("lofn.pid") in pids
            or any(m.get("Source", "").startswith(_SESSION_TMP) for m in c.get("Mounts", []))]


def wait_until_clean(client, seconds: float = 30.0) -> tuple[list[str], list[str]]:
    """Wait until no lofn container or temp entry is left; return what is left after ``seconds``.

    A killed Spark worker's watchdog removes its containers and temp
    directories within moments, so leftovers are given that long to go.
    """
    deadline = time.monotonic() + seconds
    while True:
        containers = [c["Names"][0].lstrip("/") for c in lofn_containers(client)] if client else []
        entries = lofn_temp_entries()
        if not (containers or entries) or time.monotonic() > deadline:
            return containers, entries
        time.sleep(0.2)


def lofn_temp_entries() -> list[str]:
    return sorted(name for name in os.listdir(_SESSION_TMP) if name.startswith("lofn-"))


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine
        require("a Docker engine", f"{exc} (run 'bash scripts/dev.sh setup' as root)")
    return client


@pytest.fixture(scope="session")
def busybox(docker_client) -> str:
    """The ``lofn/busybox`` image (static busybox, no bash), built if missing."""
    spec = importlib.util.spec_from_file_location("build_images",
                                                  ROOT / "scripts" / "build_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_busybox(docker_client)
    return BUSYBOX


@pytest.fixture(scope="session")
def sc(docker_client, busybox):
    """A real SparkContext on ``local[2]``."""
    from pyspark import SparkConf, SparkContext

    conf = (SparkConf().setMaster("local[2]").setAppName("lofn-tests")
            .set("spark.ui.enabled", "false").set("spark.log.level", "ERROR"))
    context = SparkContext(conf=conf)
    yield context
    context.stop()


@pytest.fixture
def pipe(sc):
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    return DockerPipe(SparkConf())


@pytest.fixture
def host(session_tmp):
    """A host file next to the task directories that no container can see (tests/hostile.py)."""
    from tests.hostile import Host

    host = Host(session_tmp)
    yield host
    host.remove()


@pytest.fixture(scope="session")
def session_tmp() -> str:
    """The session's temp root (``TMPDIR`` of the driver and of every executor)."""
    return _SESSION_TMP


@pytest.fixture(autouse=True, scope="session")
def nothing_left_behind():
    """Fail the run if a lofn container or temp directory outlives the session."""
    yield
    problems = []
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception:  # noqa: BLE001 - no engine, no containers to check
        client = None
    containers, entries = wait_until_clean(client)
    problems.extend(f"container {name}" for name in containers)
    problems.extend(f"temp entry {_SESSION_TMP}/{name}" for name in entries)
    for container in lofn_containers(client) if client else []:
        client.api.remove_container(container["Id"], force=True)
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)
    assert not problems, "lofn left things behind:\n" + "\n".join(problems)


def pytest_configure(config):
    for marker, text in [
        ("integration", "needs a real Docker engine and local Spark"),
        ("cluster", "starts a real Spark standalone cluster or Hadoop"),
        ("faults", "provokes a fault (hang, OOM, kill, full disk, ...) for real"),
        ("acceptance", "the genomics example end to end: real aligner image, Spark and Docker"),
    ]:
        config.addinivalue_line("markers", f"{marker}: {text}")
