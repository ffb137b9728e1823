"""Faults of the container itself: missing image, non-zero exit, hang, OOM, bad output."""

from __future__ import annotations

import threading
import time

import pytest

from lofn.api import DockerPipe
from lofn.errors import (
    ContainerTimeout,
    DockerFailure,
    ImageUnavailable,
    MissingOutputError,
    OutOfMemory,
    OutputDecodeError,
    from_spark_error,
)
from tests.conftest import lofn_containers, wait_until_clean


def task_error(rdd):
    with pytest.raises(Exception) as info:
        rdd.collect()
    return from_spark_error(info.value)


def jobs_in(sc, group):
    return list(sc.statusTracker().getJobIdsForGroup(group))


def test_missing_image_fails_on_the_driver_before_any_task(sc, pipe, busybox):
    sc.setJobGroup("missing-image", "no job may start")
    try:
        with pytest.raises(ImageUnavailable) as info:
            pipe.reduce(sc.parallelize(["a"], 1), "lofn/no-such-image:1", "true")
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert "'lofn/no-such-image:1'" in str(info.value) and "image_pull" in str(info.value)
    assert jobs_in(sc, "missing-image") == []


def test_missing_image_on_an_executor_is_named_there(docker_client, busybox):
    """Where the driver cannot see the executor's engine, the task says which image and host."""
    from lofn.docker_handler import ContainerSpec, run_container

    with pytest.raises(ImageUnavailable, match="not present on host"):
        run_container(ContainerSpec("lofn/no-such-image:2", "true", partition=3))


def test_pull_policy_pulls_from_a_registry_only_when_asked(sc, busybox, docker_client,
                                                           local_registry):
    image = f"{local_registry}/lofn/pulled:1"
    docker_client.images.get(busybox).tag(image)
    for line in docker_client.images.push(image, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(image)
    from pyspark import SparkConf

    rdd = sc.parallelize(["x"], 1)
    with pytest.raises(ImageUnavailable):
        DockerPipe(SparkConf()).map(rdd, image, "cat /shared/input.txt > /shared/output.txt")
    pulling = DockerPipe(SparkConf(), image_pull="missing")
    try:
        assert pulling.map(rdd, image, "cat /shared/input.txt > /shared/output.txt"
                           ).collect() == ["x"]
        assert docker_client.images.get(image)
    finally:
        docker_client.images.remove(image, force=True)


def test_non_zero_exit_is_a_docker_failure_with_details(sc, pipe, busybox):
    command = "echo working; echo 'something broke' >&2; exit 3"
    failure = task_error(pipe.map(sc.parallelize(["a"], 1), busybox, command))
    assert type(failure) is DockerFailure
    assert (failure.exit_code, failure.partition, failure.image, failure.command) == (
        3, 0, busybox, command)
    assert failure.stderr == "something broke"


def test_exit_zero_without_the_output_file_names_the_file(sc, pipe, busybox):
    failure = task_error(pipe.map(sc.parallelize(["a"], 1), busybox, "true",
                                  container_output_name="result.txt"))
    assert type(failure) is MissingOutputError and "/shared/result.txt" in str(failure)


def test_hanging_container_is_killed_at_its_timeout(sc, busybox, docker_client):
    from pyspark import SparkConf

    pipe = DockerPipe(SparkConf(), timeout=2)
    failure = task_error(pipe.map(sc.parallelize(["a"], 1), busybox,
                                  "echo started >&2; sleep 600"))
    assert type(failure) is ContainerTimeout
    assert "within its timeout of 2 s and was killed" in str(failure)
    assert failure.stderr == "started"
    # a method's own timeout overrides the pipe's
    failure = task_error(DockerPipe(SparkConf()).map(sc.parallelize(["a"], 1), busybox,
                                                     "sleep 600", timeout=1))
    assert type(failure) is ContainerTimeout and "timeout of 1 s" in str(failure)


@pytest.mark.parametrize("timeout", [0, -1, "10", True])
def test_bad_timeout_is_rejected(sc, timeout):
    from pyspark import SparkConf

    with pytest.raises(ValueError, match="timeout must be a positive number"):
        DockerPipe(SparkConf(), timeout=timeout)


def test_out_of_memory_is_reported_with_the_limit(sc, pipe, busybox):
    failure = task_error(pipe.map(
        sc.parallelize(["a"], 1), busybox,
        "head -c 400m /dev/zero | tail > /shared/output.txt",
        docker_options=["--memory", "16m"]))
    assert type(failure) is OutOfMemory
    assert "memory limit (16m)" in str(failure) and failure.exit_code == 137


def test_output_that_is_not_utf8_names_partition_and_offset(sc, pipe, busybox):
    command = "printf 'ok\\nbad \\377\\n' > /shared/output.txt"
    failure = task_error(pipe.map(sc.parallelize(["a", "b"], 2), busybox, command))
    assert type(failure) is OutputDecodeError
    assert "byte offset 7" in str(failure) and "of partition" in str(failure)


def test_binary_mode_returns_the_same_bytes_unchanged(sc, pipe, busybox):
    command = "printf 'ok\\nbad \\377\\n\\000' > /shared/output.bin"
    with pipe.map_binary(sc.parallelize(["a"], 1), busybox, command) as directory:
        merged = pipe.reduce_binary(sc.binaryFiles(directory), busybox, "exit 1")
    assert merged == b"ok\nbad \xff\n\x00"


def test_empty_partitions_start_no_container(sc, pipe, busybox, docker_client):
    started = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            started.extend(c["Id"] for c in lofn_containers(docker_client)
                           if c["Id"] not in started)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = pipe.map(sc.parallelize(["one", "two"], 6), busybox,
                       "sleep 0.5; cat /shared/input.txt > /shared/output.txt").glom().collect()
    finally:
        done.set()
        watcher.join()
    assert [len(p) for p in out].count(0) == 4
    assert sorted(line for p in out for line in p) == ["one", "two"]
    assert len(started) == 2


def test_cancelled_job_leaves_no_container(sc, pipe, busybox, docker_client):
    errors = []

    def run():
        sc.setJobGroup("to-cancel", "cancelled mid-container")
        try:
            pipe.map(sc.parallelize(["a", "b"], 2), busybox, "sleep 600").collect()
        except Exception as exc:  # noqa: BLE001 - the cancellation
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    while len([c for c in lofn_containers(docker_client) if c["State"] == "running"]) < 2:
        assert time.monotonic() < deadline, "the containers never started"
        time.sleep(0.1)
    sc.cancelJobGroup("to-cancel")
    runner.join(timeout=120)
    assert errors and "cancel" in str(errors[0]).lower()
    containers, entries = wait_until_clean(docker_client, seconds=30)
    assert containers == [] and entries == []
