"""Per-partition overhead of a trivial command: lofn fresh and reuse vs bare Docker vs rdd.pipe.

Usage: overhead.py --reps R --partitions N --out RESULT.json

One SparkContext on ``local[1]`` (one task at a time, like the bare runs,
which go one after the other). Each repetition times, in a rotating order:

- ``spark_python``: ``sc.parallelize(range(N), N).mapPartitions(identity).count()``
- ``lofn_fresh`` / ``lofn_reuse``: ``DockerPipe.map`` of ``cat input > output``, ``.count()``
- ``rdd_pipe``: ``rdd.pipe("docker run -i --rm IMAGE cat").count()``
- ``bare_cli``: N times ``docker run --rm -v TMP:/shared IMAGE sh -c 'cat ...'``
- ``bare_sdk``: N times create/start/wait/remove of the same through the Docker SDK
- ``lofn_fresh_traced`` / ``lofn_reuse_traced``: the same with ``trace=`` a directory
  in the temp root: what the trace (a cgroup meter and a record file per
  container) costs
- ``reuse_first``: a one-partition reuse-mode job whose options are new
  (``--env LOFN_BENCH_WARM=<rep>``), so its task starts a warm container: the
  one-time start, apart from the steady state of ``lofn_reuse``
- ``spark_sdk`` (diagnostic): a Spark job whose tasks each do one ``bare_sdk`` run,
  i.e. lofn's fresh mode minus lofn

Each Spark job ends in ``.mapPartitions(timed_partition)``: the time each
task spends pulling its partition through the variant (for lofn: writing the
input, running the container, reading the output back), summed over the
tasks. Per-partition overhead: that in-task time / N for the Spark variants,
wall time / N for the bare ones; and, as a cross-check, (job time -
``spark_python`` job time) / N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from common import (IMAGE, LOFN_OPTIONS, NETWORK, TRIVIAL, bare_partition, bare_run_cli,
                    bare_run_sdk, identity, log, now, pipe_command, spark_context,
                    timed_partition, write_json)

PIPE_COMMAND = pipe_command("cat")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from pyspark import SparkConf

    from lofn.api import DockerPipe

    n = args.partitions
    sc = spark_context("local[1]", "lofn-bench-overhead")
    app = sc.applicationId
    samples: dict[str, list[float]] = {}  # wall time of each job or bare loop
    in_task: dict[str, list[float]] = {}  # Spark jobs: seconds inside their tasks, summed
    try:
        rdd = sc.parallelize(range(n), n)
        fresh = DockerPipe(SparkConf())
        warm = DockerPipe(SparkConf(), reuse_containers=True)
        trace = tempfile.mkdtemp(prefix="lofnbench-trace-")
        fresh_traced = DockerPipe(SparkConf(), trace=trace)
        warm_traced = DockerPipe(SparkConf(), reuse_containers=True, trace=trace)

        def spark_job(make, data):
            """Run the job; return the seconds its tasks spent pulling their partitions."""
            timings = make(data).mapPartitions(timed_partition).collect()
            got = sum(count for count, _ in timings)
            if got != data.getNumPartitions():
                raise RuntimeError(f"expected {data.getNumPartitions()} lines, got {got}")
            return sum(seconds for _, seconds in timings)

        def bare(runner, count):
            for number in range(count):
                if runner(f"{number}\n") != f"{number}\n":
                    raise RuntimeError("bare run gave a wrong output")

        jobs = {
            "spark_python": lambda data: data.mapPartitions(identity),
            "lofn_fresh": lambda data: fresh.map(data, IMAGE, TRIVIAL, docker_options=LOFN_OPTIONS),
            "lofn_reuse": lambda data: warm.map(data, IMAGE, TRIVIAL, docker_options=LOFN_OPTIONS),
            "lofn_fresh_traced": lambda data: fresh_traced.map(data, IMAGE, TRIVIAL,
                                                               docker_options=LOFN_OPTIONS),
            "lofn_reuse_traced": lambda data: warm_traced.map(data, IMAGE, TRIVIAL,
                                                              docker_options=LOFN_OPTIONS),
            "rdd_pipe": lambda data: data.pipe(PIPE_COMMAND, checkCode=True),
            "spark_sdk": lambda data: data.mapPartitions(bare_partition),
        }
        runners = {"bare_cli": bare_run_cli, "bare_sdk": bare_run_sdk}
        # warm-up, untimed: Python workers, Docker connections, lofn's watchdog, the warm container
        small = sc.parallelize(range(2), 2)
        for make in jobs.values():
            spark_job(make, small)
        for runner in runners.values():
            bare(runner, 2)
        first = sc.parallelize(range(1), 1)
        started = iter(range(1 << 30))

        def reuse_first():
            options = [*LOFN_OPTIONS, "--env", f"LOFN_BENCH_WARM={next(started)}"]
            return spark_job(lambda data: warm.map(data, IMAGE, TRIVIAL, docker_options=options),
                             first)

        variants = {**{name: (lambda make=make: spark_job(make, rdd)) for name, make in jobs.items()},
                    **{name: (lambda runner=runner: bare(runner, n))
                       for name, runner in runners.items()},
                    "reuse_first": reuse_first}
        names = list(variants)
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                start = now()
                in_tasks = variants[name]()
                samples.setdefault(name, []).append(now() - start)
                if in_tasks is not None:
                    in_task.setdefault(name, []).append(in_tasks)
            log(f"overhead rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{name} {samples[name][-1]:.1f}s" + (f" ({in_task[name][-1]:.1f}s in tasks)"
                                                      if name in in_task else "")
                for name in names))
    finally:
        sc.stop()
    records = len(os.listdir(trace))
    shutil.rmtree(trace)
    write_json(args.out, {"partitions": n, "master": "local[1]", "apps": [app],
                          "network": NETWORK, "pipe_command": PIPE_COMMAND,
                          "samples": samples, "in_task": in_task, "trace_records": records})


if __name__ == "__main__":
    sys.exit(main())
