#!/usr/bin/env python3
"""Align paired-end reads with minimap2 in Docker, one container per partition, with lofn.

    spark-submit --master 'local[2]' example/advanced/align.py \\
        DATA/reads_1.fq DATA/reads_2.fq DATA/ref -o aligned.bam [-p 8] [-t 1] [-m 2]

1. The two FASTQ files are read as text, split wherever Spark splits them.
   One pass counts the lines of every split, so each line's number is known;
   then each split sends its lines, in one large string per partition it
   reaches, to the partition that aligns them: partition ``i`` of
   ``--partitions`` P gets reads ``i * N // P`` up to partition ``i + 1``'s
   first, from both files, and checks that the mates' names match.
2. ``map_binary`` with a ``map_udf`` writes each partition's mates to
   ``/shared/input_1.fq`` and ``/shared/input_2.fq``; the container runs
   ``minimap2 -ax sr`` against the reference directory, mounted read-only at
   ``/ref`` (``ref.mmi``, made once by ``prepare.py``), and ``samtools sort``
   writes a coordinate-sorted BAM.
3. The directory of sorted BAM files that ``map_binary`` yields is mounted
   read-only at ``/bams`` in one more container (a second ``map_binary``, over
   one element), where ``samtools merge`` merges them all at once; the driver
   reads the merged BAM once and writes it.

The reference directory is a user volume: a local directory on local and
standalone Spark, an HDFS path on YARN (the FASTQ paths are then HDFS paths
too). The image is ``lofn/aligner:bookworm`` (``build_image.sh``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from itertools import islice

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


def merge_command(threads: int) -> str:
    """The merge, in one container: every partition's sorted BAM, from the mounted ``/bams``.

    Merging coordinate-sorted BAM files gives a coordinate-sorted BAM file;
    ``threads`` compress the output.
    """
    return f"samtools merge -f -O bam -@ {max(threads - 1, 0)} /shared/output.bin /bams/*.bin"


# -- pairing the FASTQ files ----------------------------------------------------------

def _split_text(lines: Iterator[str]) -> list[tuple[int, str]]:
    """The lines of one split -> one (number of lines, text) element."""
    split = list(lines)  # one input split (at most an HDFS block); join would list it anyway
    return [(len(split), "\n".join(split))]


def read_fastq(sc, path: str):
    """A FASTQ file as one (number of lines, text) element per split, split as Spark splits text.

    Persisted: counting the lines reads each split once, in one string, and
    the pairing uses those strings again.
    """
    from pyspark import StorageLevel

    lines = sc.textFile(path, minPartitions=sc.defaultParallelism)
    return lines.mapPartitions(_split_text).setName(path).persist(StorageLevel.MEMORY_AND_DISK)


def _chunks(mate: int, bounds: list[int], starts: list[int], split: int,
            texts: Iterator[tuple[int, str]]) -> Iterator:
    """A split's text -> (partition, (mate, number of the first line, text)).

    Partition ``i`` takes lines ``bounds[i]`` to ``bounds[i + 1]`` of each
    file, so a split sends one element per partition it reaches: a few large
    strings, not one element per read.
    """
    [(count, text)] = texts
    lines = iter(text.split("\n") if count else ())
    number = starts[split]
    for partition in range(len(bounds) - 1):
        if bounds[partition + 1] <= number:
            continue
        chunk = list(islice(lines, bounds[partition + 1] - number))
        if not chunk:
            return
        yield partition, (mate, number, "\n".join(chunk))
        number += len(chunk)


def _mate_name(header: str, mate: int) -> str:
    name = header[1:].split(None, 1)[0]
    return name[:-2] if name.endswith(f"/{mate}") else name


def _pair(bounds: list[int], partition: int, chunks: Iterator) -> Iterator[tuple[str, str]]:
    """A partition's chunks of both files -> one (FASTQ text of mate 1, of mate 2) element.

    Checks that each file gave the partition its lines, that every record is
    4 lines ``@name``, bases, ``+``, qualities (a quality line may start with
    ``@``: records are found by line number, never by their first character),
    and that both mates of each read carry the same name.
    """
    by_mate: dict[int, list] = {1: [], 2: []}
    for _, (mate, first, text) in chunks:
        by_mate[mate].append((first, text))
    first_read, size = bounds[partition] // 4, bounds[partition + 1] - bounds[partition]
    if size == 0:
        return
    texts, lines = [], []
    for mate, found in by_mate.items():
        joined = "\n".join(chunk for _, chunk in sorted(found))
        texts.append(joined + "\n")
        lines.append(joined.split("\n") if found else [])
        if len(lines[-1]) != size:
            raise ValueError(f"reads {first_read} to {first_read + size // 4 - 1}: file {mate} "
                             f"gave {len(lines[-1])} lines, not {size}: did it change while "
                             "the job ran?")
    for read, (header_1, plus_1, header_2, plus_2) in enumerate(zip(
            lines[0][0::4], lines[0][2::4], lines[1][0::4], lines[1][2::4], strict=True),
            first_read):
        if not (header_1[:1] == header_2[:1] == "@" and plus_1[:1] == plus_2[:1] == "+"):
            raise ValueError(f"FASTQ record {read} is not 4 lines '@name', bases, '+', "
                             f"qualities: {header_1!r:.80}, {plus_1!r:.80} in file 1, "
                             f"{header_2!r:.80}, {plus_2!r:.80} in file 2")
        if _mate_name(header_1, 1) != _mate_name(header_2, 2):
            raise ValueError(f"FASTQ record {read}: mates {header_1!r:.80} and {header_2!r:.80} "
                             "differ: the files are not paired")
    yield texts[0], texts[1]


def pair_reads(sc, fastq_1, fastq_2, partitions: int):
    """An RDD of ``partitions`` partitions, each one (FASTQ of mate 1, FASTQ of mate 2) element.

    ``fastq_1`` and ``fastq_2`` come from :func:`read_fastq`. One job counts
    the lines of each split, so every line's number is known without a
    shuffle of lines; partition ``i`` then gets reads ``i * N // partitions``
    up to the next partition's first, from both files, in one shuffle of a
    few chunks per split.
    """
    every = sc.union([fastq_1, fastq_2]).map(_first).collect()  # lines of each split
    split = fastq_1.getNumPartitions()
    counts = [every[:split], every[split:]]
    totals = [sum(count) for count in counts]
    if totals[0] != totals[1] or totals[0] % 4:
        raise ValueError(f"{fastq_1.name()} has {totals[0]} lines and {fastq_2.name()} "
                         f"{totals[1]}: two paired FASTQ files hold the same number of 4-line "
                         "records")
    reads = totals[0] // 4
    bounds = [4 * (partition * reads // partitions) for partition in range(partitions + 1)]
    chunks = sc.union([
        fastq.mapPartitionsWithIndex(partial(_chunks, mate, bounds, _line_starts(count)))
        for mate, fastq, count in ((1, fastq_1, counts[0]), (2, fastq_2, counts[1]))])
    return chunks.partitionBy(partitions, _identity).mapPartitionsWithIndex(
        partial(_pair, bounds))


def _first(element: tuple):
    return element[0]


def _line_starts(counts: list[int]) -> list[int]:
    """The number of each split's first line, from the splits' line counts."""
    return [sum(counts[:split]) for split in range(len(counts))]


def _identity(partition: int) -> int:
    return partition


def write_mates(partition: list) -> dict:
    """``map_udf``: a partition's one pair of FASTQ texts -> the two files the aligner reads."""
    [(reads_1, reads_2)] = partition
    return {"input_1.fq": reads_1, "input_2.fq": reads_2}


# -- the pipeline ---------------------------------------------------------------------

def run_pipeline(sc, reads_1: str, reads_2: str, ref_dir: str, partitions: int = 8,
                 threads: int = 1, image: str = IMAGE, conf=None,
                 docker_options: list[str] | None = None, merge_threads: int = 2) -> bytes:
    """Pair, align per partition, merge; return the merged BAM's bytes.

    ``threads`` is minimap2's and samtools sort's per partition;
    ``merge_threads`` samtools merge's, which runs alone, after them.
    """
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    conf = conf if conf is not None else SparkConf()
    pipe = DockerPipe(conf, volumes={ref_dir: {"bind": "/ref", "mode": "ro"}})
    options = ["--network", "none", *(docker_options or [])]
    fastq = [read_fastq(sc, path) for path in (reads_1, reads_2)]
    try:
        sc.setJobDescription("read: count the FASTQ lines")
        pairs = pair_reads(sc, *fastq, partitions)  # counting runs a job
        sc.setJobDescription("align: pair the reads, minimap2 + samtools sort per partition")
        with pipe.map_binary(pairs, image, align_command(threads), map_udf=write_mates,
                             docker_options=options) as bam_dir:
            # the directory of sorted BAM files is the merge container's volume
            sc.setJobDescription("merge: samtools merge, every BAM in one container")
            merge = DockerPipe(conf, volumes={bam_dir: {"bind": "/bams", "mode": "ro"}})
            one = sc.parallelize([bam_dir], 1)
            with merge.map_binary(one, image, merge_command(merge_threads),
                                  docker_options=options) as merged_dir:
                return sc.binaryFiles(merged_dir).values().first()
    finally:
        sc.setJobDescription(None)
        for rdd in fastq:
            rdd.unpersist()


# -- reading the result without samtools -------------------------------------------

def bam_summary(data: bytes) -> dict:
    """Count the records of a BAM file, by their flags.

    BGZF is a series of gzip members; ``GzipFile`` reads them in one pass
    (``gzip.decompress`` copies the rest of the data for every member, so
    it takes minutes on a large BAM file).
    """
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
        raw = handle.read()
    if raw[:4] != b"BAM\1":
        raise ValueError("not a BAM file")
    (l_text,) = struct.unpack_from("<i", raw, 4)
    offset = 8 + l_text
    (n_ref,) = struct.unpack_from("<i", raw, offset)
    offset += 4
    for _ in range(n_ref):
        (l_name,) = struct.unpack_from("<i", raw, offset)
        offset += 4 + l_name + 4
    flags: dict[int, int] = {}  # flag -> records: a few distinct flags, counted once each
    size = struct.Struct("<i").unpack_from
    end = len(raw)
    while offset < end:
        flag = raw[offset + 18] | raw[offset + 19] << 8  # after block_size and 14 bytes
        flags[flag] = flags.get(flag, 0) + 1
        offset += 4 + size(raw, offset)[0]
    return {"references": n_ref, "records": sum(flags.values()),
            "mapped": sum(n for flag, n in flags.items() if not flag & 0x4),
            "properly_paired": sum(n for flag, n in flags.items()
                                   if flag & 0x2 and not flag & 0x4),
            "secondary_or_supplementary": sum(n for flag, n in flags.items() if flag & 0x900)}


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
    parser.add_argument("-m", "--merge-threads", type=int, default=2,
                        help="samtools merge threads, in the one merge container that runs "
                             "after all others (default %(default)s)")
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
                              args.threads, args.image, conf=SparkConf(),
                              merge_threads=args.merge_threads)
        with open(args.output, "wb") as handle:
            handle.write(merged)
        end = time.time()
    finally:
        sc.stop()
    try:
        summary = bam_summary(merged)
        mapped = 100 * summary["mapped"] / max(summary["records"], 1)
        print(f"wrote {args.output}: {len(merged) / 1e6:.1f} MB, {summary['records']} records, "
              f"{summary['mapped']} mapped ({mapped:.2f} %), "
              f"{summary['properly_paired']} properly paired, {summary['references']} reference "
              f"sequences")
        print(f"{args.partitions} partitions, {args.threads} minimap2 thread(s) per container, "
              f"master {master}: {end - start:.1f} s")
        if args.timings:
            logs = [os.path.join(event_dir, name) for name in os.listdir(event_dir)]
            tasks = tasks_from_event_log(logs[0])
            record = {"master": master, "partitions": args.partitions,
                      "threads": args.threads, "start": start, "end": end,
                      "seconds": end - start, "bam_bytes": len(merged), "summary": summary,
                      # after the pipeline: sc.stop(), the summary, reading the event log
                      "epilogue_seconds": time.time() - end, **tasks}
            with open(args.timings, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=1)
    finally:
        if event_dir:
            shutil.rmtree(event_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
