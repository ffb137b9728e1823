"""A hostile image: the container plants links and special files where lofn reads, writes
and moves, on the real engine and real Spark, for every method.

Each container here may leave a symbolic link (absolute, relative, or as a
directory on the output's path) pointing at a host file it cannot see, a
FIFO, or a directory, where lofn expects its output. The host must refuse
each with :class:`~lofn.errors.UnsafeOutputError` before reading a byte of
it, and the host file's content must appear in no result, output directory,
cache entry or error message; no host file may change. Reuse mode (warm
containers) also races a background process against the next partitions'
inputs: tests/faults/jobs/hostile_reuse_job.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lofn.api import DockerPipe
from lofn.errors import UnsafeOutputError
from tests.hostile import refused

ROOT = Path(__file__).resolve().parents[2]
REUSE_JOB = Path(__file__).parent / "jobs" / "hostile_reuse_job.py"
NETWORK = ["--network", "none"]

KINDS = ["absolute link", "relative link", "fifo", "directory"]


@pytest.mark.parametrize("kind", KINDS)
def test_map_refuses_what_is_not_a_regular_output(sc, pipe, busybox, host, kind):
    rdd = sc.parallelize(["a", "b"], 2)
    failure = refused(lambda: pipe.map(rdd, busybox, host.plant(kind)).collect())
    assert "/shared/output.txt" in failure.message and kind.split()[-1] in failure.message.lower()
    host.assert_untouched(str(failure))


def test_map_refuses_a_link_on_the_output_path(sc, pipe, busybox, host):
    rdd = sc.parallelize(["a"], 1)
    name = "out/secret.txt"  # out -> the host directory holding secret.txt
    failure = refused(lambda: pipe.map(rdd, busybox, host.plant("link on the way", name),
                                       container_output_name=name).collect())
    assert "lies behind" in failure.message and "symbolic link" in failure.message
    host.assert_untouched(str(failure))


@pytest.mark.parametrize("kind", ["absolute link", "relative link", "fifo"])
def test_map_binary_refuses_and_moves_nothing(sc, pipe, busybox, host, kind):
    rdd = sc.parallelize(["a", "b"], 2)
    seen = []
    with (pytest.raises(UnsafeOutputError) as info,
          pipe.map_binary(rdd, busybox, host.plant(kind, "output.bin")) as directory):
        seen.append(directory)
    assert not seen  # the block never ran: the map failed first
    host.assert_untouched(str(info.value), paths=(host.directory.parent,))


def test_reduce_refuses_a_linked_output(sc, pipe, busybox, host):
    mapped = pipe.map(sc.parallelize(["a", "b", "c", "d"], 4), busybox,
                      "cat /shared/input.txt > /shared/output.txt")
    failure = refused(lambda: pipe.reduce(mapped, busybox, host.plant("absolute link")))
    host.assert_untouched(str(failure))


@pytest.mark.parametrize("max_fan_in", [2, 3])
def test_reduce_binary_refuses_a_linked_output(sc, pipe, busybox, host, max_fan_in):
    failure = refused(lambda: pipe.reduce_binary(
        sc.parallelize([b"x", b"y", b"z"], 3), busybox, host.plant("relative link", "output.bin"),
        max_fan_in=max_fan_in))
    host.assert_untouched(str(failure))


def test_reduce_by_key_refuses_a_linked_output(sc, pipe, busybox, host):
    records = sc.parallelize([f"k{i % 3}\t{i}" for i in range(12)], 3)
    failure = refused(lambda: pipe.reduce_by_key(records, busybox, host.plant("fifo")).collect())
    host.assert_untouched(str(failure))


def test_map_dataframe_refuses_a_linked_output(sc, busybox, host):
    from pyspark.sql import SparkSession

    from lofn.dataframe import map_dataframe

    spark = SparkSession.builder.getOrCreate()
    frame = spark.createDataFrame([(line,) for line in "abcd"], "value STRING").repartition(2)
    failure = refused(lambda: map_dataframe(frame, busybox, host.plant("absolute link"),
                                            docker_options=NETWORK).collect())
    host.assert_untouched(str(failure))


def test_result_cache_stores_and_serves_no_host_file(sc, busybox, host, tmp_path):
    from pyspark import SparkConf

    cache = tmp_path / "cache"
    pipe = DockerPipe(SparkConf(), result_cache=str(cache))
    rdd = sc.parallelize(["a", "b"], 2)
    failure = refused(lambda: pipe.map(rdd, busybox, host.plant("absolute link")).collect())
    # the same inputs again: nothing cached to serve, the container runs and is refused again
    again = refused(lambda: pipe.map(rdd, busybox, host.plant("absolute link")).collect())
    host.assert_untouched(str(failure), str(again), paths=(cache,))
    stored = [name for _, _, files in os.walk(cache) for name in files]
    assert stored == [], f"entries stored for refused outputs: {stored}"


def test_cli_refuses_a_linked_output(busybox, host, session_tmp, tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("a\nb\n")
    output = tmp_path / "output.txt"
    env = dict(os.environ, TMPDIR=session_tmp,
               JDK_JAVA_OPTIONS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    result = subprocess.run(
        [sys.executable, "-m", "lofn", "map", "--master", "local[2]", "--conf",
         "spark.ui.enabled=false", "--docker-option=--network=none", "--image", busybox,
         "--command", host.plant("absolute link"), str(source), "-o", str(output)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "not a regular file: the host refused" in result.stderr, result.stderr
    assert not output.exists()
    host.assert_untouched(result.stdout, result.stderr, paths=(tmp_path,))


def test_reuse_mode_isolates_partitions_and_refuses_links(busybox, session_tmp):
    result = subprocess.run([sys.executable, str(REUSE_JOB), busybox], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # the racing background process never made lofn write a host file
    assert report["victim_unchanged"], report
    assert report["counts"] == report["expected_counts"]
    # nothing a partition started was running when a later partition began
    assert report["survivors"] == [0] * report["partitions"], report["survivors"]
    assert report["partitions_per_container"] > 1, report  # the containers were reused
    assert report["link_refused"] == "UnsafeOutputError" and not report["secret_in_error"]
    assert report["binary_parts"] == [f"part-{i:05d}.bin" for i in range(4)]
    assert report["binary_lines_match"]
    assert report["binary_refused"] == "UnsafeOutputError"
    assert not report["secret_in_binary_error"]
    assert report["left_containers"] == 0 and report["left_dirs"] == []


RUNNER_JOB = Path(__file__).parent / "jobs" / "hostile_runner_job.py"


def test_a_partition_cannot_send_the_runner_requests(busybox, session_tmp):
    """Partition 0 writes a request into the runner's stdin pipe (through /proc/1/fd); run,
    it would answer for every later partition with a forged output. It lacks lofn's key."""
    result = subprocess.run([sys.executable, str(RUNNER_JOB), busybox], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = [f"row {i}" for i in range(4)]
    # the runner refused it and stopped: the next partition ran in a new container, or
    # (if it came before the runner had stopped) failed saying why
    if "error" in report:
        assert report["error"] == "DockerFailure" and "not lofn's" in report["message"], report
    else:
        assert report["lines"] == rows, report
    assert report["after"] == rows
    assert report["left"] == 0


PIPE_JOB = Path(__file__).parent / "jobs" / "hostile_pipe_job.py"


def test_a_pipe_command_cannot_forge_the_next_partitions_output(busybox, session_tmp):
    """Partition 0 of a pipe() in a warm container leaves a process writing FORGED into the
    stdout of every other process in the container; partition 1 must not stream through it."""
    result = subprocess.run([sys.executable, str(PIPE_JOB), busybox], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["records"] == ["hostile", "row 1", "next", "row 3"]
    assert report["left"] == 0
