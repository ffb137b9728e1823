#!/usr/bin/env python3
"""Align paired-end reads with minimap2 in Docker, one container per partition, with lofn.

    spark-submit --master 'local[2]' example/advanced/align.py \\
        DATA/reads_1.fq DATA/reads_2.fq DATA/ref -o aligned.bam [-p 8] [-t 1]

1. The two FASTQ files are paired by read: every line gets its index
   (``zipWithIndex``), four lines make a record, and both files' records are
   grouped by read index into ``--partitions`` partitions in one shuffle.
2. ``map_binary`` with a ``map_udf`` writes each partition's mates to
   ``/shared/input_1.fq`` and ``/shared/input_2.fq``; the container runs
   ``minimap2 -ax sr`` against the reference directory, mounted read-only at
   ``/ref`` (``ref.mmi``, made once by ``prepare.py``), and ``samtools sort``
   writes a coordinate-sorted BAM.
3. ``reduce_binary`` merges the BAM files pairwise with ``samtools merge``, in a
   tree on the executors, and the driver writes the one merged BAM.

The reference directory is a user volume: a local directory on local and
standalone Spark, an HDFS path on YARN (the FASTQ paths are then HDFS paths
too). The image is ``lofn/aligner:bookworm`` (``build_image.sh``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from functools import partial
from typing import Iterator

if __name__ != "__main__":
    # Imported (by a test, the benchmark): executors cannot import this file by
    # name, so its functions travel with the tasks, as a script's do.
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])

IMAGE = "lofn/aligner:bookworm"
REFERENCE = "/ref/ref.mmi"


def align_command(threads: int, input_1: str = "/shared/input_1.fq",
                  input_2: str = "/shared/input_2.fq", output: str = "/shared/output.bin") -> str:
    """The command run in each container, and once over all reads for the serial baseline.

    minimap2 writes SAM to a file rather than a pipe, so that a failing
    minimap2 fails the command (``sh`` here is dash, without ``pipefail``).
    """
    return (f"minimap2 -ax sr -t {threads} {REFERENCE} {input_1} {input_2}"
            f" -o /shared/aligned.sam"
            f" && samtools sort -@ {max(threads - 1, 0)} -O bam -o {output} /shared/aligned.sam"
            f" && rm /shared/aligned.sam")


# Merging two coordinate-sorted BAM files gives a coordinate-sorted BAM file,
# whatever the order of the merges, so the tree of merges may take any shape.
MERGE_COMMAND = ("samtools merge -f -O bam /shared/output.bin "
                 "/shared/input_1.bin /shared/input_2.bin")


# -- pairing the FASTQ files ----------------------------------------------------------

def _record_pieces(mate: int, numbered: Iterator) -> Iterator:
    """Lines numbered by ``zipWithIndex`` -> (read index, (mate, first line, text)).

    A record whose 4 lines are all in this partition is one piece; a record
    cut by a partition boundary comes as two pieces, joined after the shuffle.
    So the shuffle moves one element per record, not one per line.
    """
    read, first, lines = None, 0, []
    for line, number in numbered:
        if number // 4 != read:
            if lines:
                yield read, (mate, first, "\n".join(lines))
            read, first, lines = number // 4, number % 4, []
        lines.append(line)
    if lines:
        yield read, (mate, first, "\n".join(lines))


def _fastq_records(sc, path: str, mate: int, min_partitions: int):
    lines = sc.textFile(path, minPartitions=min_partitions)
    return lines.zipWithIndex().mapPartitions(partial(_record_pieces, mate))


def _mate_name(header: str, mate: int) -> str:
    name = header[1:].split(None, 1)[0]
    return name[:-2] if name.endswith(f"/{mate}") else name


def _record(index: int, mate: int, pieces: list) -> str:
    lines: list[str] = []
    for first, text in sorted(pieces):
        if first != len(lines):
            break
        lines.extend(text.split("\n"))
    if len(lines) != 4 or not lines[0].startswith("@") or not lines[2].startswith("+"):
        raise ValueError(f"FASTQ record {index} of mate {mate} is not 4 lines '@name', bases, "
                         f"'+', qualities: {lines[:4]!r:.200}")
    return "\n".join(lines)


def _pair(item):
    """(read index, pieces of both mates) -> (read index, (record of mate 1, record of mate 2))."""
    index, pieces = item
    by_mate: dict[int, list] = {1: [], 2: []}
    for mate, first, text in pieces:
        by_mate[mate].append((first, text))
    for mate, found in by_mate.items():
        if not found:
            raise ValueError(f"FASTQ record {index} has no mate {mate}: the two files must "
                             "hold the same number of reads, in the same order")
    record_1, record_2 = (_record(index, mate, by_mate[mate]) for mate in (1, 2))
    if _mate_name(record_1, 1) != _mate_name(record_2, 2):
        raise ValueError(f"FASTQ record {index}: mates {record_1.split(chr(10))[0]!r} and "
                         f"{record_2.split(chr(10))[0]!r} differ: the files are not paired")
    return index, (record_1, record_2)


def pair_reads(sc, reads_1: str, reads_2: str, partitions: int):
    """An RDD of (read index, (FASTQ record 1, FASTQ record 2)) in ``partitions`` partitions.

    Lines are numbered with ``zipWithIndex`` (four make a record) and one
    shuffle groups both mates of each read; read ``i`` lands in partition
    ``i % partitions``.
    """
    records = (_fastq_records(sc, reads_1, 1, partitions)
               .union(_fastq_records(sc, reads_2, 2, partitions)))
    return records.groupByKey(numPartitions=partitions).map(_pair, preservesPartitioning=True)


def write_mates(partition: list) -> dict:
    """``map_udf``: a partition of pairs -> the two FASTQ files the aligner reads."""
    return {"input_1.fq": [record_1 for _, (record_1, _) in partition],
            "input_2.fq": [record_2 for _, (_, record_2) in partition]}


# -- the pipeline ---------------------------------------------------------------------

def run_pipeline(sc, reads_1: str, reads_2: str, ref_dir: str, partitions: int = 8,
                 threads: int = 1, image: str = IMAGE, conf=None,
                 docker_options: list[str] | None = None) -> bytes:
    """Pair, align per partition, merge; return the merged BAM's bytes."""
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    pipe = DockerPipe(conf if conf is not None else SparkConf(),
                      volumes={ref_dir: {"bind": "/ref", "mode": "ro"}})
    options = ["--network", "none", *(docker_options or [])]
    try:
        sc.setJobDescription("read: number the FASTQ lines")
        pairs = pair_reads(sc, reads_1, reads_2, partitions)  # zipWithIndex runs a job
        sc.setJobDescription("align: pair the reads, minimap2 + samtools sort per partition")
        with pipe.map_binary(pairs, image, align_command(threads), map_udf=write_mates,
                             docker_options=options) as bam_dir:
            bams = sc.binaryFiles(bam_dir)
            sc.setJobDescription("merge: samtools merge, pairwise")
            return pipe.reduce_binary(bams, image, MERGE_COMMAND, docker_options=options)
    finally:
        sc.setJobDescription(None)


# -- reading the result without samtools -------------------------------------------

def bam_summary(data: bytes) -> dict:
    """Count the records of a BAM file (BGZF is gzip members: ``gzip`` reads it)."""
    raw = gzip.decompress(data)
    if raw[:4] != b"BAM\1":
        raise ValueError("not a BAM file")
    (l_text,) = struct.unpack_from("<i", raw, 4)
    offset = 8 + l_text
    (n_ref,) = struct.unpack_from("<i", raw, offset)
    offset += 4
    for _ in range(n_ref):
        (l_name,) = struct.unpack_from("<i", raw, offset)
        offset += 4 + l_name + 4
    counts = {"references": n_ref, "records": 0, "mapped": 0, "properly_paired": 0,
              "secondary_or_supplementary": 0}
    while offset < len(raw):
        (size,) = struct.unpack_from("<i", raw, offset)
        (flag,) = struct.unpack_from("<H", raw, offset + 4 + 14)
        offset += 4 + size
        counts["records"] += 1
        counts["mapped"] += not flag & 0x4
        counts["properly_paired"] += bool(flag & 0x2) and not flag & 0x4
        counts["secondary_or_supplementary"] += bool(flag & 0x900)
    return counts


# -- timings from Spark's event log --------------------------------------------------

def tasks_from_event_log(path: str) -> dict:
    """Jobs, stages and tasks (with start and end times) from a Spark event log file."""
    jobs, stages, tasks = [], {}, []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerJobStart":
                infos = event.get("Stage Infos", [])
                parents = {p for info in infos for p in info.get("Parent IDs", [])}
                description = (event.get("Properties") or {}).get("spark.job.description")
                jobs.append({"job": event["Job ID"], "description": description,
                             "stages": sorted(event.get("Stage IDs", []))})
                for info in infos:
                    stages[info["Stage ID"]] = {
                        "stage": info["Stage ID"], "name": info.get("Stage Name"),
                        "job": event["Job ID"], "description": description,
                        "result": info["Stage ID"] not in parents,
                        "tasks": info.get("Number of Tasks")}
            elif kind == "SparkListenerTaskEnd":
                info = event["Task Info"]
                tasks.append({"stage": event["Stage ID"], "index": info.get("Index"),
                              "partition": info.get("Partition ID", info.get("Index")),
                              "executor": info.get("Executor ID"),
                              "start": info["Launch Time"] / 1000.0,
                              "end": info["Finish Time"] / 1000.0,
                              "failed": bool(info.get("Failed"))})
    return {"jobs": jobs, "stages": sorted(stages.values(), key=lambda s: s["stage"]),
            "tasks": tasks}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reads_1", help="FASTQ of the first mates (local path or HDFS URL)")
    parser.add_argument("reads_2", help="FASTQ of the second mates, in the same order")
    parser.add_argument("ref_dir", help="directory holding ref.mmi (made by prepare.py), "
                                        "mounted at /ref: a local path, or an HDFS path on YARN")
    parser.add_argument("-o", "--output", default="aligned.bam",
                        help="the merged BAM, written by the driver (default %(default)s)")
    parser.add_argument("-p", "--partitions", type=int, default=8,
                        help="number of partitions, one container each (default %(default)s)")
    parser.add_argument("-t", "--threads", type=int, default=1,
                        help="minimap2 threads per container (default %(default)s)")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--timings", metavar="JSON",
                        help="write the wall time and every Spark task's start and end there")
    args = parser.parse_args(argv)

    from pyspark import SparkConf, SparkContext

    conf = SparkConf().setAppName("lofn genomics: minimap2 + samtools")
    event_dir = None
    if args.timings:
        event_dir = tempfile.mkdtemp(prefix="genomics-events-")
        conf.set("spark.eventLog.enabled", "true").set("spark.eventLog.dir", event_dir) \
            .set("spark.eventLog.compress", "false").set("spark.eventLog.rolling.enabled", "false")
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    try:
        master = sc.master
        start = time.time()
        merged = run_pipeline(sc, args.reads_1, args.reads_2, args.ref_dir, args.partitions,
                              args.threads, args.image, conf=SparkConf())
        with open(args.output, "wb") as handle:
            handle.write(merged)
        end = time.time()
    finally:
        sc.stop()
    try:
        summary = bam_summary(merged)
        print(f"wrote {args.output}: {len(merged) / 1e6:.1f} MB, {summary['records']} records, "
              f"{summary['mapped']} mapped ({100 * summary['mapped'] / max(summary['records'], 1):.2f} %), "
              f"{summary['properly_paired']} properly paired, {summary['references']} reference "
              f"sequences")
        print(f"{args.partitions} partitions, {args.threads} minimap2 thread(s) per container, "
              f"master {master}: {end - start:.1f} s")
        if args.timings:
            logs = [os.path.join(event_dir, name) for name in os.listdir(event_dir)]
            record = {"master": master, "partitions": args.partitions,
                      "threads": args.threads, "start": start, "end": end,
                      "seconds": end - start, "bam_bytes": len(merged), "summary": summary,
                      **tasks_from_event_log(logs[0])}
            with open(args.timings, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=1)
    finally:
        if event_dir:
            shutil.rmtree(event_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
