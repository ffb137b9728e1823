"""Word count over a generated text at several partition counts.

Usage: wordcount.py --reps R --partitions 8,32,128 --out RESULT.json

One SparkContext on ``local[2]``. The text (230,000 lines, about 20.7 MB,
Zipf-distributed words) is made once, deterministically, and read with
``sc.textFile`` into exactly P partitions. The commands are
``example/word_count.py``'s ``MAP_COMMAND`` and ``REDUCE_COMMAND`` (busybox
awk and sort). Each variant is one whole job, as a user writes it (nothing
cached between map and reduce), timed from the call to the counts on the
driver. For each repetition and P, in a rotating order:

- ``fresh_total``: ``DockerPipe.reduce(DockerPipe.map(rdd, MAP), REDUCE)``;
- ``reuse_total``: the same with ``reuse_containers=True``;
- ``old_total``, the older design: ``DockerPipe.map(rdd, MAP)
  .mapPartitions(lambda p: [list(p)]).reduce(f)``, ``f`` running ``REDUCE``
  over left + right in a fresh container through the Docker SDK: P-1
  containers one after the other on the driver;
- ``pipe_total``: ``rdd.pipe("docker run -i --rm IMAGE sh -c '<map as a
  filter>'")``, then one ``collections.Counter`` per partition, merged with
  ``rdd.reduce``;
- ``spark_floor``: the same job's stages and tasks with no container work:
  P tasks reading their partitions, then the tree reduce's rounds (as
  ``lofn.api.plan_fan_ins`` plans them) as shuffles of one small record a block;
- ``fresh_map`` (diagnostic): ``DockerPipe.map(rdd, MAP).count()``, the map
  phase both lofn fresh and the older design run; a total less it is that
  design's reduce phase.

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

    from lofn.api import DockerPipe, plan_fan_ins
    from lofn.options import MAX_FAN_IN

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

        def check(name: str, counts: dict, reference: dict) -> None:
            if counts != reference:
                wrong = sorted(w for w in set(counts) | set(reference)
                               if counts.get(w) != reference.get(w))[:5]
                raise RuntimeError(f"{name}: wrong word counts, e.g. "
                                   + ", ".join(f"{w}: {counts.get(w)} != {reference.get(w)}"
                                               for w in wrong))

        def lofn_job(pipe, rdd):
            counts = pipe.map(rdd, IMAGE, MAP_COMMAND, docker_options=LOFN_OPTIONS)
            return counts_of_lines(pipe.reduce(counts, IMAGE, REDUCE_COMMAND,
                                               docker_options=LOFN_OPTIONS))

        def old_job(rdd):
            counts = fresh.map(rdd, IMAGE, MAP_COMMAND, docker_options=LOFN_OPTIONS)
            return counts_of_lines(counts.mapPartitions(nest).reduce(old_pairwise_merge))

        def pipe_job(rdd):
            piped = rdd.pipe(PIPE_COMMAND, checkCode=True)
            return dict(piped.mapPartitions(lines_counter).reduce(merge_counters))

        def spark_floor(rdd):
            count = rdd.getNumPartitions()
            blocks = rdd.mapPartitionsWithIndex(
                lambda index, lines: [(index, sum(1 for _ in lines))])
            for fan_in in plan_fan_ins(count, sc.defaultParallelism, MAX_FAN_IN):
                count = -(-count // fan_in)
                blocks = blocks.map(lambda block, f=fan_in: (block[0] // f, block[1])).reduceByKey(
                    lambda a, b: a + b, numPartitions=count, partitionFunc=lambda key: key)
            if len(blocks.collect()) != 1:
                raise RuntimeError("spark_floor: the rounds did not end in one block")

        def map_only(rdd):
            fresh.map(rdd, IMAGE, MAP_COMMAND, docker_options=LOFN_OPTIONS).count()

        variants = {
            "fresh_total": lambda rdd: lofn_job(fresh, rdd),
            "reuse_total": lambda rdd: lofn_job(warm, rdd),
            "old_total": old_job,
            "pipe_total": pipe_job,
            "fresh_map": map_only,
            "spark_floor": spark_floor,
        }
        # warm-up, untimed, on 4 small partitions: Python workers, Docker connections, the
        # warm containers, lofn's watchdogs
        with open(path, encoding="utf-8") as handle:
            sample = [next(handle).rstrip("\n") for _ in range(400)]
        for job in variants.values():
            job(sc.parallelize(sample, 4))
        names = list(variants)
        for rep in range(args.reps):
            for partitions in partition_counts:
                rdd = text_rdd(partitions)
                record = samples[str(partitions)]
                shift = rep % len(names)
                for name in names[shift:] + names[:shift]:
                    start = now()
                    counts = variants[name](rdd)
                    record.setdefault(name, []).append(now() - start)
                    if counts is not None:
                        check(name, counts, expected)
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
