#!/usr/bin/env python3
"""Align paired-end reads with minimap2 in Docker, one container per partition, with lofn.

    spark-submit --master 'local[2]' example/advanced/align.py \\
        DATA/reads_1.fq DATA/reads_2.fq DATA/ref -o aligned.bam [-p 8] [-t 1] [-m 2]

1. The FASTQ files' directories are mounted read-only in the containers, as
   the reference's is; one container counts the lines of both files.
2. Partition ``i`` of ``--partitions`` P is one element, the range of lines
   that holds reads ``i * N // P`` up to partition ``i + 1``'s first.
   ``map_binary`` runs one container a partition, which cuts those lines
   from both files into ``/shared/input_1.fq`` and ``/shared/input_2.fq``
   (``tail`` and ``head``), checks them (4-line records, the same names for
   both mates), runs ``minimap2 -ax sr`` against the reference directory,
   mounted read-only at ``/ref`` (``ref.mmi``, made once by ``prepare.py``),
   and ``samtools sort``, which writes a coordinate-sorted BAM. No read
   passes through Spark.
3. The directory of sorted BAM files that ``map_binary`` yields is mounted
   read-only at ``/bams`` in one more container (a second ``map_binary``, over
   one element), where ``samtools merge`` merges them all at once; the driver
   reads the merged BAM once and writes it.

The reference directory and the FASTQ files' directories are user volumes:
local directories on local and standalone Spark, HDFS paths on YARN. The
image is ``lofn/aligner:bookworm`` (``build_image.sh``).
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
from itertools import pairwise
from urllib.parse import urlparse

if __name__ != "__main__":
    # Imported (by a test, the benchmark): executors cannot import this file by
    # name, so its functions travel with the tasks, as a script's do.
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])

IMAGE = "lofn/aligner:bookworm"
REFERENCE = "/ref/ref.mmi"


def align_command(threads: int, input_1: str = "/shared/input_1.fq",
                  input_2: str = "/shared/input_2.fq", output: str = "/shared/output.bin",
                  compress: bool = True) -> str:
    """The command run in each container, and once over all reads for the serial baseline.

    minimap2 writes SAM to a file rather than a pipe, so that a failing
    minimap2 fails the command (``sh`` here is dash, without ``pipefail``).
    The pipeline's sorted BAM files are only read by the merge, so they are
    left uncompressed (``compress=False``, ``samtools sort -u``): the merge
    compresses once, as the serial run's sort does.
    """
    level = "" if compress else "-u "
    return (f"minimap2 -ax sr -t {threads} {REFERENCE} {input_1} {input_2}"
            f" -o /shared/aligned.sam"
            f" && samtools sort -@ {max(threads - 1, 0)} {level}-O bam -o {output}"
            " /shared/aligned.sam"
            f" && rm /shared/aligned.sam")


def merge_command(threads: int) -> str:
    """The merge, in one container: every partition's sorted BAM, from the mounted ``/bams``.

    Merging coordinate-sorted BAM files gives a coordinate-sorted BAM file.
    ``threads`` compress the output while samtools' main thread reads and
    merges (``-@``): with one compressing thread the main thread waits for
    it, and the merge takes twice as long.
    """
    return f"samtools merge -f -O bam -@ {threads} /shared/output.bin /bams/*.bin"


# -- each partition's reads, cut from the mounted FASTQ files ---------------------

def reads_volumes(*paths: str) -> tuple[dict, list[str]]:
    """The volumes that show the FASTQ files to the containers, and their paths in there.

    Each file's directory is mounted read-only (one volume when both share it).
    ``hdfs://`` URLs become HDFS paths: on YARN every volume is an HDFS path,
    which lofn downloads once per executor host, so keep the FASTQ files in a
    directory of their own there.
    """
    volumes: dict = {}
    inside = []
    for path in paths:
        parsed = urlparse(path)
        host = parsed.path if parsed.scheme in ("hdfs", "file") else os.path.abspath(path)
        directory, name = os.path.split(host)
        bind = volumes.setdefault(directory, {"bind": f"/reads/{len(volumes) + 1}",
                                              "mode": "ro"})["bind"]
        inside.append(f"{bind}/{name}")
    return volumes, inside


def count_command(reads_1: str, reads_2: str) -> str:
    """The command that writes the number of lines of each mounted FASTQ file to output.txt.

    A last line without a newline counts too.
    """
    return " && ".join(
        f'n=$(wc -l < {path}) && {{ [ -z "$(tail -c 1 {path})" ] || n=$((n + 1)); }}'
        f" && echo $n >> /shared/output.txt" for path in (reads_1, reads_2))


def count_lines(sc, pipe, image: str, fastq: list[str], options: list[str]) -> tuple[int, int]:
    """The numbers of lines of both FASTQ files (paths in the containers), in one container."""
    lines = pipe.map(sc.parallelize([0], 1), image, count_command(*fastq),
                     docker_options=options).map(int).collect()
    return lines[0], lines[1]


def read_ranges(lines: tuple[int, int], partitions: int, names: tuple[str, str]) -> list[str]:
    """``first_line lines`` of each non-empty partition: reads ``i * N // P`` to the next's first.

    Raises ValueError, naming the files, unless both hold the same number of 4-line records.
    """
    if lines[0] != lines[1] or lines[0] % 4:
        raise ValueError(f"{names[0]} has {lines[0]} lines and {names[1]} {lines[1]}: two "
                         "paired FASTQ files hold the same number of 4-line records")
    reads = lines[0] // 4
    bounds = [partition * reads // partitions for partition in range(partitions + 1)]
    return [f"{4 * first + 1} {4 * (end - first)}"
            for first, end in pairwise(bounds) if end > first]


# an awk program over mate 1's reads that reads mate 2's in step: every record
# is 4 lines '@name', bases, '+', qualities (found by line number: a quality
# line may start with '@' or '+'), both mates carry the same name (read7/1 and
# read7/2), and the partition got all its lines
_CHECK_MATES = r"""
function fail(message) {
    printf "FASTQ read %d (line %d): %s\n", (first - 1 + FNR - 1) / 4, first - 1 + FNR,
        message > "/dev/stderr"
    failed = 1
    exit 65
}
{
    if ((getline other < two) <= 0) fail("file 2 has fewer lines than file 1")
    if (FNR % 4 == 1) {
        if (substr($0, 1, 1) != "@" || substr(other, 1, 1) != "@")
            fail("not a FASTQ record ('@name', bases, '+', qualities): " $0 " / " other)
        name_1 = substr($1, 2); sub(/\/1$/, "", name_1)
        name_2 = substr(other, 2); sub(/[ \t].*/, "", name_2); sub(/\/2$/, "", name_2)
        if (name_1 != name_2) fail("mates " $1 " and " other " differ: the files are not paired")
    } else if (FNR % 4 == 3 && (substr($0, 1, 1) != "+" || substr(other, 1, 1) != "+")) {
        fail("not a FASTQ record: line 3 of a record is " $0 " / " other ", not '+'")
    }
}
END {
    if (failed) exit 65
    if ((getline other < two) > 0) fail("file 2 has more lines than file 1")
    if (NR != lines)
        fail("got " NR " lines, not " lines ": did the files change while the job ran?")
}"""


def cut_command(reads_1: str, reads_2: str) -> str:
    """This partition's reads of both mounted files -> ``/shared/input_1.fq`` and ``input_2.fq``.

    The partition's element (``/shared/input.txt``) is ``first_line lines``;
    ``tail`` skips to the first line and ``head`` stops after the last, and
    awk checks what they cut (``_CHECK_MATES``).
    """
    program = _CHECK_MATES.replace("'", "'\\''")
    return ("read first lines < /shared/input.txt"
            f" && tail -n +$first {reads_1} | head -n $lines > /shared/input_1.fq"
            f" && tail -n +$first {reads_2} | head -n $lines > /shared/input_2.fq"
            f" && awk -v first=$first -v lines=$lines -v two=/shared/input_2.fq '{program}'"
            " /shared/input_1.fq")


# -- the pipeline ---------------------------------------------------------------------

def run_pipeline(sc, reads_1: str, reads_2: str, ref_dir: str, partitions: int = 8,
                 threads: int = 1, image: str = IMAGE, conf=None,
                 docker_options: list[str] | None = None, merge_threads: int = 2,
                 reuse_containers: bool = True) -> bytes:
    """Count, cut and align per partition, merge; return the merged BAM's bytes.

    ``threads`` is minimap2's and samtools sort's per partition;
    ``merge_threads`` compress samtools merge's output; it runs alone, after them.
    ``reuse_containers``: count and align in one warm container per Python
    worker (lofn's reuse mode), which saves a container's start a partition.
    minimap2 and samtools write nothing outside ``/shared/``, so a partition
    sees nothing of the one before; ``False`` starts a fresh container each.
    """
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    conf = conf if conf is not None else SparkConf()
    volumes, fastq = reads_volumes(reads_1, reads_2)
    pipe = DockerPipe(conf, volumes={ref_dir: {"bind": "/ref", "mode": "ro"}, **volumes},
                      reuse_containers=reuse_containers)
    options = ["--network", "none", *(docker_options or [])]
    try:
        sc.setJobDescription("read: count the FASTQ lines, in one container")
        ranges = read_ranges(count_lines(sc, pipe, image, fastq, options), partitions,
                             (reads_1, reads_2))
        sc.setJobDescription("align: cut each partition's reads, minimap2 + samtools sort")
        with pipe.map_binary(sc.parallelize(ranges, len(ranges)), image,
                             f"{cut_command(*fastq)} && {align_command(threads, compress=False)}",
                             docker_options=options) as bam_dir:
            # the directory of sorted BAM files is the merge container's volume
            sc.setJobDescription("merge: samtools merge, every BAM in one container")
            merge = DockerPipe(conf, volumes={bam_dir: {"bind": "/bams", "mode": "ro"}})
            one = sc.parallelize([bam_dir], 1)
            with merge.map_binary(one, image, merge_command(merge_threads),
                                  docker_options=options) as merged_dir:
                return read_merged(sc, merge, merged_dir)
    finally:
        sc.setJobDescription(None)


def read_merged(sc, pipe, directory: str) -> bytes:
    """The merged BAM from ``pipe.map_binary``'s directory (its one file).

    On YARN the directory is on HDFS, read through Spark; on local and
    standalone masters it is on the driver, read as a file. ``pipe`` says
    which master it made the directory for.
    """
    if pipe.master_type == "yarn":
        return sc.binaryFiles(directory).values().first()
    [name] = os.listdir(directory)
    with open(os.path.join(directory, name), "rb") as handle:
        return handle.read()


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
                        help="threads compressing samtools merge's output, in the one merge "
                             "container that runs after all others (default %(default)s)")
    parser.add_argument("--fresh-containers", action="store_true",
                        help="a new container for each partition instead of one warm "
                             "container per Python worker (lofn's reuse_containers)")
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
                              merge_threads=args.merge_threads,
                              reuse_containers=not args.fresh_containers)
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
