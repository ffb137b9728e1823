"""DockerPipe.reduce and reduce_binary: a tree of merges on the executors."""

from __future__ import annotations

import gzip
import math
import os

import pytest

from lofn.errors import DockerFailure

from .helpers import MAP_COMMAND, REDUCE_COMMAND, make_text, parse_counts, python_counts

# Appends a line per merge, so the output tells how many containers merged blocks.
COUNT_MERGES = "cat /shared/input.txt > /shared/output.txt; echo merge >> /shared/output.txt"


def stages_of(sc, group: str) -> int:
    tracker = sc.statusTracker()
    return sum(len(tracker.getJobInfo(job).stageIds) for job in tracker.getJobIdsForGroup(group))


@pytest.mark.parametrize("partitions", [1, 2, 7, 16])
def test_word_count_equals_python_count(sc, pipe, busybox, partitions):
    text = make_text(3000, seed=partitions)
    counts = pipe.map(sc.parallelize(text, partitions), busybox, MAP_COMMAND)
    result = pipe.reduce(counts, busybox, REDUCE_COMMAND)
    assert parse_counts(result) == python_counts(text)
    assert result == sorted(result, key=lambda line: (-int(line.split("\t")[1]), line))


def test_tree_equals_one_container_over_all_data(sc, pipe, busybox):
    counts = pipe.map(sc.parallelize(make_text(1000), 9), busybox, MAP_COMMAND)
    tree = pipe.reduce(counts, busybox, REDUCE_COMMAND)
    single = pipe.map(counts.coalesce(1), busybox, REDUCE_COMMAND).collect()
    assert tree == single


@pytest.mark.parametrize("partitions", [2, 5, 8, 13])
def test_blocks_merge_in_log2_rounds_of_pairs(sc, pipe, busybox, partitions):
    rdd = sc.parallelize([f"line {i}" for i in range(20 * partitions)], partitions)
    group = f"rounds-{partitions}"
    sc.setJobGroup(group, "count the rounds")
    try:
        result = pipe.reduce(rdd, busybox, COUNT_MERGES, max_fan_in=2)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    # one container per merge of two blocks: P - 1 in all, never one per element
    assert result.count("merge") == partitions - 1
    assert sorted(line for line in result if line != "merge") == sorted(rdd.collect())
    # the blocks stage, then one stage per round
    assert stages_of(sc, group) == 1 + math.ceil(math.log2(partitions))


@pytest.mark.parametrize("partitions, max_fan_in, containers", [
    (16, 32, 3),   # 2 cores: 2 containers of 8 blocks, then 1 of 2
    (16, 4, 5),    # 4 containers of 4 blocks, then 1 of the 4 left
    (5, 32, 3),    # 2 containers (3 + 2 blocks), then 1 of 2
])
def test_default_reduce_merges_many_blocks_per_container(sc, pipe, busybox, partitions,
                                                         max_fan_in, containers):
    rdd = sc.parallelize([f"line {i}" for i in range(10 * partitions)], partitions)
    result = pipe.reduce(rdd, busybox, COUNT_MERGES, max_fan_in=max_fan_in)
    assert result.count("merge") == containers
    assert sorted(line for line in result if line != "merge") == sorted(rdd.collect())


@pytest.mark.parametrize("max_fan_in", [2, 3, 32])
def test_fan_in_does_not_change_the_result(sc, pipe, busybox, max_fan_in):
    text = make_text(2000, seed=11)
    counts = pipe.map(sc.parallelize(text, 12), busybox, MAP_COMMAND)
    assert parse_counts(pipe.reduce(counts, busybox, REDUCE_COMMAND, max_fan_in=max_fan_in)
                        ) == python_counts(text)


def test_bad_fan_in_is_rejected(sc, pipe, busybox):
    with pytest.raises(ValueError, match="max_fan_in must be a whole number >= 2, got 1"):
        pipe.reduce(sc.parallelize(["a"], 1), busybox, "true", max_fan_in=1)


def test_single_partition_still_goes_through_the_command(sc, pipe, busybox):
    assert pipe.reduce(sc.parallelize(["a", "b"], 1), busybox, COUNT_MERGES) == ["a", "b", "merge"]


def test_empty_partitions_are_not_blocks(sc, pipe, busybox):
    rdd = sc.parallelize(["a", "b", "c"], 8)  # five empty partitions
    result = pipe.reduce(rdd, busybox, COUNT_MERGES, max_fan_in=2)
    assert result.count("merge") == 2
    assert sorted(x for x in result if x != "merge") == ["a", "b", "c"]


def test_all_empty_rdd_is_a_value_error(sc, pipe, busybox):
    with pytest.raises(ValueError, match="empty"):
        pipe.reduce(sc.parallelize([], 3), busybox, COUNT_MERGES)


def test_old_style_nested_partitions_still_reduce(sc, pipe, busybox):
    """Scripts for the old lofn nested each partition in a list before reduce."""
    text = make_text(400)
    counts = pipe.map(sc.parallelize(text, 4), busybox, MAP_COMMAND)
    nested = counts.mapPartitions(lambda partition: [list(partition)])
    assert parse_counts(pipe.reduce(rdd=nested, image_name=busybox, command=REDUCE_COMMAND)
                        ) == python_counts(text)


def test_custom_names_and_reduce_udf(sc, pipe, busybox):
    def sides(left, right):
        assert isinstance(left, list) and isinstance(right, list)
        return {"left.txt": left, "right.txt": right}

    rdd = sc.parallelize(["3", "1", "4", "1", "5", "9", "2", "6"], 4)
    command = "sort -n /shared/left.txt /shared/right.txt > /shared/merged.txt"
    result = pipe.reduce(rdd, busybox, command, reduce_udf=sides,
                         container_output_name="merged.txt")
    assert result == ["1", "1", "2", "3", "4", "5", "6", "9"]
    renamed = pipe.reduce(rdd, busybox, "sort -n /shared/in.txt > /shared/out.txt",
                          container_input_name="in.txt", container_output_name="out.txt")
    assert renamed == result


def test_driver_needs_no_docker_engine(sc, pipe, busybox, monkeypatch):
    """Executor workers were started with the real engine; the driver gets a dead one."""
    import lofn._engine
    import lofn.docker_handler

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(lofn._engine, "_clients", {})
    text = make_text(300)
    counts = pipe.map(sc.parallelize(text, 4), busybox, MAP_COMMAND)
    assert parse_counts(pipe.reduce(counts, busybox, REDUCE_COMMAND)) == python_counts(text)
    with pytest.raises(Exception, match="cannot reach the Docker engine"):
        lofn.docker_handler.get_client()


def test_failing_merge_raises_docker_failure_on_the_driver(sc, pipe, busybox):
    with pytest.raises(DockerFailure) as info:
        pipe.reduce(sc.parallelize(["a", "b", "c", "d"], 4), busybox,
                    "echo 'merge failed' >&2; exit 7")
    assert info.value.exit_code == 7 and "merge failed" in info.value.stderr
    assert info.value.image == busybox


def test_reduce_returns_large_results_intact(sc, pipe, busybox):
    lines = [f"{i:07d} " + "x" * 90 for i in range(40_000)]  # ~4 MB: several chunks per block
    result = pipe.reduce(sc.parallelize(lines, 3), busybox,
                         "sort /shared/input.txt > /shared/output.txt")
    assert result == sorted(lines)


# -- binary -------------------------------------------------------------------------

GZIP = "gzip -c /shared/input.txt > /shared/output.bin"
CONCAT = "cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin"


def test_map_binary_then_reduce_binary(sc, pipe, busybox):
    text = make_text(900)
    rdd = sc.parallelize(text, 6)
    with pipe.map_binary(rdd, busybox, GZIP) as directory:
        assert sorted(os.listdir(directory)) == [f"part-{i:05d}.bin" for i in range(6)]
        files = sc.binaryFiles(directory)
        merged = pipe.reduce_binary(files, busybox, CONCAT)
    assert not os.path.exists(directory)
    assert isinstance(merged, bytes)
    assert sorted(gzip.decompress(merged).decode().splitlines()) == sorted(text)


def test_map_binary_with_udf_and_custom_names(sc, pipe, busybox):
    def udf(partition):
        return {"a.txt": partition, "b.txt": [x.upper() for x in partition]}

    rdd = sc.parallelize(["x", "y", "z"], 3)
    with pipe.map_binary(rdd, busybox, "cat /shared/a.txt /shared/b.txt | gzip > /shared/r.gz",
                         map_udf=udf, container_binary_output_name="r.gz") as directory:
        assert sorted(os.listdir(directory)) == ["part-00000.gz", "part-00001.gz", "part-00002.gz"]
        merged = pipe.reduce_binary(
            sc.binaryFiles(directory), busybox, "cat /shared/l /shared/r > /shared/o",
            container_binary_input_1_name="l", container_binary_input_2_name="r",
            container_binary_output_name="o")
    assert sorted(gzip.decompress(merged).decode().split()) == ["X", "Y", "Z", "x", "y", "z"]


def test_map_binary_directory_removed_on_error(sc, pipe, busybox):
    with (pytest.raises(RuntimeError, match="user code failed"),
          pipe.map_binary(sc.parallelize(["a"], 1), busybox, GZIP) as directory):
        raise RuntimeError("user code failed")
    assert not os.path.exists(directory)


def test_map_binary_failure_raises_on_the_driver(sc, pipe, busybox):
    with (pytest.raises(DockerFailure, match="exited with code 4"),
          pipe.map_binary(sc.parallelize(["a", "b"], 2), busybox, "exit 4")):
        pytest.fail("the block must not run")


def test_reduce_binary_of_plain_bytes_and_udf(sc, pipe, busybox):
    blobs = [bytes([i]) * (i + 1) for i in range(5)]  # 5 elements over 2 partitions
    merged = pipe.reduce_binary(sc.parallelize(blobs, 2), busybox, CONCAT)
    assert sorted(merged) == sorted(b"".join(blobs))

    def udf(left, right):
        return {"input.bin": left + right}

    merged = pipe.reduce_binary(sc.parallelize(blobs, 2), busybox,
                                "cp /shared/input.bin /shared/output.bin", reduce_udf=udf)
    assert sorted(merged) == sorted(b"".join(blobs))


def test_reduce_binary_single_element_is_returned_unmerged(sc, pipe, busybox):
    assert pipe.reduce_binary(sc.parallelize([b"\x00only\xff"], 1), busybox, "exit 1") == \
        b"\x00only\xff"


# -- binary fan-in (max_fan_in > 2) ------------------------------------------------

# the numbered inputs, listed by a shell glob: in block order, since the names are padded
CAT_GLOB = "cat /shared/input_*.bin > /shared/output.bin"
# the inputs in the order inputs.txt lists them (their container paths)
CAT_LISTED = "cat $(cat /shared/inputs.txt) > /shared/output.bin"


def blobs_of(count: int) -> list[bytes]:
    """``count`` distinct binary blocks of different sizes, one of them empty."""
    return [bytes([(7 * index + size) % 256 for size in range(index % 5 * 3)]) + b"\x00\xff"
            * index for index in range(count)]


@pytest.mark.parametrize("elements, partitions, max_fan_in", [
    (1, 1, 3),    # a single block: returned unmerged
    (2, 1, 3),    # one merge of two
    (10, 4, 3),   # not a power of 3: rounds of 3, 3 and 2 blocks
    (9, 2, 3),    # a power of 3
    (16, 3, 8),
    (40, 6, 32),  # round 1 runs one merge per core, each of 20 blocks
])
def test_fan_in_equals_pairwise_tree_and_serial_concatenation(sc, pipe, busybox, elements,
                                                             partitions, max_fan_in):
    blobs = blobs_of(elements)
    rdd = sc.parallelize(blobs, partitions)
    serial = b"".join(blobs)
    assert pipe.reduce_binary(rdd, busybox, CONCAT) == serial  # the pairwise tree
    assert pipe.reduce_binary(rdd, busybox, CAT_GLOB, max_fan_in=max_fan_in) == serial
    assert pipe.reduce_binary(rdd, busybox, CAT_LISTED, max_fan_in=max_fan_in) == serial


def test_max_fan_in_2_is_the_pairwise_tree_with_named_inputs(sc, pipe, busybox):
    rdd = sc.parallelize(blobs_of(5), 2)
    pairwise = pipe.reduce_binary(rdd, busybox, CONCAT)
    assert pipe.reduce_binary(rdd, busybox, CONCAT, max_fan_in=2) == pairwise
    with pytest.raises(DockerFailure, match="exited with code 1"):  # no numbered inputs
        pipe.reduce_binary(rdd, busybox, "test -e /shared/input_001.bin", max_fan_in=2)


def test_fan_in_of_large_blocks_and_binary_files(sc, pipe, busybox):
    """Blocks of several shuffle chunks, and the (path, bytes) pairs of sc.binaryFiles."""
    text = make_text(1200, seed=3)
    with pipe.map_binary(sc.parallelize(text, 7), busybox, GZIP) as directory:
        files = sc.binaryFiles(directory)
        merged = pipe.reduce_binary(files, busybox, CAT_LISTED, max_fan_in=4)
    assert sorted(gzip.decompress(merged).decode().splitlines()) == sorted(text)
    large = [bytes([index]) * (2_500_000 + index) for index in range(5)]  # 3 chunks each
    assert pipe.reduce_binary(sc.parallelize(large, 2), busybox, CAT_GLOB,
                              max_fan_in=5) == b"".join(large)


def test_fan_in_containers_get_numbered_inputs_and_their_list(sc, pipe, busybox):
    # each merge appends what it saw in /shared/ and in inputs.txt to the concatenation
    command = ("files=$(ls /shared | tr '\\n' ' '); list=$(tr '\\n' ' ' < /shared/inputs.txt); "
               "{ cat /shared/input_*.bin; echo \"[$files|$list]\"; } > /shared/output.bin")

    def seen(count: int) -> bytes:
        names = [f"input_{number:03d}.bin" for number in range(1, count + 1)]
        paths = " ".join(f"/shared/{name}" for name in names)
        return f"[{' '.join(names)} inputs.txt |{paths} ]\n".encode()

    blobs = [f"b{index};".encode() for index in range(8)]
    result = pipe.reduce_binary(sc.parallelize(blobs, 4), busybox, command, max_fan_in=4)
    # 2 cores: 2 containers of 4 blocks each, then 1 of the 2 merged blocks
    first, second = b"".join(blobs[:4]) + seen(4), b"".join(blobs[4:]) + seen(4)
    assert result == first + second + seen(2)


def test_fan_in_input_pattern_and_a_lone_leftover(sc, pipe, busybox):
    """A custom pattern; 7 blocks in merges of 3 leave one block that skips a round."""
    command = "cat /shared/part.*.bam > /shared/merged.bam; echo + >> /shared/merged.bam"
    blobs = [f"{index}".encode() for index in range(7)]
    result = pipe.reduce_binary(sc.parallelize(blobs, 1), busybox, command, max_fan_in=3,
                                container_binary_inputs_name="part.{:02d}.bam",
                                container_binary_output_name="merged.bam")
    # 2 cores: rounds of 3 (012, 345, 6 alone: no container) and 3
    assert result == b"012+\n345+\n6+\n"


@pytest.mark.parametrize("keywords, message", [
    (dict(max_fan_in=1), "max_fan_in must be a whole number from 2 to 32, got 1"),
    (dict(max_fan_in=33), "max_fan_in must be a whole number from 2 to 32, got 33"),
    (dict(max_fan_in=True), "got True"),
    (dict(max_fan_in=8, reduce_udf=lambda left, right: {"input.bin": left + right}),
     "reduce_udf merges two blocks at a time"),
    (dict(max_fan_in=8, container_binary_input_1_name="a.bin"), "is not used"),
])
def test_bad_fan_in_is_refused_before_any_spark_job(sc, pipe, busybox, keywords, message):
    sc.setJobGroup("bad-fan-in", "no job may start")
    try:
        with pytest.raises(ValueError, match=None) as info:
            pipe.reduce_binary(sc.parallelize([b"a", b"b"], 2), busybox, CAT_GLOB, **keywords)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert message in str(info.value)
    assert list(sc.statusTracker().getJobIdsForGroup("bad-fan-in")) == []


def test_failing_fan_in_merge_raises_docker_failure(sc, pipe, busybox):
    with pytest.raises(DockerFailure) as info:
        pipe.reduce_binary(sc.parallelize([b"a", b"b", b"c"], 3), busybox,
                           "echo 'cannot merge' >&2; exit 3", max_fan_in=3)
    assert info.value.exit_code == 3 and "cannot merge" in info.value.stderr


def test_empty_rdd_is_a_value_error_with_fan_in(sc, pipe, busybox):
    with pytest.raises(ValueError, match="empty"):
        pipe.reduce_binary(sc.parallelize([], 2), busybox, CAT_GLOB, max_fan_in=4)
