"""A lofn job whose executors' Docker engine lacks the image.

Run by tests/cluster/test_ship_image.py.

Usage::

    spark-submit --master spark://HOST:PORT ship_image_job.py --image IMAGE [--partitions N]

The driver's engine has ``IMAGE``; the executors' engine (their
``DOCKER_HOST``) does not. The job first runs a map without
``ship_image`` (which must fail with ImageUnavailable), then the word count
of ``example/word_count.py`` (``map`` + ``reduce``) with
``ship_image=True``. lofn's log lines go to the executors' stderr. With
``--dataframe`` it runs only the word count's map with
:func:`lofn.dataframe.map_dataframe` and ``ship_image=True``. The last
stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark import SparkConf, SparkContext  # noqa: E402
from standalone_job import expected_counts, make_lines, word_counts  # noqa: E402

from example.word_count import MAP_COMMAND, REDUCE_COMMAND  # noqa: E402
from lofn.api import DockerPipe  # noqa: E402
from lofn.errors import from_spark_error  # noqa: E402

# The executors' engine has no bridge network.
DOCKER_OPTIONS = ["--network", "none"]


def log_to_stderr(iterator):
    """Pass a partition through, after sending lofn's INFO lines to this worker's stderr."""
    logger = logging.getLogger("lofn")
    if not any(getattr(handler, "ship_image_job", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.ship_image_job = True
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield from iterator


def where_am_i(index, iterator):
    """Tag a partition with the executor that ran it (its work directory's name)."""
    cwd = os.getcwd()
    parent = os.path.basename(os.path.dirname(cwd))
    executor = os.path.basename(cwd) if parent.startswith("app-") else None
    yield index, executor, os.environ.get("DOCKER_HOST"), list(iterator)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--dataframe", action="store_true")
    arguments = parser.parse_args()
    if arguments.dataframe:
        dataframe_job(arguments)
        return

    lines = make_lines(arguments.lines)
    started = time.monotonic()
    sc = SparkContext(conf=SparkConf().setAppName("lofn ship_image cluster test"))
    sc.setLogLevel("ERROR")
    summary: dict = {"master": sc.master, "application": sc.applicationId,
                     "driver_docker_host": os.environ.get("DOCKER_HOST"),
                     "context_seconds": time.monotonic() - started}
    try:
        rdd = sc.parallelize(lines, arguments.partitions).mapPartitions(log_to_stderr)

        # Without ship_image: the executors' engine lacks the image.
        plain = DockerPipe(SparkConf())
        started = time.monotonic()
        small = sc.parallelize(lines[:20], 2).mapPartitions(log_to_stderr)
        try:
            plain.map(small, arguments.image, MAP_COMMAND, docker_options=DOCKER_OPTIONS).count()
            summary["without_ship"] = {"error": None}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            failure = from_spark_error(exc)
            summary["without_ship"] = {
                "error": type(failure or exc).__name__,
                "image": getattr(failure, "image", None),
                "hint": getattr(failure, "hint", None),
                "message": str(failure or exc).splitlines()[0][:500]}
        summary["without_ship"]["seconds"] = time.monotonic() - started

        # With ship_image: saved here, shipped by Spark, loaded once on the executors' host.
        pipe = DockerPipe(SparkConf(), ship_image=True)
        started = time.monotonic()
        mapped = pipe.map(rdd, arguments.image, MAP_COMMAND, docker_options=DOCKER_OPTIONS)
        summary["ship_call_seconds"] = time.monotonic() - started  # docker save + addFile
        saved = glob.glob(os.path.join(tempfile.gettempdir(), "lofn-image-*", "*.tar"))
        summary["saved_files"] = [os.path.basename(path) for path in saved]
        summary["saved_bytes"] = [os.path.getsize(path) for path in saved]
        summary["saved_directory"] = os.path.dirname(saved[0]) if saved else None

        started = time.monotonic()
        tagged = mapped.mapPartitionsWithIndex(where_am_i)
        tagged.cache()
        partitions = tagged.map(lambda t: (t[0], t[1], t[2], len(t[3]))).collect()
        summary["map_seconds"] = time.monotonic() - started
        result = pipe.reduce(tagged.flatMap(lambda t: t[3]), arguments.image, REDUCE_COMMAND,
                             docker_options=DOCKER_OPTIONS)
        summary["map_reduce_seconds"] = time.monotonic() - started
        tagged.unpersist()
        # A second call reuses the saved file (no second docker save).
        again = time.monotonic()
        pipe.map(rdd, arguments.image, "cp /shared/input.txt /shared/output.txt",
                 docker_options=DOCKER_OPTIONS)
        summary["second_ship_call_seconds"] = time.monotonic() - again
        summary["saved_files_after_second_call"] = sorted(
            os.path.basename(p) for p in glob.glob(os.path.join(tempfile.gettempdir(),
                                                                "lofn-image-*", "*.tar")))

        # Reuse mode on the shipped image: warm containers, removed when the workers go.
        reusing = DockerPipe(SparkConf(), ship_image=True, reuse_containers=True)
        reused = reusing.reduce(reusing.map(rdd, arguments.image, MAP_COMMAND,
                                            docker_options=DOCKER_OPTIONS),
                                arguments.image, REDUCE_COMMAND, docker_options=DOCKER_OPTIONS)

        summary.update({
            "counts": word_counts(result),
            "reuse_counts": word_counts(reused),
            "expected_counts": expected_counts(lines),
            "map_partitions": [{"partition": p, "executor": e, "docker_host": d, "lines": n}
                               for p, e, d, n in sorted(partitions)],
            "executors": sorted({p[1] for p in partitions if p[1] is not None}),
        })
    finally:
        sc.stop()
    directory = summary.get("saved_directory")
    summary["saved_directory_removed_at_stop"] = (directory is None
                                                  or not os.path.exists(directory))
    print(json.dumps(summary, sort_keys=True))


def saved_files() -> list[str]:
    return sorted(os.path.basename(path) for path in
                  glob.glob(os.path.join(tempfile.gettempdir(), "lofn-image-*", "*.tar")))


def dataframe_job(arguments) -> None:
    """map_dataframe with a pipe that ships the image: it must ship as the RDD methods do."""
    from pyspark.sql import SparkSession

    from lofn.dataframe import map_dataframe

    lines = make_lines(arguments.lines)
    spark = SparkSession.builder.appName("lofn ship_image map_dataframe test").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    summary: dict = {"application": spark.sparkContext.applicationId}
    try:
        frame = spark.createDataFrame([(line,) for line in lines], "value STRING")
        pipe = DockerPipe(SparkConf(), ship_image=True)
        mapped = map_dataframe(frame.repartition(arguments.partitions), arguments.image,
                               MAP_COMMAND, pipe=pipe, docker_options=DOCKER_OPTIONS)
        summary["saved_files"] = saved_files()
        summary["counts"] = word_counts(row.line for row in mapped.collect())
        summary["expected_counts"] = expected_counts(lines)
    finally:
        spark.stop()
    summary["saved_files_after_stop"] = saved_files()
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
