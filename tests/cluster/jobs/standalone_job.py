"""A lofn job for a real standalone cluster; run by tests/cluster/test_standalone.py.

Usage::

    spark-submit --master spark://HOST:PORT standalone_job.py --image IMAGE [--partitions N]

Word count (the commands of ``example/word_count.py``) with ``DockerPipe.map``
and ``DockerPipe.reduce``, then a gzip ``map_binary`` / ``binaryFiles`` /
``reduce_binary`` round trip. The last stdout line is a JSON object with the
results, the expected values computed in plain Python, and the executors
that ran the map partitions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyspark import SparkConf, SparkContext  # noqa: E402

from example.word_count import MAP_COMMAND, REDUCE_COMMAND  # noqa: E402
from lofn.api import DockerPipe  # noqa: E402

VOCABULARY = ["Spark", "docker", "lofn", "container", "partition", "executor", "worker",
              "Master", "shuffle", "tree", "reduce", "map", "awk", "busybox", "gzip", "x1"]
GZIP_COMMAND = "gzip -c /shared/input.txt > /shared/output.bin"
CAT_COMMAND = "cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin"


def make_lines(count: int, vocabulary: list[str] = VOCABULARY) -> list[str]:
    """Deterministic lines of ``vocabulary``'s words, with mixed case and punctuation."""
    lines = []
    for number in range(count):
        words = [vocabulary[(number * 7 + k * k) % len(vocabulary)] for k in range(number % 9 + 1)]
        if number % 5 == 0:
            words.append(f"line-{number % 13}!")
        lines.append(", ".join(words) if number % 3 else " ".join(words).upper())
    return lines


def expected_counts(lines: list[str]) -> dict[str, int]:
    """What the awk map + reduce compute: lower-case, non-alphanumerics split words."""
    counts: Counter = Counter()
    for line in lines:
        counts.update(re.sub(r"[^a-z0-9]+", " ", line.lower()).split())
    return dict(counts)


def where_am_i(index, iterator):
    """Tag a partition with the executor that ran it.

    A standalone executor's working directory is ``<work-dir>/<app-id>/<executor-id>``
    and its Python workers inherit it.
    """
    cwd = os.getcwd()
    parent = os.path.basename(os.path.dirname(cwd))
    executor = os.path.basename(cwd) if parent.startswith("app-") else None
    lines = list(iterator)
    yield index, executor, cwd, tempfile.gettempdir(), sys.executable, lines


def word_counts(lines) -> dict[str, int]:
    """``word<TAB>count`` lines -> {word: total count}."""
    counts: dict[str, int] = {}
    for line in lines:
        word, count = line.split("\t")
        counts[word] = counts.get(word, 0) + int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--lines", type=int, default=2000)
    arguments = parser.parse_args()

    lines = make_lines(arguments.lines)
    sc = SparkContext(conf=SparkConf().setAppName("lofn standalone cluster test"))
    sc.setLogLevel("ERROR")
    try:
        pipe = DockerPipe(SparkConf())
        rdd = sc.parallelize(lines, arguments.partitions)

        # map: each partition's word counts, tagged with the executor that ran it
        # (the tagging runs in the same task as the container: a narrow dependency).
        tagged = pipe.map(rdd, arguments.image, MAP_COMMAND).mapPartitionsWithIndex(where_am_i)
        tagged.cache()
        partitions = tagged.map(lambda t: (*t[:5], len(t[5]))).collect()
        mapped = tagged.flatMap(lambda t: t[5])
        result = pipe.reduce(mapped, arguments.image, REDUCE_COMMAND)
        tagged.unpersist()

        counts = word_counts(result)
        expected = expected_counts(lines)
        expected_order = [f"{w}\t{c}" for w, c in sorted(expected.items(),
                                                         key=lambda item: (-item[1], item[0]))]

        # binary: gzip each partition, read the files back, concatenate the members.
        with pipe.map_binary(rdd, arguments.image, GZIP_COMMAND) as directory:
            files = sorted(os.listdir(directory))
            merged = pipe.reduce_binary(sc.binaryFiles(directory), arguments.image, CAT_COMMAND)
        binary_lines = gzip.decompress(merged).decode("utf-8").splitlines()
        binary = {
            "files": files,
            "directory_removed": not os.path.exists(directory),
            "line_count": len(binary_lines),
            "expected_line_count": len(lines),
            "same_lines": Counter(binary_lines) == Counter(lines),
        }
        summary = {
            "master": sc.master,
            "application": sc.applicationId,
            "counts": counts,
            "expected_counts": expected,
            "distinct_result_lines": len(result),
            "sorted_as_expected": result == expected_order,
            "map_partitions": [
                {"partition": p, "executor": e, "cwd": c, "tmpdir": t, "python": x, "lines": n}
                for p, e, c, t, x, n in sorted(partitions)
            ],
            "executors": sorted({p[1] for p in partitions if p[1] is not None}),
            "binary": binary,
        }
    finally:
        sc.stop()
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
