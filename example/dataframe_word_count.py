#!/usr/bin/env python3
"""Count words with lofn over a DataFrame: awk in a busybox container per partition, summed in SQL.

The same word count as ``example/word_count.py``, with DataFrames only (no
RDD, no SparkContext), so it also runs through Spark Connect. Classic Spark
(the image is built by ``scripts/dev.sh setup``)::

    spark-submit --master 'local[*]' example/dataframe_word_count.py INPUT.txt

A Spark Connect server (started with ``start-connect-server.sh``, or see
docs/dataframes.rst) runs it from a plain Python client::

    python example/dataframe_word_count.py --remote sc://localhost:15002 INPUT.txt

With ``--remote``, ``INPUT.txt`` is read by the server, so it is a path on
the server's hosts (or a URL they can reach: ``hdfs://``, ``s3a://``...).
"""

import argparse
import os
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from example.word_count import IMAGE, MAP_COMMAND  # noqa: E402
from lofn.dataframe import map_dataframe  # noqa: E402
from lofn.errors import from_spark_error  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_file", help="a text file to count the words of")
    parser.add_argument("--remote", metavar="sc://HOST:PORT",
                        help="run through this Spark Connect server instead of spark-submit")
    parser.add_argument("-o", "--output", default="word_counts.tsv",
                        help="where to write 'word<TAB>count' lines (default %(default)s)")
    parser.add_argument("-p", "--partitions", type=int, default=8,
                        help="number of partitions (default %(default)s)")
    parser.add_argument("-n", "--top", type=int, default=10,
                        help="how many of the most frequent words to print")
    arguments = parser.parse_args()

    builder = SparkSession.builder.appName("lofn dataframe word count")
    spark = (builder.remote(arguments.remote) if arguments.remote else builder).getOrCreate()
    try:
        lines = spark.read.text(arguments.input_file).repartition(arguments.partitions)
        # One container per partition: the "value" column goes to /shared/input.txt and each
        # "word<TAB>count" line of /shared/output.txt becomes a row of the schema.
        counts = map_dataframe(lines, IMAGE, MAP_COMMAND, column="value",
                               schema="word STRING, count INT",
                               docker_options=["--network", "none"])
        totals = (counts.groupBy("word").agg(F.sum("count").alias("count"))
                  .orderBy(F.desc("count"), "word"))
        try:
            result = totals.collect()
        except Exception as exc:
            failure = from_spark_error(exc)  # the container's error, readable
            if failure is None:
                raise
            raise failure from None
        mode = f"Spark Connect {arguments.remote}" if arguments.remote else \
            f"classic Spark {spark.conf.get('spark.master')}"
    finally:
        spark.stop()

    with open(arguments.output, "w", encoding="utf-8") as handle:
        handle.writelines(f"{row.word}\t{row['count']}\n" for row in result)
    print(f"{len(result)} distinct words in {arguments.input_file} ({mode}); "
          f"the {arguments.top} most frequent:")
    for row in result[:arguments.top]:
        print(f"{row['count']:8d}  {row.word}")
    print(f"all counts written to {arguments.output}")


if __name__ == "__main__":
    main()
