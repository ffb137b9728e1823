"""Streaming mode: partitions through the container's stdin and stdout, no files."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid

import pytest

from lofn._stream import run_streaming
from lofn.docker_handler import ContainerSpec
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


def test_timeout_ends_a_stream_whose_input_is_not_read(sc, pipe, busybox):
    lines = [f"{i:09d}" for i in range(1_000_000)]  # more than the connection holds
    failure = stream_error(pipe.pipe(sc.parallelize(lines, 1), busybox, "sleep 600", timeout=2))
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


# ---------------------------------------------------------------------------
# records cut across the engine's reads: the stream is read in large pieces, wherever
# the engine's frames end (tests/unit/test_stream.py cuts them at every byte)

def digest(data) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def test_records_and_a_two_byte_delimiter_cut_across_reads(sc, pipe, busybox):
    records = [f"{i:07d}" + "é" * (i % 50) for i in range(100_000)]  # 7.8 MB
    out = pipe.pipe(sc.parallelize(records, 1), busybox, "cat", delimiter="\r\n").collect()
    assert out == records


def test_empty_records_and_an_unterminated_last_record(sc, pipe, busybox):
    assert pipe.pipe(sc.parallelize(["a", "", ""], 1), busybox, "cat").collect() == ["a", "", ""]
    out = pipe.pipe(sc.parallelize(["x"], 1), busybox, "cat >/dev/null; printf 'a\\n\\nb'")
    assert out.collect() == ["a", "", "b"]


def test_a_huge_single_record_comes_whole(sc, pipe, busybox):
    record = "".join(f"{i:08d}" for i in range(2_500_000))  # 20 MB, no delimiter inside
    out = pipe.pipe(sc.parallelize([record], 1), busybox, "cat").map(digest).collect()
    assert out == [digest(record)]


def test_binary_bytes_through_the_stream(sc, pipe, busybox):
    rng = random.Random(5)
    blob = rng.randbytes(8 << 20)
    pieces = [blob[i:i + 65536] for i in range(0, len(blob), 65536)]
    out = pipe.pipe(sc.parallelize(pieces, 1), busybox, "cat", binary=True).map(digest)
    assert out.collect() == [digest(blob)]
    records = [r for r in (rng.randbytes(rng.randint(0, 5000)) for _ in range(3000))
               if b"\r\n" not in r]
    framed = pipe.pipe(sc.parallelize(records, 1), busybox, "cat", binary=True,
                       delimiter=b"\r\n").collect()
    assert framed == records


def test_a_decode_error_far_into_the_stream_names_its_offset(sc, pipe, busybox):
    lines = ["x" * 99] * 50_000  # 5,000,000 bytes with the newlines
    failure = stream_error(pipe.pipe(sc.parallelize(lines, 1), busybox, "cat; printf 'ok\\377'"))
    assert type(failure) is OutputDecodeError and "byte offset 5000002" in str(failure)


def test_a_command_that_stops_reading_early_ends_the_stream(sc, pipe, busybox):
    lines = [f"{i:09d}" for i in range(1_000_000)]
    assert pipe.pipe(sc.parallelize(lines, 1), busybox, "head -n 2").collect() == lines[:2]


def test_a_command_that_closes_its_output_first_still_gets_all_its_input(sc, pipe, busybox):
    lines = [f"{i:09d}" for i in range(1_000_000)]
    command = 'exec 1>&- 2>&-; sleep 1; [ "$(wc -l)" = 1000000 ]'
    assert pipe.pipe(sc.parallelize(lines, 1), busybox, command).collect() == []


def test_a_stream_read_in_part_is_abandoned_cleanly(sc, pipe, busybox):
    lines = [f"{i:09d}" for i in range(1_000_000)]
    assert pipe.pipe(sc.parallelize(lines, 1), busybox, "cat").take(3) == lines[:3]


def test_an_abandoned_stream_joins_its_writer_and_removes_its_container(docker_client, busybox):
    app = f"stream-abandon-{uuid.uuid4().hex[:8]}"
    spec = ContainerSpec(busybox, "cat", options={"network_mode": "none"},
                         labels={"lofn.app": app}, partition=0)
    taken = []

    def endless():
        while True:
            taken.append(1)
            yield b"y" * 65535 + b"\n"

    stdout = run_streaming(spec, endless())
    assert next(stdout).startswith(b"y")
    assert docker_client.containers.list(filters={"label": f"lofn.app={app}"})
    stdout.close()
    assert [t for t in threading.enumerate() if t.name == "lofn-stdin"] == []
    assert docker_client.containers.list(all=True, filters={"label": f"lofn.app={app}"}) == []
    assert taken  # the writer took input, and stopped with the stream (it was joined)
