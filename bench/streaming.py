"""Streaming at the speed of the pipe: one big partition through ``cat``, five ways.

Usage: streaming.py --reps R --lines 2000000 --out RESULT.json

One SparkContext on ``local[1]``. The input is one partition of ``--lines``
lines of 77 characters (78 bytes with the newline: 156 MB for 2,000,000
lines), generated once and cached in Spark's memory, so every job starts
from the same cached partition. Each repetition times, in a rotating order,
these jobs, each ending in ``.count()`` (checked against ``--lines``):

- ``spark_python``: ``rdd.mapPartitions(identity)``, the floor: what Spark's
  Python worker costs to read the partition and send it back;
- ``host_pipe``: ``rdd.pipe("cat")``, PySpark's own pipe to a host process;
- ``docker_pipe``: ``rdd.pipe("docker run -i --rm IMAGE sh -c cat")``;
- ``lofn_map``: ``DockerPipe.map`` of ``cat /shared/input.txt > /shared/output.txt``
  (the partition written to a file, the output file read back);
- ``lofn_pipe``: ``DockerPipe.pipe`` of ``cat`` (stdin and stdout of the
  container, over the Docker API's attach stream);
- ``lofn_map_reuse`` and ``lofn_pipe_reuse``: the same two with
  ``reuse_containers=True`` (the worker's warm container; pipe by an exec).

The ratio column of the table is each job's time over the lofn ``map`` time
of the same repetition, in the same mode (median of the per-repetition
ratios).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from common import (
    IMAGE,
    LOFN_OPTIONS,
    NETWORK,
    TRIVIAL,
    identity,
    log,
    now,
    pipe_command,
    spark_context,
    write_json,
)

PIPE_COMMAND = pipe_command("cat")
LINE_CHARS = 77  # 78 bytes with the newline
VARIANTS = ("spark_python", "host_pipe", "docker_pipe", "lofn_map", "lofn_pipe",
            "lofn_map_reuse", "lofn_pipe_reuse")


def lines(count: int):
    """``flatMap`` body: ``count`` lines of :data:`LINE_CHARS` characters."""
    filler = "abcdefghijklmnopqrstuvwxyz0123456789" * 2

    def generate(_):
        tail = filler[:LINE_CHARS - 11]
        for number in range(count):
            yield f"{number:010d} {tail}"
    return generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from pyspark import SparkConf, StorageLevel

    import lofn
    from lofn.api import DockerPipe

    sc = spark_context("local[1]", "lofn-bench-streaming")
    app = sc.applicationId
    samples: dict[str, list[float]] = {}
    try:
        data = sc.parallelize([0], 1).flatMap(lines(args.lines))
        data.persist(StorageLevel.MEMORY_ONLY)
        if data.count() != args.lines:  # the partition is cached from here on
            raise RuntimeError("the input was not generated whole")
        pipe = DockerPipe(SparkConf())
        warm = DockerPipe(SparkConf(), reuse_containers=True)
        worker_lofn = sc.parallelize([0], 1).map(lambda _: __import__("lofn").__file__).first()
        jobs = {
            "spark_python": lambda rdd: rdd.mapPartitions(identity),
            "host_pipe": lambda rdd: rdd.pipe("cat", checkCode=True),
            "docker_pipe": lambda rdd: rdd.pipe(PIPE_COMMAND, checkCode=True),
            "lofn_map": lambda rdd: pipe.map(rdd, IMAGE, TRIVIAL, docker_options=LOFN_OPTIONS),
            "lofn_pipe": lambda rdd: pipe.pipe(rdd, IMAGE, "cat", docker_options=LOFN_OPTIONS),
            "lofn_map_reuse": lambda rdd: warm.map(rdd, IMAGE, TRIVIAL,
                                                   docker_options=LOFN_OPTIONS),
            "lofn_pipe_reuse": lambda rdd: warm.pipe(rdd, IMAGE, "cat",
                                                     docker_options=LOFN_OPTIONS),
        }

        def run(name: str, rdd, expected: int) -> float:
            start = now()
            got = jobs[name](rdd).count()
            seconds = now() - start
            if got != expected:
                raise RuntimeError(f"{name}: expected {expected} lines, got {got}")
            return seconds

        # warm-up, untimed: the Python worker, Docker connections, lofn's watchdog
        small = sc.parallelize([f"{n:010d}" for n in range(1000)], 1)
        for name in VARIANTS:
            run(name, small, 1000)
        for rep in range(args.reps):
            order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
            for name in order:
                samples.setdefault(name, []).append(run(name, data, args.lines))
            log(f"streaming rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{name} {samples[name][-1]:.1f}s" for name in VARIANTS))
        data.unpersist()
    finally:
        sc.stop()
    write_json(args.out, {"lines": args.lines, "bytes": args.lines * (LINE_CHARS + 1),
                          "master": "local[1]", "apps": [app], "network": NETWORK,
                          "pipe_command": PIPE_COMMAND, "lofn": lofn.__file__,
                          "worker_lofn": worker_lofn,
                          "samples": samples})


def rows(table, data: dict) -> None:
    """The table's section for this benchmark (``table`` is ``run.py``'s ``Table``)."""
    s = data["samples"]
    reps = len(s["lofn_map"])
    table.section(f"4. streaming: one {data['bytes'] / 1e6:.0f} MB partition ({data['lines']} "
                  f"lines) through `cat`, {data['master']}, {reps} reps, network "
                  f"{data['network']} (seconds for the whole job, `.count()` included; ratio = "
                  "time / lofn map time, median of per-rep ratios)")

    def ratio(name: str, base: str = "lofn_map") -> float:
        return statistics.median(t / m for t, m in zip(s[name], s[base], strict=True))

    def sec(name: str) -> str:
        return f"{statistics.median(s[name]):.1f} s"

    table.row("Spark Python identity map (floor)", sec("spark_python"),
              f"{ratio('spark_python'):.2f}x")
    table.row("Spark `rdd.pipe(\"cat\")` on the host", sec("host_pipe"),
              f"{ratio('host_pipe'):.2f}x")
    table.row("Spark `rdd.pipe(\"docker run -i --rm IMAGE cat\")`", sec("docker_pipe"),
              f"{ratio('docker_pipe'):.2f}x")
    table.row("lofn map, `cat /shared/input.txt > /shared/output.txt` (reference)",
              sec("lofn_map"), "1.00x")
    table.judge("lofn pipe, `cat` (stdin and stdout)", sec("lofn_pipe"), ratio("lofn_pipe"),
                "<=", 1.0)
    if "lofn_pipe_reuse" in s:
        table.row("lofn map in a warm container (reuse_containers; the next row's reference)",
                  sec("lofn_map_reuse"), f"{ratio('lofn_map_reuse'):.2f}x")
        table.judge("lofn pipe in a warm container (an exec), / warm map",
                    sec("lofn_pipe_reuse"), ratio("lofn_pipe_reuse", "lofn_map_reuse"), "<=", 1.0)


if __name__ == "__main__":
    sys.exit(main())
