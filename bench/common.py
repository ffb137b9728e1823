"""Shared pieces of lofn's speed benchmark.

Imported by ``run.py``, by the sub-benchmarks (``overhead.py``,
``wordcount.py``, ``memory.py``) and, through ``PYTHONPATH``, by Spark's
Python workers: the functions that run inside tasks live here so that
they are pickled by reference, never with a Docker client inside.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from example.word_count import MAP_COMMAND, REDUCE_COMMAND  # noqa: E402

IMAGE = "lofn/busybox:latest"
#: The trivial per-partition command: read a tiny input, write it back.
TRIVIAL = "cat /shared/input.txt > /shared/output.txt"
#: Label on every container the benchmark starts itself (bare runs, rdd.pipe, old reduce).
BENCH_LABEL = "lofnbench"
#: Network of every container, lofn's and the others alike (run.py --network; default none:
#: the commands need none, and it keeps the engine's bridge out of every measurement).
NETWORK = os.environ.get("LOFN_BENCH_NETWORK", "none")
#: The same as lofn ``docker_options``.
LOFN_OPTIONS = ["--network", NETWORK]
#: The word-count map as a stdin -> stdout filter, for ``rdd.pipe``.
MAP_FILTER = MAP_COMMAND.replace(" /shared/input.txt > /shared/output.txt", "")
assert MAP_FILTER != MAP_COMMAND, "example/word_count.py MAP_COMMAND changed shape"

__all__ = ["IMAGE", "NETWORK", "LOFN_OPTIONS", "TRIVIAL", "MAP_COMMAND", "REDUCE_COMMAND",
           "MAP_FILTER", "LINE_BYTES", "pipe_command", "spark_context", "bench_root", "log",
           "now", "write_json", "bare_run_sdk", "bare_run_cli", "bare_partition",
           "old_pairwise_merge", "counts_of_lines", "lines_counter", "merge_counters",
           "timed_partition", "identity", "nest", "big_lines"]

now = time.perf_counter


def bench_root() -> str:
    """The run's private temp root (``TMPDIR`` of the driver and of every Spark worker)."""
    return os.environ.get("LOFN_BENCH_ROOT") or tempfile.gettempdir()


def spark_context(master: str, app: str, **conf):
    """A SparkContext with the UI off, quiet logs, and Spark's scratch space in the bench root."""
    from pyspark import SparkConf, SparkContext

    spark_conf = (SparkConf().setMaster(master).setAppName(app)
                  .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
                  .set("spark.log.level", "ERROR")
                  .set("spark.local.dir", bench_root()))
    for key, value in conf.items():
        spark_conf.set(key, value)
    context = SparkContext(conf=spark_conf)
    context.setLogLevel("ERROR")
    return context


def write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------
# bare Docker: what a ``docker run --rm`` of the same command costs

_client = None


def docker_client():
    global _client
    if _client is None or _client[0] != os.getpid():
        import docker

        _client = (os.getpid(), docker.from_env())
    return _client[1]


def _scratch(text: str, prefix: str = "lofnbench-bare-") -> str:
    directory = tempfile.mkdtemp(prefix=prefix, dir=bench_root())
    with open(os.path.join(directory, "input.txt"), "w", encoding="utf-8") as handle:
        handle.write(text)
    return directory


def _read_output(directory: str) -> str:
    with open(os.path.join(directory, "output.txt"), encoding="utf-8") as handle:
        return handle.read()


def _run_in(directory: str, command: str, label: str, **create) -> str:
    """Create, start, wait for and remove a container over ``directory`` at ``/shared``;
    return its ``output.txt``."""
    container = docker_client().containers.create(
        IMAGE, entrypoint=["sh", "-c"], command=[command], labels={BENCH_LABEL: label},
        network_mode=NETWORK, volumes={directory: {"bind": "/shared", "mode": "rw"}}, **create)
    try:
        container.start()
        code = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    if code != 0:
        raise RuntimeError(f"{label} container exited {code}")
    return _read_output(directory)


def bare_run_sdk(text: str, command: str = TRIVIAL) -> str:
    """``docker run --rm`` of ``command`` through the SDK: create, start, wait, remove.

    Like lofn, the input is written to a fresh temp directory mounted at
    ``/shared`` and the output read back; unlike lofn, nothing else
    (no labels per task, no capability dropping, no image check).
    """
    directory = _scratch(text)
    try:
        return _run_in(directory, command, "bare")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def bare_partition(iterator):
    """``mapPartitions`` body: a partition through :func:`bare_run_sdk`, as lofn's map does.

    A generator, like lofn's: the container runs when the first line is pulled.
    """
    yield from bare_run_sdk("".join(f"{element}\n" for element in iterator)).splitlines()


def bare_run_cli(text: str, command: str = TRIVIAL) -> str:
    """The same through the docker CLI: ``docker run --rm -v DIR:/shared IMAGE sh -c CMD``."""
    directory = _scratch(text)
    try:
        subprocess.run(["docker", "run", "--rm", "--label", f"{BENCH_LABEL}=bare",
                        "--network", NETWORK, "-v", f"{directory}:/shared",
                        IMAGE, "sh", "-c", command],
                       check=True, stdin=subprocess.DEVNULL)
        return _read_output(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def pipe_command(script: str) -> str:
    """The ``rdd.pipe`` command line: ``docker run -i --rm IMAGE sh -c SCRIPT``."""
    return shlex.join(["docker", "run", "-i", "--rm", "--label", f"{BENCH_LABEL}=pipe",
                       "--network", NETWORK, IMAGE, "sh", "-c", script])


# ---------------------------------------------------------------------------
# word count helpers

def old_pairwise_merge(left: list, right: list) -> list:
    """The older lofn's reduce function: one container merging two blocks.

    Given to ``rdd.reduce``: Spark applies it within each partition on the
    executors (never here: each partition holds one block) and then
    sequentially on the driver, P-1 containers one after the other.
    """
    directory = _scratch("".join(line + "\n" for line in left + right), "lofnbench-old-")
    try:
        return _run_in(directory, REDUCE_COMMAND, "old-reduce",
                       user=f"{os.getuid()}:{os.getgid()}").splitlines()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def counts_of_lines(lines) -> dict:
    """``word<TAB>count`` lines -> {word: count}; a repeated word is an error."""
    counts = {}
    for line in lines:
        word, count = line.split("\t")
        if word in counts:
            raise ValueError(f"word {word!r} appears twice in a reduced table")
        counts[word] = int(count)
    return counts


def lines_counter(lines):
    """``mapPartitions`` body: one Counter of a partition's ``word<TAB>count`` lines."""
    counter = collections.Counter()
    for line in lines:
        word, count = line.split("\t")
        counter[word] += int(count)
    return [counter]


def merge_counters(left, right):
    left.update(right)
    return left


def timed_partition(iterator):
    """``mapPartitions`` body: (elements, seconds spent pulling them) of this partition.

    Chained after a variant in the same stage, so the pull runs the variant's
    work for the partition (lofn's container) inside this task.
    """
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return [(count, time.perf_counter() - start)]


def identity(iterator):
    return iterator


def nest(iterator):
    """The older lofn's blocks: each partition as one list element."""
    return [list(iterator)]


# ---------------------------------------------------------------------------
# memory helpers

LINE_BYTES = 100  # with the newline lofn adds
_FILLER = "abcdefghijklmnopqrstuvwxyz0123456789" * 3


def big_lines(total_bytes: int):
    """A generator of ``total_bytes`` / 100 lines of 99 characters (the newline makes 100)."""
    def generate(_):
        filler = _FILLER[:LINE_BYTES - 1 - 11]
        for number in range(-(-total_bytes // LINE_BYTES)):
            yield f"{number:010d} {filler}"
    return generate
