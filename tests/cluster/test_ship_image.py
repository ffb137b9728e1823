"""Images without a registry (``ship_image=True``), against a Docker engine that lacks the image.

Everything runs on this one machine, so the executors are given an engine
of their own: a second ``dockerd`` with its own data root, exec root (its
managed containerd's state and socket live there), pid file and socket, and
no bridge network, in a network namespace of its own (``unshare --net``):
``--bridge=none`` makes dockerd delete any ``docker0`` interface it sees,
which in the host's namespace is the main engine's bridge. The job on the
session's standalone cluster gives its executors
``DOCKER_HOST=unix://<that socket>`` (``spark.executorEnv``); the driver
(``spark-submit``) keeps the main engine, which has ``lofn/busybox``. The
second engine, its directories and its mounts are removed afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import run_json_job
from tests.conftest import lofn_temp_entries
from tests.engines import private_engine

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).resolve().parent / "jobs" / "ship_image_job.py"
PARTITIONS = 4
SUBMIT_TIMEOUT = 240


@pytest.fixture(scope="module")
def bare_engine(session_tmp):
    """A second dockerd with no images, for the executors; stopped and deleted afterwards."""
    with private_engine(os.path.dirname(session_tmp)) as engine:
        yield engine


def _load_events(client, since: float, until: float) -> list[dict]:
    return list(client.events(since=int(since) - 1, until=int(until) + 1, decode=True,
                              filters={"type": "image", "event": "load"}))


def _forget(client, image_id: str) -> None:
    """Remove ``image_id`` (and all its names) from the second engine."""
    from docker.errors import ImageNotFound

    try:
        client.images.remove(image_id, force=True)
    except ImageNotFound:
        pass


@pytest.fixture
def saved_busybox(docker_client, busybox, tmp_path):
    """``lofn/busybox`` saved from the main engine as Spark would deliver it: (files dir, id)."""
    image = docker_client.images.get(busybox)
    files = tmp_path / "files"
    files.mkdir()
    hex_id = image.id.split(":")[1]
    with open(files / f"lofn-image-{hex_id}.tar", "wb") as target:
        for chunk in image.save(named=busybox):
            target.write(chunk)
    return files, image.id


# A task on an executor host, as far as the image goes: SparkFiles points at FILES.
_TASK = """
import logging, sys, time
import docker
from pyspark import SparkFiles
from lofn._images import Shipment
logging.basicConfig(level=logging.INFO, format="%(message)s")
SparkFiles._is_running_on_worker = True
SparkFiles._root_directory = sys.argv[1]
shipment = Shipment(*sys.argv[2:6])
time.sleep(max(0.0, float(sys.argv[7]) - time.time()))
print(shipment.ensure(docker.from_env(), sys.argv[6]))
"""


def test_concurrent_tasks_of_a_host_load_once(bare_engine, saved_busybox, busybox, tmp_path):
    files, image_id = saved_busybox
    bare = bare_engine.client()
    _forget(bare, image_id)
    parent = tmp_path / "parent"
    name = f"lofn-image-{image_id.split(':')[1]}.tar"
    start = time.time() + 3  # after every interpreter is up
    env = {**os.environ, "DOCKER_HOST": bare_engine.host, "PYTHONPATH": str(ROOT)}
    began = time.time()
    tasks = [subprocess.Popen([os.environ.get("PYSPARK_PYTHON", "python3"), "-c", _TASK,
                               str(files), busybox, image_id, name, busybox,
                               str(parent), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    outputs = [task.communicate(timeout=120) for task in tasks]
    try:
        assert all(task.returncode == 0 for task in tasks), outputs
        results = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
        assert results == ["loaded", "present", "present", "present"], outputs
        assert [e["id"] for e in _load_events(bare, began, time.time())] == [image_id]
        assert (parent / ".lofn-image-locks" / f"{image_id.split(':')[1]}.lock").is_file()
        assert bare.images.get(busybox).id == image_id
        waited = sum("waiting for another task" in err for _, err in outputs)
        print(f"\n4 concurrent tasks: {results}; {waited} waited on the lock")
    finally:
        _forget(bare, image_id)


def test_the_loaded_id_is_checked_and_an_id_present_under_another_name_is_tagged(
        bare_engine, saved_busybox, busybox, tmp_path, monkeypatch):
    from pyspark import SparkFiles

    from lofn._images import Shipment
    from lofn.errors import ImageUnavailable

    files, image_id = saved_busybox
    bare = bare_engine.client()
    _forget(bare, image_id)
    monkeypatch.setenv("DOCKER_HOST", bare_engine.host)
    monkeypatch.setattr(SparkFiles, "_is_running_on_worker", True)
    monkeypatch.setattr(SparkFiles, "_root_directory", str(files))
    name = f"lofn-image-{image_id.split(':')[1]}.tar"
    parent = str(tmp_path)
    try:
        # The file holds another image than the driver's (as if replaced on the way).
        other = "sha256:" + "0" * 64
        with pytest.raises(ImageUnavailable) as info:
            Shipment(busybox, other, name, busybox).ensure(bare, parent, 3)
        assert image_id in str(info.value) and other in str(info.value), info.value
        assert info.value.image == busybox and info.value.partition == 3
        # The image is on the engine by ID, but not under the job's name: tagged, not loaded.
        bare.api.tag(image_id, "someone/else", "1")
        bare.images.remove(busybox)
        shipment = Shipment("lofn/busybox:shipped", image_id, name, "lofn/busybox:shipped")
        assert shipment.ensure(bare, parent) == "tagged"
        assert bare.images.get("lofn/busybox:shipped").id == image_id
        assert shipment.ensure(bare, parent) == "present"
        # Nothing to load from: a clear error.
        _forget(bare, image_id)
        with pytest.raises(ImageUnavailable, match="did not reach this executor"):
            Shipment(busybox, image_id, "lofn-image-missing.tar",
                     busybox).ensure(bare, parent)
    finally:
        _forget(bare, image_id)


def test_local_mode_and_bad_arguments(sc, busybox, session_tmp):
    from pyspark import SparkConf

    from lofn.api import DockerPipe
    from lofn.errors import ImageUnavailable, InvalidArgument

    with pytest.raises(InvalidArgument, match="image_pull"):
        DockerPipe(SparkConf(), ship_image=True, image_pull="missing")
    pipe = DockerPipe(SparkConf(), ship_image=True)
    rdd = sc.parallelize(["b", "a"], 2)
    with pytest.raises(ImageUnavailable, match="not on the driver's Docker engine"):
        pipe.map(rdd, "lofn/no-such-image:1", "true")
    with pytest.raises(InvalidArgument, match="digest"):
        pipe.map(rdd, "lofn/busybox@sha256:" + "1" * 64, "true")
    # Local mode: the driver's engine is the executors', so nothing is saved.
    out = pipe.map(rdd, busybox, "sort /shared/input.txt > /shared/output.txt").collect()
    assert sorted(out) == ["a", "b"]
    assert sorted(pipe.pipe(rdd, busybox, "cat").collect()) == ["a", "b"]
    assert not [n for n in os.listdir(session_tmp) if n.startswith("lofn-image-")]


def test_ship_image_to_executors_without_it(standalone_master, bare_engine, busybox,
                                             docker_client, session_tmp):
    cluster = standalone_master
    bare = bare_engine.client()
    expected_id = docker_client.images.get(busybox).id
    assert bare.images.list(all=True) == [], "the executors' engine must start without images"

    command = cluster.submit_command(
        JOB, "--image", busybox, "--partitions", str(PARTITIONS), conf={
            # The run without ship_image fails for sure: no retries (a failed Python task
            # costs a fresh worker, several seconds on a loaded machine).
            "spark.task.maxFailures": "1",
            # The executors (not the driver) use the second engine.
            "spark.executorEnv.DOCKER_HOST": bare_engine.host})
    started_at = time.time()
    # The driver keeps the main engine.
    summary, where, elapsed = run_json_job(command, what="spark-submit", timeout=SUBMIT_TIMEOUT,
                                           logs=cluster.logs, env=cluster.submit_env(session_tmp),
                                           cwd=ROOT)
    ended_at = time.time()
    app = summary["application"]

    # Without ship_image the executors fail, naming the image.
    failure = summary["without_ship"]
    assert failure["error"] == "ImageUnavailable", failure
    assert failure["image"] == busybox, failure
    assert repr(busybox) in failure["message"] and "ship_image=True" in failure["hint"], failure

    # With it: right results, on both executors, which use the second engine.
    assert summary["counts"] == summary["expected_counts"], where
    assert summary["reuse_counts"] == summary["expected_counts"], where
    partitions = summary["map_partitions"]
    assert [p["partition"] for p in partitions] == list(range(PARTITIONS))
    assert {p["docker_host"] for p in partitions} == {bare_engine.host}, partitions
    assert summary["driver_docker_host"] != bare_engine.host
    assert len(summary["executors"]) >= 2, partitions

    # The image is saved once on the driver, by ID, reused, and removed at stop.
    hex_id = expected_id.split(":")[1]
    assert summary["saved_files"] == [f"lofn-image-{hex_id}.tar"], summary
    assert summary["saved_files_after_second_call"] == summary["saved_files"], summary
    assert summary["saved_directory_removed_at_stop"], summary
    assert lofn_temp_entries() == [], f"lofn temp entries left in {session_tmp}"

    # The second engine now has the image, with the driver's ID, loaded once for the host.
    assert bare.images.get(busybox).id == expected_id
    loads = _load_events(bare, started_at, ended_at)
    assert [event["id"] for event in loads] == [expected_id], loads
    logged = []
    for stderr in sorted(cluster.base.glob(f"worker-*/{app}/*/stderr")):
        logged += re.findall(r"loaded image \S+ \((\S+), ([\d.]+) MB\) on host \S+ in "
                             r"([\d.]+) s", stderr.read_text(errors="replace"))
    assert len(logged) == 1, f"expected one 'loaded image' log line: {logged}"
    waits = sum(stderr.read_text(errors="replace").count("waiting for another task")
                for stderr in cluster.base.glob(f"worker-*/{app}/*/stderr"))
    lock = Path(session_tmp, ".lofn-image-locks", f"{hex_id}.lock")
    assert lock.is_file(), f"no lock file {lock}"
    assert bare.containers.list(all=True, sparse=True, filters={"label": "lofn"}) == []

    print(f"\nspark-submit {elapsed:.1f} s (cluster startup {cluster.startup_seconds:.1f} s, "
          f"SparkContext {summary['context_seconds']:.1f} s, failing run without ship_image "
          f"{failure['seconds']:.1f} s); "
          f"saved tar {summary['saved_bytes'][0] / 1e6:.2f} MB, docker save + addFile "
          f"{summary['ship_call_seconds']:.2f} s "
          f"(second call {summary['second_ship_call_seconds']:.3f} s); "
          f"load {logged[0][2]} s on the executors' engine; {waits} task(s) waited on the lock; "
          f"map {summary['map_seconds']:.1f} s, map + reduce {summary['map_reduce_seconds']:.1f} s")


def test_map_dataframe_ships_the_image(standalone_master, bare_engine, busybox, docker_client,
                                       session_tmp):
    """``map_dataframe(..., pipe=DockerPipe(conf, ship_image=True))`` ships like ``map`` does."""
    cluster = standalone_master
    bare = bare_engine.client()
    expected_id = docker_client.images.get(busybox).id
    _forget(bare, expected_id)  # the test above left it loaded
    command = cluster.submit_command(
        JOB, "--image", busybox, "--partitions", str(PARTITIONS), "--dataframe", conf={
            "spark.task.maxFailures": "1",
            "spark.executorEnv.DOCKER_HOST": bare_engine.host})
    summary, where, elapsed = run_json_job(command, what="spark-submit", timeout=SUBMIT_TIMEOUT,
                                           logs=cluster.logs, env=cluster.submit_env(session_tmp),
                                           cwd=ROOT)
    assert summary["counts"] == summary["expected_counts"], where
    assert summary["saved_files"] == [f"lofn-image-{expected_id.split(':')[1]}.tar"], summary
    assert summary["saved_files_after_stop"] == [], summary
    assert bare.images.get(busybox).id == expected_id
    assert bare.containers.list(all=True, sparse=True, filters={"label": "lofn"}) == []
    assert lofn_temp_entries() == [], f"lofn temp entries left in {session_tmp}"
    print(f"\nmap_dataframe with ship_image: spark-submit {elapsed:.1f} s")
