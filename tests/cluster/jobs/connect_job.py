"""A lofn DataFrame job for a real Spark Connect server; run by tests/cluster/test_connect.py.

Usage::

    python connect_job.py --remote sc://127.0.0.1:PORT --image IMAGE --log-dir DIR

A Spark Connect client cannot live in a process that holds a classic
SparkContext (``SESSION_ALREADY_EXIST``), and the test process holds one,
so the client runs here, in its own process. It runs, through the server:

* a word count: ``map_dataframe`` with the awk map of ``example/word_count.py``
  over a text column, its output lines split and summed in Spark SQL;
* the same map parsed into ``word STRING, count INT``, summed in Spark SQL;
* a tiny DataFrame spread over more partitions than rows, with a pipe
  setting (a read-write volume where each container appends a line), to
  count the containers: empty partitions must start none;
* a failing command, whose error must come back readable.

The last stdout line is a JSON object with the results and the expected
values computed in plain Python.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from lofn.dataframe import map_dataframe, pipe_for  # noqa: E402
from lofn.errors import from_spark_error  # noqa: E402
from tests.integration.helpers import MAP_COMMAND, make_text, python_counts  # noqa: E402

# The containers need no network (and the engine's default bridge may be missing).
NETWORK = ["--network", "none"]
FAILING = ("i=0; while [ $i -lt 30 ]; do echo \"problem line $i\" >&2; i=$((i+1)); done;"
           " exit 3")
LOGGING = "echo run >> /log/runs; cat /shared/input.txt > /shared/output.txt"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--remote", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--lines", type=int, default=1500)
    parser.add_argument("--partitions", type=int, default=4)
    arguments = parser.parse_args()

    seconds: dict[str, float] = {}
    started = time.monotonic()
    spark = SparkSession.builder.remote(arguments.remote).getOrCreate()
    seconds["connect"] = time.monotonic() - started
    try:
        summary = {"session_type": f"{type(spark).__module__}.{type(spark).__name__}",
                   "master": spark.conf.get("spark.master"),
                   "application": spark.conf.get("spark.app.id"),
                   "seconds": seconds}
        text = make_text(arguments.lines, seed=11)
        summary["expected_counts"] = python_counts(text)
        df = spark.createDataFrame([(line, number) for number, line in enumerate(text)],
                                   "text STRING, number INT").repartition(arguments.partitions)

        # 1. output lines as a string column, split and summed in Spark SQL
        started = time.monotonic()
        lines = map_dataframe(df, arguments.image, MAP_COMMAND, column="text",
                              docker_options=NETWORK)
        summary["lines_schema"] = lines.schema.simpleString()
        fields = F.split(lines.line, "\t")
        counted = (lines.select(fields[0].alias("word"), fields[1].cast("int").alias("count"))
                   .groupBy("word").agg(F.sum("count").alias("count")))
        summary["counts"] = {row.word: row["count"] for row in counted.collect()}
        seconds["lines"] = time.monotonic() - started

        # 2. output lines parsed into a schema
        started = time.monotonic()
        parsed = map_dataframe(df, arguments.image, MAP_COMMAND, column="text",
                               schema="word STRING, count INT", docker_options=NETWORK)
        summary["parsed_schema"] = parsed.schema.simpleString()
        summary["parsed_counts"] = {
            row.word: row.total
            for row in parsed.groupBy("word").agg(F.sum("count").alias("total")).collect()}
        summary["parsed_rows_per_partition_max"] = parsed.groupBy(
            F.spark_partition_id()).count().agg(F.max("count")).first()[0]
        seconds["parsed"] = time.monotonic() - started

        # 3. empty partitions start no container; the pipe's volume reaches the containers
        started = time.monotonic()
        sparse = spark.range(0, 3, 1, 6)  # 3 rows in 6 partitions
        summary["sparse_non_empty_partitions"] = sparse.select(
            F.spark_partition_id()).distinct().count()
        pipe = pipe_for(spark, volumes={arguments.log_dir: {"bind": "/log", "mode": "rw"}})
        echoed = map_dataframe(sparse, arguments.image, LOGGING, column="id", pipe=pipe,
                               output_column="id_text", docker_options=NETWORK)
        summary["sparse_schema"] = echoed.schema.simpleString()
        summary["sparse_rows"] = sorted(row.id_text for row in echoed.collect())
        with open(os.path.join(arguments.log_dir, "runs"), encoding="utf-8") as handle:
            summary["sparse_containers"] = sum(1 for _ in handle)
        seconds["sparse"] = time.monotonic() - started

        # 4. a failing command: a readable lofn error on the client
        started = time.monotonic()
        try:
            map_dataframe(df, arguments.image, FAILING, column="text",
                          docker_options=NETWORK).collect()
        except Exception as exc:  # noqa: BLE001 - what Connect raises is what we test
            failure = from_spark_error(exc)
            summary["failure"] = {
                "spark_exception": f"{type(exc).__module__}.{type(exc).__name__}",
                "spark_text_has_exit_code": "exit code: 3" in str(exc),
                "lofn": None if failure is None else type(failure).__name__,
                "exit_code": getattr(failure, "exit_code", None),
                "image": getattr(failure, "image", None),
                "stderr": getattr(failure, "stderr", None),
                "text": None if failure is None else str(failure),
            }
        else:
            summary["failure"] = None
        seconds["failure"] = time.monotonic() - started
    finally:
        spark.stop()
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
