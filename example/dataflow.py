#!/usr/bin/env python3
"""lofn's data-flow features on one text file: keyed reduce, streaming, result cache, sampling.

Run it with spark-submit (the image is built by ``scripts/dev.sh setup``)::

    spark-submit --master 'local[2]' example/dataflow.py INPUT.txt

It shows, in four parts:

a. a word count with ``reduce_by_key`` and a combiner, checked against
   Python's ``collections.Counter`` and against the global ``reduce``;
b. streaming with ``pipe``: text lines through ``tr``/``sort``, records
   holding newlines with NUL framing, and bytes through ``gzip``;
c. the result cache: a rerun starts no container, and after a line is
   appended to the input only the changed partition runs again;
d. downsampling with ``sample`` and ``sample_seed``: the same seed gives the
   same sample.

Every temporary file it makes is removed at the end.
"""

import argparse
import collections
import gzip
import os
import re
import shutil
import tempfile

from pyspark import SparkConf, SparkContext

from lofn.api import DockerPipe

IMAGE = "lofn/busybox"
# None of these tools needs the network, so the containers get none.
OPTIONS = ["--network", "none"]

# One "word<TAB>1" line per word of the input, lower-cased; anything that is
# not a letter or a digit separates words.
SPLIT = (
    "awk '{ $0 = tolower($0); gsub(/[^a-z0-9]+/, \" \");"
    " for (i = 1; i <= NF; i++) print $i \"\\t\" 1 }'"
    " /shared/input.txt > /shared/output.txt"
)
# Sum the counts of each word: reads and writes "word<TAB>count" lines, so it
# serves as combiner, as keyed reduce and as global reduce alike.
SUM = (
    "awk -F '\\t' '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'"
    " /shared/input.txt > /shared/output.txt"
)


def parse_counts(lines):
    """{'word': count} from "word<TAB>count" lines; a word must appear only once."""
    counts = {}
    for line in lines:
        word, count = line.split("\t")
        assert word not in counts, f"{word!r} appears twice"
        counts[word] = int(count)
    return counts


def python_counts(lines):
    """The same word count as SPLIT + SUM, in pure Python."""
    return collections.Counter(
        word for line in lines for word in re.sub("[^a-z0-9]+", " ", line.lower()).split())


def keyed_word_count(sc, pipe, path, top):
    print("\n== (a) word count with reduce_by_key and a combiner ==")
    lines = sc.textFile(path, minPartitions=4)
    pairs = pipe.map(lines, IMAGE, SPLIT, docker_options=OPTIONS).cache()  # used several times below
    # The combiner sums each map partition's pairs before the shuffle; the
    # shuffle then sends every word to one of 3 partitions (hash of the key,
    # the text before the first tab), where SUM runs once per partition.
    counts = pipe.reduce_by_key(pairs, IMAGE, SUM, combiner=SUM, num_partitions=3,
                                docker_options=OPTIONS)
    by_key = parse_counts(counts.collect())

    expected = python_counts(lines.collect())
    global_reduce = parse_counts(pipe.reduce(pairs, IMAGE, SUM, docker_options=OPTIONS))
    # what the combiner leaves to shuffle: SUM run on each map partition
    shuffled = pipe.map(pairs, IMAGE, SUM, docker_options=OPTIONS).count()
    print(f"{len(by_key)} distinct words, {sum(by_key.values())} words in all")
    print(f"the combiner shrank the shuffle from {pairs.count()} to {shuffled} records")
    print(f"same counts as collections.Counter: {by_key == expected}; "
          f"as the global reduce: {by_key == global_reduce}")
    print(f"the {top} most frequent words:")
    for word, count in sorted(by_key.items(), key=lambda item: (-item[1], item[0]))[:top]:
        print(f"{count:8d}  {word}")
    pairs.unpersist()


def streaming(sc, pipe, path):
    print("\n== (b) streaming through stdin and stdout with pipe ==")
    lines = sc.textFile(path, minPartitions=4)
    # Text: each line goes to the command's stdin; each stdout line is a record.
    # Here: one word per line, then the 3 most frequent words of the partition.
    command = "tr -cs 'A-Za-z' '\\n' | tr A-Z a-z | sort | uniq -c | sort -rn | head -3"
    top_words = pipe.pipe(lines, IMAGE, command, docker_options=OPTIONS)
    for number, partition in enumerate(top_words.glom().collect()):
        print(f"partition {number}: " + ", ".join(" ".join(line.split()) for line in partition))

    # Records that hold newlines (here, paragraphs) need another framing: NUL.
    with open(path, encoding="utf-8") as handle:
        paragraphs = sc.parallelize(handle.read().split("\n\n"), 4)
    upper = pipe.pipe(paragraphs, IMAGE, "tr a-z A-Z", delimiter="\0",
                      docker_options=OPTIONS).collect()
    by_line = pipe.pipe(paragraphs, IMAGE, "tr a-z A-Z", docker_options=OPTIONS).count()
    print(f"{paragraphs.count()} paragraphs in; out with delimiter='\\0': {len(upper)} "
          f"records (the first has {upper[0].count(chr(10)) + 1} lines); "
          f"with the default '\\n': {by_line} records")

    # Bytes: binary=True passes bytes unchanged; without a delimiter, each
    # partition's whole stdout is one record: here one gzip stream per partition.
    data = lines.map(lambda line: (line + "\n").encode("utf-8"))
    sizes = data.glom().map(lambda partition: sum(len(b) for b in partition)).collect()
    compressed = pipe.pipe(data, IMAGE, "gzip -c", binary=True,
                           docker_options=OPTIONS).collect()
    for number, (size, blob) in enumerate(zip(sizes, compressed)):
        print(f"partition {number}: {size} bytes -> {len(blob)} bytes of gzip")
    with open(path, "rb") as handle:
        original = handle.read()
    # gzip streams put end to end are one valid gzip file
    print(f"the {len(compressed)} streams, concatenated, gunzip to the input file: "
          f"{gzip.decompress(b''.join(compressed)) == original}")


def cached_reruns(sc, path, workdir):
    print("\n== (c) incremental re-runs with result_cache ==")
    # The input as a directory of 100-line files: one partition per file, so
    # appending to one file changes one partition only.
    inputs = os.path.join(workdir, "input")
    os.makedirs(inputs)
    with open(path, encoding="utf-8") as handle:
        text = handle.readlines()
    for number, start in enumerate(range(0, len(text), 100)):
        with open(os.path.join(inputs, f"part-{number:03d}.txt"), "w", encoding="utf-8") as out:
            out.writelines(text[start:start + 100])
    # Each container appends a line to /log/runs (an rw volume), so counting
    # the lines counts the containers that really ran.
    log = os.path.join(workdir, "log")
    os.makedirs(log)
    runs_file = os.path.join(log, "runs")
    pipe = DockerPipe(SparkConf(), result_cache=os.path.join(workdir, "cache"),
                      volumes={log: {"bind": "/log", "mode": "rw"}})
    command = "echo ran >> /log/runs; " + SPLIT

    def run(what):
        words = pipe.map(sc.textFile(inputs), IMAGE, command, docker_options=OPTIONS).count()
        ran = 0
        if os.path.exists(runs_file):
            with open(runs_file, encoding="utf-8") as handle:
                ran = len(handle.readlines())
            os.remove(runs_file)
        print(f"{what}: {words} words; containers that ran: {ran}")

    partitions = sc.textFile(inputs).getNumPartitions()
    print(f"{partitions} partitions (files of 100 lines)")
    run("first run")
    run("same input again")
    last = os.path.join(inputs, sorted(os.listdir(inputs))[-1])
    with open(last, "a", encoding="utf-8") as handle:
        handle.write("one more line appended to the input\n")
    run("after appending a line")


def downsampling(sc, pipe, path):
    print("\n== (d) downsampling with sample and sample_seed ==")
    lines = sc.textFile(path, minPartitions=4)
    command = "cat /shared/input.txt > /shared/output.txt"
    first = pipe.map(lines, IMAGE, command, sample=0.1, sample_seed=42,
                     docker_options=OPTIONS).collect()
    again = pipe.map(lines, IMAGE, command, sample=0.1, sample_seed=42,
                     docker_options=OPTIONS).collect()
    other = pipe.map(lines, IMAGE, command, sample=0.1, sample_seed=7,
                     docker_options=OPTIONS).collect()
    print(f"sample=0.1, sample_seed=42: {len(first)} of {lines.count()} lines; "
          f"again: {len(again)} lines, identical: {first == again}")
    print(f"sample_seed=7: {len(other)} lines, identical to seed 42: {other == first}")
    print("first sampled lines: " + " | ".join(line.strip() for line in first[:3]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_file", help="a text file")
    parser.add_argument("-n", "--top", type=int, default=10,
                        help="how many of the most frequent words to print")
    arguments = parser.parse_args()
    path = os.path.abspath(arguments.input_file)

    sc = SparkContext(conf=SparkConf().setAppName("lofn data flow"))
    sc.setLogLevel("ERROR")
    print(f"application {sc.applicationId}, input {path}")
    workdir = tempfile.mkdtemp(prefix="dataflow-example-")
    try:
        pipe = DockerPipe(SparkConf())
        keyed_word_count(sc, pipe, path, arguments.top)
        streaming(sc, pipe, path)
        cached_reruns(sc, path, workdir)
        downsampling(sc, pipe, path)
    finally:
        sc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
