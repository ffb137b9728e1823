"""Run a container per partition of a Spark DataFrame, with ``mapInArrow``.

:func:`map_dataframe` is :meth:`lofn.api.DockerPipe.map` for DataFrames:
each partition's values of one column are streamed to the container's input
file, one per line, and the lines the container writes become the rows of a
new DataFrame, as one string column or parsed into a schema of your choice.

It uses only the DataFrame API (``DataFrame.mapInArrow``), never an RDD or
the ``SparkContext``, so it also works in a Spark Connect session
(``SparkSession.builder.remote("sc://...")``) and on shared clusters where
RDDs are not allowed. The container job is built on the client, pickled
into the ``mapInArrow`` function and run by the Python workers of the
executors: the client needs lofn and ``pyspark[connect]``; the executors
need lofn, the Docker SDK and a Docker engine, as for :class:`~lofn.api.DockerPipe`.

>>> from lofn.dataframe import map_dataframe
>>> lines = spark.read.text("words.txt")                     # one column, "value"
>>> counts = map_dataframe(lines, "lofn/busybox", "sort /shared/input.txt | uniq -c"
...                        " > /shared/output.txt", column="value")
>>> counts.show()                                          # one column, "line"
"""

from __future__ import annotations

import datetime
import decimal
import inspect
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from lofn import resources
from lofn._task import ContainerJob, _task_ids
from lofn.api import DockerPipe
from lofn.errors import InvalidArgument, InvalidArgumentType, LofnError
from lofn.options import CallOptions, Default
from lofn.tmp_file_handler import lines_of

__all__ = ["map_dataframe", "pipe_for"]

logger = logging.getLogger(__name__)

#: Default number of rows in each Arrow batch of the output.
BATCH_SIZE = 10_000
#: Default name of the output column when no schema is given.
OUTPUT_COLUMN = "line"
_SHOWN = 200  # characters of an unparsable output line shown in the error


# -- the session ---------------------------------------------------------------------

def _is_connect(obj) -> bool:
    """Whether ``obj`` (a DataFrame or a SparkSession) belongs to Spark Connect."""
    return type(obj).__module__.startswith("pyspark.sql.connect")


def _session_conf(session, key: str) -> str | None:
    """``key`` of the session's runtime configuration, or ``None`` if it cannot be read."""
    try:
        value = session.conf.get(key, None)
    except Exception:
        logger.debug("cannot read %s from the session", key, exc_info=True)
        return None
    return value or None


def _app_id(session) -> str:
    """The Spark application id (the ``lofn.app`` label of the containers)."""
    app = _session_conf(session, "spark.app.id")
    if app is None and not _is_connect(session):
        app = session.sparkContext.applicationId
    return app or "connect"


def _remote_is_loopback(session) -> bool:
    """Whether a Connect session's server runs on this host (``sc://localhost``, ``127.x``)."""
    try:
        host = session.client.host  # the host of the sc:// URL
    except Exception:  # noqa: BLE001 - another Connect client implementation
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pipe_for(session, **kwargs) -> DockerPipe:
    """A :class:`~lofn.api.DockerPipe` for ``session``, classic or Spark Connect.

    ``DockerPipe(SparkConf())`` reads ``spark.master`` from the local JVM,
    which a Spark Connect client does not have; this reads it from the
    session instead (the server's master), so lofn knows where the tasks
    run.

    The keyword arguments are those of :class:`~lofn.api.DockerPipe`:
    ``volumes``, ``timeout``, ``temporary_directory_parent``, ``image_pull``,
    ``reuse_containers``, ``result_cache``, ``hdfs_url``...

    Args:
        session: a ``SparkSession`` (``pyspark.sql`` or ``pyspark.sql.connect``).
        **kwargs: passed to :class:`~lofn.api.DockerPipe`.

    Raises:
        ValueError: the session's master is not one lofn supports.
    """
    from pyspark import SparkConf

    if _is_connect(session):
        conf = SparkConf(loadDefaults=False)
    else:
        conf = SparkConf()
    # the master, and what resources= reads of the server's configuration
    for key in ("spark.master", *(resources.SETTINGS if kwargs.get("resources") else ())):
        value = _session_conf(session, key)
        if value:
            conf.set(key, value)
    return DockerPipe(conf, **kwargs)


# Show DockerPipe's keywords in pipe_for's signature (help(), IDEs, notebooks' completion).
pipe_for.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("session", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     *(parameter for parameter in inspect.signature(DockerPipe.__init__).parameters.values()
       if parameter.kind is inspect.Parameter.KEYWORD_ONLY)],
    return_annotation=DockerPipe)


# -- what runs in the tasks ----------------------------------------------------------

def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "t", "1", "yes"):
        return True
    if lowered in ("false", "f", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


_CONVERTERS: dict[str, Callable[[str], object]] = {
    "string": str,
    "byte": int, "short": int, "integer": int, "long": int,
    "float": float, "double": float,
    "boolean": _to_bool,
    "decimal": decimal.Decimal,
    "date": datetime.date.fromisoformat,
    "binary": lambda text: text.encode("utf-8"),
}


def _converter_name(data_type) -> str | None:
    """The key of :data:`_CONVERTERS` for a Spark type, or ``None`` if unsupported."""
    name = data_type.typeName()  # 'string', 'integer', 'decimal', ...
    return name if name in _CONVERTERS else None


@dataclass(frozen=True)
class _Plan:
    """Everything one ``mapInArrow`` task needs; built on the client, pickled to tasks."""

    job: ContainerJob
    input_name: str
    output_name: str
    arrow_schema: Any  # pyarrow.Schema of the output
    field_names: tuple[str, ...]
    converters: tuple[str, ...] | None  # per field, when the default parser is used
    parse: Callable | None
    separator: str
    batch_size: int


def _first_rows(batches: Iterator) -> Iterator | None:
    """The batches from the first non-empty one on, or ``None`` if every batch is empty."""
    for batch in batches:
        if batch.num_rows:
            def chained(first=batch):
                yield first
                yield from batches
            return chained()
    return None


def _values(batches: Iterable) -> Iterator:
    """The input column's values, batch by batch; a null is an empty line."""
    for batch in batches:
        for value in batch.column(0).to_pylist():
            yield "" if value is None else value


def _parse_error(plan: _Plan, number: int, line: str, problem: str) -> LofnError:
    shown = line if len(line) <= _SHOWN else line[:_SHOWN] + "..."
    return LofnError(
        f"output line {number} of partition {_task_ids()[1]} does not fit the schema "
        f"({', '.join(plan.field_names)}): {problem}; line: {shown!r}")


def _default_row(plan: _Plan, number: int, line: str) -> tuple:
    parts = line.split(plan.separator)
    if len(parts) != len(plan.field_names):
        raise _parse_error(plan, number, line, f"{len(parts)} fields separated by "
                                               f"{plan.separator!r}, expected "
                                               f"{len(plan.field_names)}")
    row: list[object] = []
    for name, kind, text in zip(plan.field_names, plan.converters or (), parts, strict=True):
        if kind == "string":
            row.append(text)
        elif text == "":
            row.append(None)
        else:
            try:
                row.append(_CONVERTERS[kind](text))
            except (ValueError, ArithmeticError) as exc:
                raise _parse_error(plan, number, line,
                                   f"field {name!r} ({kind}): {exc}") from None
    return tuple(row)


def _row(plan: _Plan, number: int, line: str) -> tuple | None:
    """The row of output line ``number``, by ``parse`` or the default parser; ``None``: drop it."""
    if plan.parse is None:
        return _default_row(plan, number, line)
    try:
        row = plan.parse(line)
    except LofnError:
        raise
    except Exception as exc:
        raise _parse_error(plan, number, line,
                           f"parse raised {type(exc).__name__}: {exc}") from exc
    if row is None:
        return None
    if isinstance(row, dict):
        row = tuple(row.get(name) for name in plan.field_names)
    else:
        row = tuple(row)
    if len(row) != len(plan.field_names):
        raise _parse_error(plan, number, line, f"parse returned {len(row)} values, "
                                               f"expected {len(plan.field_names)}")
    return row


def _batch(plan: _Plan, columns: list[list]):
    import pyarrow as pa

    try:
        arrays = [pa.array(values, type=field.type)
                  for values, field in zip(columns, plan.arrow_schema, strict=True)]
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise LofnError(f"output of partition {_task_ids()[1]} does not fit the schema "
                        f"({', '.join(plan.field_names)}): {type(exc).__name__}: "
                        f"{exc}") from None
    return pa.RecordBatch.from_arrays(arrays, schema=plan.arrow_schema)


def _output_batches(plan: _Plan, lines: Iterator[str]):
    """The output lines as Arrow batches of ``plan.batch_size`` rows."""
    width = len(plan.field_names)
    if plan.converters is None and plan.parse is None:  # one string column
        column: list = []
        for line in lines:
            column.append(line)
            if len(column) >= plan.batch_size:
                yield _batch(plan, [column])
                column = []
        if column:
            yield _batch(plan, [column])
        return
    columns: list[list] = [[] for _ in range(width)]
    rows = 0
    for number, line in enumerate(lines, 1):
        row = _row(plan, number, line)
        if row is None:
            continue
        for values, value in zip(columns, row, strict=True):
            values.append(value)
        rows += 1
        if rows >= plan.batch_size:
            yield _batch(plan, columns)
            columns, rows = [[] for _ in range(width)], 0
    if rows:
        yield _batch(plan, columns)


def map_arrow_partition(plan: _Plan, batches: Iterator) -> Iterator:
    """``mapInArrow`` body of :func:`map_dataframe`: input batches in, output batches out."""
    rows = _first_rows(iter(batches))
    if rows is None:  # an empty partition starts no container
        return
    job = plan.job
    with job.task_directory() as task, job.run_on_partition(
            task, _values(rows), plan.input_name, None, plan.output_name) as output:
        yield from _output_batches(plan, lines_of(output, plan.output_name, _task_ids()[1]))


# -- the client side -----------------------------------------------------------------

def _input_column(df, column: str | None) -> int:
    """The index of the column written to the container's input, checked."""
    fields = df.schema.fields
    names = [field.name for field in fields]
    if column is None:
        if len(names) != 1:
            raise InvalidArgument(f"the DataFrame has {len(names)} columns {names}: name the "
                                  "one to write to the container's input with column=")
        column = names[0]
    if not isinstance(column, str):
        raise InvalidArgumentType(f"column must be a column name (str), got {column!r}; "
                                  "select an expression with an alias first")
    if column not in names:
        raise InvalidArgument(f"no column {column!r} in the DataFrame; its columns are {names}")
    index = names.index(column)
    data_type = fields[index].dataType
    if data_type.typeName() in ("array", "map", "struct", "variant"):
        raise InvalidArgumentType(f"column {column!r} has type {data_type.simpleString()}: lofn "
                                  "writes one value per line; convert it to text first "
                                  "(to_json, concat_ws)")
    return index


def _output_schema(schema, output_column, parse, separator):
    """The result's Spark schema, and the converter per field (``None``: lines or ``parse``)."""
    if parse is not None and not callable(parse):
        raise InvalidArgumentType(f"parse must be a function, got {parse!r}")
    if parse is not None and schema is None:
        raise InvalidArgument("parse needs a schema: the types of the values it returns")
    if not isinstance(separator, str) or not separator:
        raise InvalidArgument(f"separator must be a non-empty string, got {separator!r}")
    out_schema, converters = _schema(schema, output_column)
    if converters is not None and parse is None and None in converters:
        unsupported = [f"{field.name} {field.dataType.simpleString()}"
                       for field, converter in zip(out_schema.fields, converters, strict=True)
                       if converter is None]
        raise InvalidArgumentType(f"the default parser cannot convert {unsupported}; "
                                  "give parse= to build those values")
    return out_schema, None if parse is not None else converters


def _schema(schema, output_column):
    """The Spark schema of the result, and the converter per field (``None``: lines)."""
    from pyspark.sql.types import StringType, StructField, StructType, _parse_datatype_string

    if schema is None:
        name = OUTPUT_COLUMN if output_column is None else output_column
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"output_column must be a non-empty string, got {name!r}")
        return StructType([StructField(name, StringType())]), None
    if output_column is not None:
        raise InvalidArgument("give either schema or output_column, not both "
                              "(with a schema, the schema names the columns)")
    if isinstance(schema, str):
        try:
            parsed = _parse_datatype_string(schema)
        except Exception as exc:
            raise InvalidArgument(f"schema {schema!r} is not a valid DDL schema: {exc}") from exc
        schema = parsed
    if not isinstance(schema, StructType) or not schema.fields:
        raise InvalidArgumentType(f"schema must be a non-empty StructType or a DDL string "
                                  f"such as 'word STRING, count INT', got {schema!r}")
    return schema, tuple(_converter_name(field.dataType) for field in schema.fields)


def map_dataframe(df, image_name: str, command: str, *, column: str | None = None,
                  pipe: DockerPipe | None = None, output_column: str | None = None,
                  schema=None, parse: Callable | None = None, separator: str = "\t",
                  container_input_name: str = "input.txt",
                  container_output_name: str = "output.txt",
                  docker_options: list | None = None, timeout: float | None = None,
                  batch_size: int = BATCH_SIZE):
    """Run a container over each partition of a DataFrame; its output lines are the result.

    For each non-empty partition, on the executor that holds it, the values
    of ``column`` are streamed to ``container_input_name`` in a fresh
    temporary directory (one value per line; a null is an empty line), the
    container runs ``command`` with ``sh -c``, and ``container_output_name``
    is read back lazily, ``batch_size`` rows at a time. Empty partitions
    start no container. Nothing runs until an action (``collect``, ``write``,
    ``count``...) asks for the result, as with any DataFrame transformation.

    Args:
        df: a DataFrame, classic or Spark Connect.
        image_name: Docker image name.
        command: command run by ``sh -c`` in the container, exactly as written.

    Keyword Args:
        column: the column written to the input file; may be omitted when
            ``df`` has one column. Strings are written as they are, binary
            values as raw bytes, anything else (numbers, dates) as ``str()``
            gives it. Arrays, maps and structs are refused: turn them into
            text first (``to_json``, ``concat_ws``).
        pipe: the :class:`~lofn.api.DockerPipe` whose settings apply
            (volumes, timeout, temp directory, image pull, reuse, result
            cache). Default: :func:`pipe_for` the DataFrame's session.
        output_column: the name of the result's one string column, one row
            per output line (default ``'line'``). Not with ``schema``.
        schema: parse each output line into a row of this schema instead: a
            ``StructType`` or a DDL string such as ``'word STRING, count INT'``.
            By default a line is split at ``separator`` into exactly as many
            fields as the schema has, and each field is converted to its type
            (string, byte, short, int, long, float, double, boolean, decimal,
            date as ``YYYY-MM-DD``, binary as UTF-8); an empty field of a
            non-string type is null.
        parse: a function from an output line to a row of ``schema``: a
            tuple or list in the schema's order, a dict by field name, or
            ``None`` to drop the line. Needed for the types the default
            parser does not handle (timestamps, arrays...). It runs in the
            Python workers, so it must be picklable.
        separator: the field separator of the default parser (default tab).
        container_input_name: input file in the shared mountpoint (default ``'input.txt'``).
        container_output_name: output file in the shared mountpoint (default ``'output.txt'``).
        docker_options: additional ``docker run`` flags, as a list.
        timeout: seconds each container may run (default: the pipe's).
        batch_size: rows per Arrow batch handed back to Spark (default 10,000).

    Returns:
        A new DataFrame (lazy). Its schema is ``output_column STRING`` or ``schema``.

    Raises:
        TypeError: ``df`` is not a DataFrame, or a bad type for an argument.
        ValueError: an unknown column, bad names, options or volumes.

    A failure inside a task (a container exiting non-zero, a timeout, a
    line that does not fit ``schema``) reaches the client as Spark's own
    exception when an action runs; :func:`lofn.errors.from_spark_error`
    recovers the lofn exception from it, in classic and Connect sessions.
    """
    call = CallOptions(image_name=image_name, command=command,
                       container_input_name=container_input_name,
                       container_output_name=container_output_name,
                       docker_options=docker_options,
                       timeout=Default.PIPE_TIMEOUT if timeout is None else timeout)
    if not (hasattr(df, "mapInArrow") and hasattr(df, "schema")):
        raise InvalidArgumentType(f"df must be a Spark DataFrame, got {type(df).__name__}")
    session = df.sparkSession
    connect = _is_connect(df)
    if pipe is None:
        pipe = pipe_for(session)
    elif not isinstance(pipe, DockerPipe):
        raise InvalidArgumentType(f"pipe must be a lofn DockerPipe, got {type(pipe).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size must be a positive whole number, got {batch_size!r}")
    index = _input_column(df, column)
    out_schema, converters = _output_schema(schema, output_column, parse, separator)
    from pyspark.sql.pandas.types import to_arrow_schema

    local_checks = pipe.master.startswith("local") and (
        not connect or _remote_is_loopback(session))
    job = pipe.job(call, app=_app_id(session),
                   spark_context=None if connect else session.sparkContext,
                   local_checks=local_checks, method="map_dataframe")
    plan = _Plan(job=job, input_name=call.container_input_name,
                 output_name=call.container_output_name,
                 arrow_schema=to_arrow_schema(out_schema),
                 field_names=tuple(out_schema.names),
                 converters=converters,
                 parse=parse, separator=separator, batch_size=batch_size)
    # Only the chosen column travels to the Python workers.
    return df.select(df[index]).mapInArrow(partial(map_arrow_partition, plan), out_schema)

