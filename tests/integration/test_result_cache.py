"""Incremental re-runs: with result_cache, only partitions whose inputs changed run again."""

from __future__ import annotations

import pytest

from lofn.api import DockerPipe

COMMAND = "echo ran >> /log/runs; tr a-z A-Z < /shared/input.txt > /shared/output.txt"


@pytest.fixture
def cached(sc, tmp_path):
    from pyspark import SparkConf

    log = tmp_path / "log"
    log.mkdir()
    pipe = DockerPipe(SparkConf(), result_cache=str(tmp_path / "cache"),
                      volumes={str(log): {"bind": "/log", "mode": "rw"}})

    def runs():
        path = log / "runs"
        count = len(path.read_text().splitlines()) if path.exists() else 0
        if path.exists():
            path.unlink()
        return count
    return pipe, runs


def partitions(sc, rows):
    """One partition per row list, whatever the lists' lengths."""
    return sc.parallelize(rows, len(rows)).flatMap(lambda part: part)


def test_unchanged_rerun_starts_no_container_and_one_change_runs_one(sc, busybox, cached):
    pipe, runs = cached
    rows = [[f"p{p} line {i}" for i in range(50)] for p in range(4)]
    first = pipe.map(partitions(sc, rows), busybox, COMMAND).collect()
    assert runs() == 4 and first[0] == "P0 LINE 0"
    assert pipe.map(partitions(sc, rows), busybox, COMMAND).collect() == first
    assert runs() == 0
    rows[2][10] = "changed"
    changed = pipe.map(partitions(sc, rows), busybox, COMMAND).collect()
    assert runs() == 1 and "CHANGED" in changed and len(changed) == len(first)
    rows.append(["appended partition"])
    appended = pipe.map(partitions(sc, rows), busybox, COMMAND).collect()
    assert runs() == 1 and appended[-1] == "APPENDED PARTITION"
    pipe.map(partitions(sc, rows), busybox, COMMAND + " # another command").collect()
    assert runs() == 5


def test_reduce_merges_are_cached_too(sc, busybox, cached):
    pipe, runs = cached
    rdd = sc.parallelize([f"w{i % 13}" for i in range(700)], 4)  # partitions all differ
    command = "echo ran >> /log/runs; sort /shared/input.txt | uniq -c > /shared/output.txt"
    reduce = "echo ran >> /log/runs; cat /shared/input.txt > /shared/output.txt"
    first = pipe.reduce(pipe.map(rdd, busybox, command), busybox, reduce, max_fan_in=2)
    assert runs() == 4 + 3
    again = pipe.reduce(pipe.map(rdd, busybox, command), busybox, reduce, max_fan_in=2)
    assert again == first and runs() == 0


def test_bad_cache_location_is_rejected(sc):
    from pyspark import SparkConf

    with pytest.raises(ValueError, match="result_cache must be an absolute directory"):
        DockerPipe(SparkConf(), result_cache="relative/cache")
