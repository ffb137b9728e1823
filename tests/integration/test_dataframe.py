"""lofn.dataframe.map_dataframe on a classic SparkSession (the Spark Connect run is in
tests/cluster/test_connect.py): real Spark, real containers, through ``mapInArrow``."""

from __future__ import annotations

import datetime
import decimal

import pytest

from lofn.api import DockerPipe
from lofn.dataframe import map_dataframe, pipe_for
from lofn.errors import (
    DockerFailure,
    InvalidArgument,
    InvalidArgumentType,
    LofnError,
    from_spark_error,
)

from .helpers import MAP_COMMAND, make_text, python_counts

# The containers need no network (and the engine's default bridge may be missing).
NETWORK = ["--network", "none"]
CAT = "cat /shared/input.txt > /shared/output.txt"


@pytest.fixture(scope="module")
def spark(sc):
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()  # the session of `sc`; stopped with it


def _recover(action):
    with pytest.raises(Exception) as caught:
        action()
    failure = from_spark_error(caught.value)
    assert failure is not None, f"no lofn error in {type(caught.value).__name__}: {caught.value}"
    return failure


def test_word_count_as_lines_and_as_parsed_rows(spark, busybox):
    from pyspark.sql import functions as F

    text = make_text(1200, seed=3)
    df = spark.createDataFrame([(number, line) for number, line in enumerate(text)],
                               "number INT, text STRING").repartition(3)
    lines = map_dataframe(df, busybox, MAP_COMMAND, column="text", docker_options=NETWORK)
    assert lines.schema.simpleString() == "struct<line:string>"
    fields = F.split(lines.line, "\t")
    summed = (lines.select(fields[0].alias("word"), fields[1].cast("int").alias("n"))
              .groupBy("word").agg(F.sum("n").alias("n")).collect())
    assert {row.word: row.n for row in summed} == python_counts(text)

    parsed = map_dataframe(df, busybox, MAP_COMMAND, column="text",
                           schema="word STRING, count INT", docker_options=NETWORK)
    assert parsed.schema.simpleString() == "struct<word:string,count:int>"
    summed = parsed.groupBy("word").agg(F.sum("count").alias("n")).collect()
    assert {row.word: row.n for row in summed} == python_counts(text)


def test_default_parser_types_small_batches_and_a_users_pipe(spark, pipe, busybox):
    # a LONG column is written as text; each output line has five typed fields
    command = ("awk '{ printf \"%d\\t%s\\t%s\\t2024-01-%02d\\t%s\\n\", $1, $1 * 1.5,"
               " ($1 % 2 == 0) ? \"true\" : \"false\", $1 + 1, ($1 == 4) ? \"\" : $1 \".25\" }'"
               " /shared/input.txt > /shared/output.txt")
    df = spark.range(0, 10, 1, 2)
    typed = map_dataframe(df, busybox, command, pipe=pipe, batch_size=3, docker_options=NETWORK,
                          schema="n LONG, x DOUBLE, even BOOLEAN, day DATE, d DECIMAL(6,2)")
    rows = sorted(typed.collect())
    assert [row.n for row in rows] == list(range(10))
    assert rows[3].x == 4.5 and rows[3].even is False and rows[2].even is True
    assert rows[9].day == datetime.date(2024, 1, 10)
    assert rows[7].d == decimal.Decimal("7.25")
    assert rows[4].d is None  # an empty field of a non-string type is null


def test_parse_function_drops_and_builds_rows(spark, busybox):
    df = spark.createDataFrame([("a=1",), ("b=2",), ("# note",), ("c=3",)], "kv STRING")

    def parse(line):
        if line.startswith("#"):
            return None
        key, value = line.split("=")
        return {"value": [int(value)] * int(value), "key": key}

    rows = map_dataframe(df.coalesce(1), busybox, CAT, schema="key STRING, value ARRAY<INT>",
                         parse=parse, docker_options=NETWORK).collect()
    assert sorted((row.key, row.value) for row in rows) == [
        ("a", [1]), ("b", [2, 2]), ("c", [3, 3, 3])]


def test_empty_partitions_start_no_container_and_nulls_are_empty_lines(spark, sc, busybox,
                                                                       tmp_path):
    log = tmp_path / "runs"
    pipe = pipe_for(spark, volumes={str(tmp_path): {"bind": "/log", "mode": "rw"}})
    df = spark.createDataFrame([("x",), (None,), ("z",)], "s STRING").repartition(6)
    non_empty = df.rdd.glom().filter(bool).count()
    out = map_dataframe(df, busybox, "echo run >> /log/runs; " + CAT, pipe=pipe,
                        output_column="copy", docker_options=NETWORK)
    assert sorted(row.copy for row in out.collect()) == ["", "x", "z"]
    assert len(log.read_text().splitlines()) == non_empty <= 3


def test_task_failures_are_recovered_as_lofn_errors(spark, busybox):
    df = spark.createDataFrame([("one",), ("two",)], "s STRING").coalesce(1)
    failure = _recover(lambda: map_dataframe(
        df, busybox, "echo broken >&2; exit 3", docker_options=NETWORK).collect())
    assert isinstance(failure, DockerFailure)
    assert failure.exit_code == 3 and failure.stderr == "broken"

    failure = _recover(lambda: map_dataframe(
        df, busybox, "printf 'a\\tb\\tc\\n' > /shared/output.txt", schema="word STRING, n INT",
        docker_options=NETWORK).collect())
    assert type(failure) is LofnError
    assert "output line 1 of partition 0 does not fit the schema (word, n)" in str(failure)
    assert "3 fields" in str(failure)

    failure = _recover(lambda: map_dataframe(
        df, busybox, "printf 'a\\tmany\\n' > /shared/output.txt", schema="word STRING, n INT",
        docker_options=NETWORK).collect())
    assert "field 'n' (integer)" in str(failure)


def test_bad_arguments_fail_on_the_client(spark, busybox):
    df = spark.createDataFrame([("a", 1, [1])], "s STRING, n INT, xs ARRAY<INT>")
    cases = [
        (InvalidArgument, dict(), "name the one to write"),
        (InvalidArgument, dict(column="nope"), "no column 'nope'"),
        (InvalidArgumentType, dict(column="xs"), "has type array<int>"),
        (InvalidArgument, dict(column="s", schema="a STRING", output_column="x"), "not both"),
        (InvalidArgumentType, dict(column="s", schema="t TIMESTAMP"), "give parse="),
        (InvalidArgument, dict(column="s", parse=str), "parse needs a schema"),
        (InvalidArgument, dict(column="s", batch_size=0), "batch_size"),
        (InvalidArgumentType, dict(column="s", schema=42), "StructType or a DDL string"),
    ]
    for error, kwargs, text in cases:
        with pytest.raises(error, match=text):
            map_dataframe(df, busybox, CAT, **kwargs)
    with pytest.raises(InvalidArgumentType, match="must be a Spark DataFrame"):
        map_dataframe(df.rdd, busybox, CAT, column="s")
    with pytest.raises(InvalidArgument, match="command must be a non-empty string"):
        map_dataframe(df, busybox, " ", column="s")


def test_a_shipping_pipe_ships_for_map_dataframe_too(spark, busybox, monkeypatch):
    """``map_dataframe`` builds its job with ``DockerPipe.job``, as ``map`` does (it once did not).

    In local mode nothing is saved (the driver's engine is the executors'),
    but the job must carry the shipment; tests/cluster/test_ship_image.py
    runs the same against executors whose engine lacks the image.
    """
    from pyspark import SparkConf

    from lofn import _images

    shipped = []
    ship = _images.ship

    def recording(sc, image, *args, **kwargs):
        shipped.append((sc, image, kwargs.get("save")))
        return ship(sc, image, *args, **kwargs)

    monkeypatch.setattr(_images, "ship", recording)
    df = spark.createDataFrame([("b",), ("a",)], "s STRING")
    out = map_dataframe(df, busybox, "sort /shared/input.txt > /shared/output.txt",
                        pipe=DockerPipe(SparkConf(), ship_image=True))
    assert shipped == [(spark.sparkContext, busybox, False)]
    assert sorted(row.line for row in out.collect()) == ["a", "b"]
