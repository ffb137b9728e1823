"""Word count over a generated text at several partition counts.

Usage: wordcount.py --reps R --partitions 8,32,128 --out RESULT.json

One SparkContext on ``local[2]``. The text (230,000 lines, about 20.7 MB,
Zipf-distributed words) is made once, deterministically, and read with
``sc.textFile`` into exactly P partitions. The commands are
``example/word_count.py``'s ``MAP_COMMAND`` and ``REDUCE_COMMAND`` (busybox
awk and sort). For each repetition and P, in a rotating order:

- ``fresh``: ``DockerPipe.map`` (cached and counted: the "map" phase), then
  on that same cached map output both

  - ``DockerPipe.reduce`` (the tree, default ``max_fan_in``), and
  - the older design: ``map_output.mapPartitions(lambda p: [list(p)])
    .reduce(f)``, ``f`` running ``REDUCE_COMMAND`` over left + right in a
    fresh container through the Docker SDK; P-1 containers in sequence on
    the driver;

- ``reuse``: the same map and tree reduce with ``reuse_containers=True``;
- ``pipe``: ``rdd.pipe("docker run -i --rm IMAGE sh -c '<map as a filter>'")``
  (cached and counted), then a Python reduce: one ``collections.Counter``
  per partition, merged with ``rdd.reduce``.

Every result is checked against a pure-Python count of the text.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import sys

from common import (IMAGE, LOFN_OPTIONS, MAP_COMMAND, MAP_FILTER, NETWORK, REDUCE_COMMAND,
                    bench_root, counts_of_lines, lines_counter, log, merge_counters, nest, now,
                    old_pairwise_merge, pipe_command, spark_context, write_json)

LINES = 230_000
WORDS_PER_LINE = 12
VOCABULARY = 40_000
PIPE_COMMAND = pipe_command(MAP_FILTER)


def make_text(path: str) -> collections.Counter:
    """Write the deterministic text to ``path``; return its word counts."""
    rng = random.Random(20251121)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    vocabulary: list[str] = []
    seen = set()
    while len(vocabulary) < VOCABULARY:
        word = "".join(rng.choices(letters, k=rng.randint(2, 10)))
        if word not in seen:
            seen.add(word)
            vocabulary.append(word)
    cumulative, total = [], 0.0
    for rank in range(1, VOCABULARY + 1):
        total += 1.0 / rank ** 1.05
        cumulative.append(total)
    words = rng.choices(vocabulary, cum_weights=cumulative, k=LINES * WORDS_PER_LINE)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, len(words), WORDS_PER_LINE):
            line = words[start:start + WORDS_PER_LINE]
            handle.write(line[0].capitalize() + " " + " ".join(line[1:]) + ".\n")
    with open(path, encoding="utf-8") as handle:
        return collections.Counter(re.findall(r"[a-z0-9]+", handle.read().lower()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--partitions", default="8,32,128")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    partition_counts = [int(p) for p in args.partitions.split(",")]

    from pyspark import SparkConf

    from lofn.api import DockerPipe

    path = os.path.join(bench_root(), "words.txt")
    expected = dict(make_text(path))
    size = os.path.getsize(path)
    if size < 20_000_000:
        raise RuntimeError(f"the text is {size} bytes, under the 20 MB asked for")
    log(f"text: {size / 2**20:.1f} MiB, {LINES} lines, {sum(expected.values())} words, "
        f"{len(expected)} distinct")

    sc = spark_context("local[2]", "lofn-bench-wordcount")
    app = sc.applicationId
    samples: dict[str, dict[str, list[float]]] = {str(p): {} for p in partition_counts}
    try:
        fresh = DockerPipe(SparkConf())
        warm = DockerPipe(SparkConf(), reuse_containers=True)

        def text_rdd(partitions: int):
            rdd = sc.textFile(path, partitions)
            if rdd.getNumPartitions() > partitions:
                rdd = rdd.coalesce(partitions)
            if rdd.getNumPartitions() != partitions:
                raise RuntimeError(f"wanted {partitions} partitions, got {rdd.getNumPartitions()}")
            return rdd

        def check(name: str, counts: dict, reference: dict | None) -> None:
            if reference is None:  # warm-up
                return
            if counts != reference:
                wrong = sorted(w for w in set(counts) | set(reference)
                               if counts.get(w) != reference.get(w))[:5]
                raise RuntimeError(f"{name}: wrong word counts, e.g. "
                                   + ", ".join(f"{w}: {counts.get(w)} != {reference.get(w)}"
                                               for w in wrong))

        def timed(record: dict, name: str, action):
            start = now()
            result = action()
            record.setdefault(name, []).append(now() - start)
            return result

        def run_fresh(rdd, record, rep, reference):
            counts = fresh.map(rdd, IMAGE, MAP_COMMAND, docker_options=LOFN_OPTIONS).cache()
            timed(record, "fresh_map", counts.count)
            reducers = [
                ("fresh_tree_reduce", lambda: counts_of_lines(
                    fresh.reduce(counts, IMAGE, REDUCE_COMMAND, docker_options=LOFN_OPTIONS))),
                ("old_driver_reduce", lambda: counts_of_lines(
                    counts.mapPartitions(nest).reduce(old_pairwise_merge))),
            ]
            for name, action in reducers[rep % 2:] + reducers[:rep % 2]:
                check(name, timed(record, name, action), reference)
            counts.unpersist()

        def run_reuse(rdd, record, rep, reference):
            counts = warm.map(rdd, IMAGE, MAP_COMMAND, docker_options=LOFN_OPTIONS).cache()
            timed(record, "reuse_map", counts.count)
            check("reuse_tree_reduce", timed(record, "reuse_tree_reduce", lambda: counts_of_lines(
                warm.reduce(counts, IMAGE, REDUCE_COMMAND, docker_options=LOFN_OPTIONS))),
                reference)
            counts.unpersist()

        def run_pipe(rdd, record, rep, reference):
            piped = rdd.pipe(PIPE_COMMAND, checkCode=True).cache()
            timed(record, "pipe_map", piped.count)
            check("pipe_python_reduce", dict(timed(
                record, "pipe_python_reduce",
                lambda: piped.mapPartitions(lines_counter).reduce(merge_counters))), reference)
            piped.unpersist()

        groups = [run_fresh, run_reuse, run_pipe]
        # warm-up, untimed, on 4 small partitions: Python workers, Docker connections, the
        # warm containers, lofn's watchdogs
        with open(path, encoding="utf-8") as handle:
            sample = [next(handle).rstrip("\n") for _ in range(400)]
        for group in groups:
            group(sc.parallelize(sample, 4), {}, 0, None)
        for rep in range(args.reps):
            for partitions in partition_counts:
                rdd = text_rdd(partitions)
                record = samples[str(partitions)]
                shift = rep % len(groups)
                for group in groups[shift:] + groups[:shift]:
                    group(rdd, record, rep, expected)
                log(f"word count rep {rep + 1}/{args.reps}, P={partitions}: " + ", ".join(
                    f"{name} {values[-1]:.1f}s" for name, values in record.items()))
    finally:
        sc.stop()
    write_json(args.out, {"apps": [app], "master": "local[2]", "text_bytes": size,
                          "lines": LINES, "distinct_words": len(expected),
                          "map_command": MAP_COMMAND, "reduce_command": REDUCE_COMMAND,
                          "pipe_command": PIPE_COMMAND, "network": NETWORK,
                          "samples": samples})


if __name__ == "__main__":
    sys.exit(main())
