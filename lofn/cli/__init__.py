"""The ``lofn`` command: run a tool in a container per partition of a text file.

For people who do not write PySpark::

    lofn map --image IMAGE --command CMD [--reduce CMD] INPUT -o OUTPUT

starts Spark (``local[*]`` unless ``--master`` says otherwise), reads
``INPUT`` with ``sc.textFile``, runs ``CMD`` in one container per partition
with :meth:`lofn.api.DockerPipe.map`, optionally merges the outputs with
:meth:`lofn.api.DockerPipe.reduce`, and writes the lines to ``OUTPUT``.
While it runs, a progress line on stderr shows partitions done, running and
failed; at the end a summary gives the time, partitions, containers,
failures and output path.

``lofn report TRACE -o report.html`` turns the trace of a run (see
:mod:`lofn.report`) into one HTML page; it needs neither Spark nor Docker.

Exit status: 0 on success, 1 when the job fails (a container fails, Spark
fails) or the report cannot be written, 2 for a usage error (bad option,
missing input file, unsupported docker option, a trace that cannot be
read), 130 when interrupted.

The modules, one job each:

- :mod:`lofn.cli._parser`: the flags, those of the container options
  generated from :mod:`lofn.options`;
- :mod:`lofn.cli._checks`: what is checked before Spark starts;
- :mod:`lofn.cli._render`: errors in one line, exit statuses;
- :mod:`lofn.cli._progress`: the container counter and the progress line;
- :mod:`lofn.cli._run`: the Spark application, from start to summary
  (the only one that imports pyspark, when a job runs).
"""

from __future__ import annotations

import argparse
import sys

from lofn.cli._checks import check_output
from lofn.cli._parser import build_parser
from lofn.cli._progress import ContainerCounter, Progress
from lofn.cli._render import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UsageError,
    describe_error,
    error,
    plural,
)
from lofn.cli._run import run_map

__all__ = ["main", "build_parser", "run_map", "run_report", "describe_error", "UsageError",
           "ContainerCounter", "Progress",
           "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``lofn`` command line; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.subcommand is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required (e.g. 'lofn map'); see 'lofn --help'",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.subcommand == "report":
            return run_report(args)
        return run_map(args)
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` subcommand: read the trace, write the page, say where it is."""
    from lofn.errors import InvalidArgument
    from lofn.hdfs_handler import resolve
    from lofn.report import TraceError, load_trace, render_report, write_report

    check_output(args.output)
    try:
        hdfs = resolve(args.hdfs_url) if args.hdfs_url else None
        records = load_trace(args.trace, hdfs)
    except InvalidArgument as exc:
        raise UsageError(f"--hdfs-url: {exc}") from None
    except TraceError as exc:
        raise UsageError(f"cannot read the trace: {exc}") from None
    try:
        if args.output == "-":
            sys.stdout.write(render_report(records, args.title))
            sys.stdout.flush()
            return EXIT_OK
        write_report(records, args.output, args.title)
    except OSError as exc:
        error(f"cannot write {args.output!r}: {exc.strerror or exc}")
        return EXIT_FAILED
    print(f"{PROG}: report of {plural(len(records), 'trace record')} written to "
          f"{args.output}", file=sys.stderr)
    return EXIT_OK
