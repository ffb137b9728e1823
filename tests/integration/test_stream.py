"""Streaming mode: partitions through the container's stdin and stdout, no files."""

from __future__ import annotations

import threading
import time

import pytest

from lofn.errors import ContainerTimeout, DockerFailure, OutputDecodeError, from_spark_error


def stream_error(rdd):
    with pytest.raises(Exception) as info:
        rdd.collect()
    return from_spark_error(info.value)


def test_text_records_stream_through_the_command(sc, pipe, busybox):
    rdd = sc.parallelize(["delta", "alpha", "charlie", "bravo", "echo", "ünïcode"], 2)
    assert pipe.pipe(rdd, busybox, "sort").glom().collect() == [
        ["alpha", "charlie", "delta"], ["bravo", "echo", "ünïcode"]]


def test_bytes_mode_is_binary_safe(sc, pipe, busybox):
    blobs = [bytes(range(256)), b"\n\r\x00", b""]
    out = pipe.pipe(sc.parallelize(blobs, 1), busybox, "cat", binary=True).collect()
    assert out == [b"".join(blobs)]  # the whole stdout of the partition, byte for byte
    framed = pipe.pipe(sc.parallelize([b"a\nb", b"c\xff"], 1), busybox, "cat", binary=True,
                       delimiter=b"\0").collect()
    assert framed == [b"a\nb", b"c\xff"]


def test_nul_framing_keeps_embedded_newlines(sc, pipe, busybox):
    records = ["first\nrecord", "second", "third\n\nrecord"]
    out = pipe.pipe(sc.parallelize(records, 1), busybox, "tr a-z A-Z", delimiter="\0")
    assert out.collect() == [r.upper() for r in records]


def test_large_partition_streams(sc, pipe, busybox):
    lines = [f"{i:09d} " + "y" * 90 for i in range(200_000)]  # 20 MB
    out = pipe.pipe(sc.parallelize(lines, 2), busybox, "cat")
    assert out.count() == 200_000 and out.first() == lines[0]


def test_no_files_are_mounted(sc, pipe, busybox, docker_client):
    mounts = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            label = f"lofn.app={sc.applicationId}"
            for c in docker_client.api.containers(filters={"label": label}):
                mounts.append(c.get("Mounts"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert pipe.pipe(sc.parallelize(["x"], 1), busybox, "sleep 1; cat").collect() == ["x"]
    finally:
        done.set()
        watcher.join()
    assert mounts and all(m == [] for m in mounts)


def test_failure_carries_exit_code_and_stderr(sc, pipe, busybox):
    failure = stream_error(pipe.pipe(sc.parallelize(["a"], 1), busybox,
                                     "cat; echo 'stream broke' >&2; exit 4"))
    assert type(failure) is DockerFailure
    assert failure.exit_code == 4 and failure.stderr == "stream broke"


def test_timeout_kills_the_stream(sc, pipe, busybox):
    failure = stream_error(pipe.pipe(sc.parallelize(["a"], 1), busybox, "sleep 600",
                                     timeout=1))
    assert type(failure) is ContainerTimeout


def test_text_output_must_be_utf8(sc, pipe, busybox):
    failure = stream_error(pipe.pipe(sc.parallelize(["a"], 1), busybox, "printf 'ok\\n\\377\\n'"))
    assert type(failure) is OutputDecodeError and "byte offset 3" in str(failure)


def test_empty_partitions_start_no_container(sc, pipe, busybox):
    out = pipe.pipe(sc.parallelize(["x"], 4), busybox, "echo ran").glom().collect()
    assert [line for partition in out for line in partition] == ["ran"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"delimiter": ""}, "delimiter must be a non-empty"),
    ({"delimiter": None}, "text mode needs a delimiter"),
])
def test_bad_framing_is_rejected(sc, pipe, busybox, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        pipe.pipe(sc.parallelize(["a"], 1), busybox, "cat", **kwargs)
