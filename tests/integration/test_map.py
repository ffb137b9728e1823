"""DockerPipe.map on a real Docker engine and local Spark."""

from __future__ import annotations

import threading
import time

import pytest

from lofn.api import DockerPipe
from lofn.errors import DockerFailure, InvalidArgument, MissingOutputError, from_spark_error

from .helpers import MAP_COMMAND, make_text, parse_counts, python_counts


def collect_error(rdd) -> BaseException:
    with pytest.raises(Exception) as info:
        rdd.collect()
    return info.value


def test_word_count_map_per_partition(sc, pipe, busybox):
    text = make_text(2000)
    rdd = sc.parallelize(text, 6)
    per_partition = pipe.map(rdd, busybox, MAP_COMMAND).glom().collect()
    assert len(per_partition) == 6
    for lines, expected in zip(per_partition, rdd.glom().collect(), strict=True):
        assert parse_counts(lines) == python_counts(expected)


def test_text_file_input(sc, pipe, busybox, tmp_path):
    path = tmp_path / "input.txt"
    text = make_text(500)
    path.write_text("\n".join(text) + "\n")
    rdd = sc.textFile(str(path), minPartitions=4)
    totals = {}
    for word, count in parse_counts_from_many(pipe.map(rdd, busybox, MAP_COMMAND).collect()):
        totals[word] = totals.get(word, 0) + count
    assert totals == python_counts(text)


def parse_counts_from_many(lines):
    for line in lines:
        word, count = line.split("\t")
        yield word, int(count)


def test_custom_input_and_output_names(sc, pipe, busybox):
    rdd = sc.parallelize(["b", "a", "c"], 1)
    out = pipe.map(rdd, busybox, "sort /shared/in/data.tsv > /shared/result.out",
                   container_input_name="in/data.tsv", container_output_name="result.out")
    assert out.collect() == ["a", "b", "c"]


def test_map_udf_writes_several_files(sc, pipe, busybox):
    def split_pairs(partition):
        return {"left.txt": (key for key, _ in partition),
                "right.txt": (value for _, value in partition),
                "header.txt": "k\tv\n"}

    rdd = sc.parallelize([("a", 1), ("b", 2), ("c", 3), ("d", 4)], 2)
    command = ("cat /shared/header.txt > /shared/output.txt;"
               " paste /shared/left.txt /shared/right.txt >> /shared/output.txt")
    assert pipe.map(rdd, busybox, command, map_udf=split_pairs).collect() == [
        "k\tv", "a\t1", "b\t2", "k\tv", "c\t3", "d\t4"]


def test_user_volume_is_read_by_every_container(sc, busybox, tmp_path):
    from pyspark import SparkConf

    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "genome.fa").write_text(">chr1\nACGT\n")
    pipe = DockerPipe(SparkConf(), volumes={str(reference): {"bind": "/ref"}})
    rdd = sc.parallelize(range(8), 8)
    command = ("head -n 1 /ref/genome.fa > /shared/output.txt;"
               " touch /ref/written 2>/dev/null && echo writable >> /shared/output.txt; true")
    assert pipe.map(rdd, busybox, command).collect() == [">chr1"] * 8
    assert not (reference / "written").exists()  # read-only by default


def test_rw_volume_can_be_written(sc, busybox, tmp_path):
    from pyspark import SparkConf

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    pipe = DockerPipe(SparkConf(), volumes={str(scratch): {"bind": "/scratch", "mode": "rw"}})
    rdd = sc.parallelize(["x"], 1)
    pipe.map(rdd, busybox, "cp /shared/input.txt /scratch/copy; echo ok > /shared/output.txt"
             ).collect()
    assert (scratch / "copy").read_text() == "x\n"


def test_command_reaches_sh_exactly_as_written(sc, pipe, busybox):
    command = ("x='a  b'; y=\"it's\"; echo \"$x|$y|$((6 * 7))|${x%% *}\" > /shared/output.txt;"
               " printf '%s\\n' 'single $HOME stays' \"tab:\t.\" | tr a-z A-Z"
               " >> /shared/output.txt")
    assert pipe.map(sc.parallelize(["-"], 1), busybox, command).collect() == [
        "a  b|it's|42|a", "SINGLE $HOME STAYS", "TAB:\t."]


def test_image_without_bash(sc, pipe, busybox):
    command = ("if command -v bash >/dev/null; then echo has-bash; else echo no-bash; fi"
               " > /shared/output.txt")
    assert pipe.map(sc.parallelize(["-"], 1), busybox, command).collect() == ["no-bash"]


def test_empty_partitions_start_no_container(sc, pipe, busybox):
    rdd = sc.parallelize(["one", "two"], 6)  # four of six partitions are empty
    out = pipe.map(rdd, busybox, "echo ran > /shared/output.txt").glom().collect()
    assert sum(len(p) for p in out) == 2
    assert [len(p) for p in out].count(0) == 4


def test_unicode_and_long_lines_round_trip(sc, pipe, busybox):
    lines = ["ünïcödé ✓", "x" * 100_000, "", "tab\there"]
    out = pipe.map(sc.parallelize(lines, 1), busybox, "cat /shared/input.txt > /shared/output.txt")
    assert out.collect() == lines


def test_docker_options_reach_the_container(sc, pipe, busybox):
    command = 'echo "$GREETING|$(pwd)|$(id -u)" > /shared/output.txt'
    out = pipe.map(sc.parallelize(["-"], 1), busybox, command,
                   docker_options=["-e", "GREETING=hello world", "--workdir=/tmp",
                                   "--memory", "64m", "-u", "4321:4321", "--read-only",
                                   "--network=none", "--cpus", "0.5"])
    assert out.collect() == ["hello world|/tmp|4321"]


def test_unsupported_docker_option_fails_on_the_driver(sc, pipe, busybox):
    with pytest.raises(InvalidArgument, match="--restart"):
        pipe.map(sc.parallelize(["-"], 1), busybox, "true", docker_options=["--restart=always"])


@pytest.mark.parametrize("kwargs, fragment", [
    ({"image_name": "", "command": "true"}, "image_name"),
    ({"image_name": "lofn/busybox", "command": "  "}, "command"),
    ({"image_name": "lofn/busybox", "command": "true", "container_output_name": "../x"},
     "container_output_name"),
    ({"image_name": "lofn/busybox", "command": "true", "map_udf": "not callable"}, "map_udf"),
    ({"image_name": "lofn/busybox", "command": "true", "reduce_udf": len}, "reduce_udf"),
])
def test_bad_arguments_fail_on_the_driver(sc, pipe, kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        pipe.map(sc.parallelize(["-"], 1), **kwargs)


def test_non_zero_exit_raises_docker_failure(sc, pipe, busybox):
    command = "echo working; echo 'something broke' >&2; exit 3"
    error = collect_error(pipe.map(sc.parallelize(["a", "b"], 2), busybox, command))
    failure = from_spark_error(error)
    assert type(failure) is DockerFailure
    assert failure.exit_code == 3 and failure.image == busybox and failure.command == command
    assert failure.partition in (0, 1)
    assert "something broke" in failure.stderr and "working" not in failure.stderr


def test_missing_output_file_is_named(sc, pipe, busybox):
    error = collect_error(pipe.map(sc.parallelize(["a"], 1), busybox, "echo nothing > /dev/null",
                                   container_output_name="result.txt"))
    failure = from_spark_error(error)
    assert type(failure) is MissingOutputError
    assert "/shared/result.txt" in str(failure)


def test_containers_carry_labels(sc, pipe, busybox, docker_client):
    seen = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            mine = {"label": f"lofn.app={sc.applicationId}"}
            for container in docker_client.api.containers(filters=mine):
                seen[container["Id"]] = container["Labels"]
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        pipe.map(sc.parallelize(range(2), 2), busybox,
                 "sleep 1; echo done > /shared/output.txt").collect()
    finally:
        done.set()
        watcher.join()
    assert len(seen) == 2
    for labels in seen.values():
        assert labels["lofn.app"] == sc.applicationId
        assert labels["lofn.partition"] in ("0", "1")
        assert {"lofn", "lofn.pid", "lofn.host", "lofn.stage", "lofn.attempt"} <= set(labels)
