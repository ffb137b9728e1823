"""The ``lofn`` argument parser.

The flags of the container options (``--timeout``, ``--volume``, ...) are
generated from their declarations in :mod:`lofn.options`
(:func:`~lofn.options.command_line_options`): the flag, help, metavar and
the check a value must pass are written there once. The flags that are not
options of :class:`~lofn.api.DockerPipe` (the image, the commands, Spark's
settings, the output) are written here.

A single value (``--timeout 60``) is parsed and checked as argparse reads
it; a repeated flag (``--volume``, ``--docker-option``) is collected as text
and checked by :mod:`lofn.cli._checks`, so its error can name the text.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import Field
from typing import Any

from lofn.cli._render import PROG
from lofn.errors import LofnError
from lofn.options import command_line_options

# The commands of example/word_count.py, shown (shell-quoted) in the help.
_WORD_COUNT_MAP = (
    "awk '{ $0 = tolower($0); gsub(/[^a-z0-9]+/, \" \");"
    " for (i = 1; i <= NF; i++) n[$i]++ }"
    " END { for (w in n) print w \"\\t\" n[w] }'"
    " /shared/input.txt > /shared/output.txt"
)
_WORD_COUNT_REDUCE = (
    "tab=$(printf '\\t');"
    " awk -F \"$tab\" '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'"
    " /shared/input.txt | sort -t \"$tab\" -k2,2nr -k1,1 > /shared/output.txt"
)
_GREP = "'grep -F -f /patterns/list.txt /shared/input.txt > /shared/output.txt; test $? -le 1'"


def _double_quoted(text: str) -> str:
    """``text`` as one POSIX shell word in double quotes (for the help's examples)."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


EXAMPLES = f"""\
examples:
  Count the words of book.txt in 8 partitions: busybox awk counts each
  partition, and the partial counts are merged by a second command, in
  containers too (the commands of example/word_count.py):

    $ lofn map --image lofn/busybox --partitions 8 book.txt -o counts.tsv \\
        --command {_double_quoted(_WORD_COUNT_MAP)} \\
        --reduce {_double_quoted(_WORD_COUNT_REDUCE)}

  Keep the lines of app.log that contain one of the patterns in
  ./patterns/list.txt, mounted read-only at /patterns in every container,
  with no network and at most 256 MB of memory per container; the output
  keeps the input's order:

    $ lofn map --image lofn/busybox --partitions 4 app.log -o matches.log \\
        --volume "$PWD/patterns:/patterns:ro" \\
        --docker-option=--network=none --docker-option=--memory=256m \\
        --command {_GREP}

  Upper-case a file on a standalone Spark cluster, killing any container
  that runs longer than 60 seconds (the file and the image must be on every
  worker host):

    $ lofn map --master spark://head:7077 --image lofn/busybox --timeout 60 \\
        /data/in.txt -o /data/out.txt \\
        --command 'tr a-z A-Z < /shared/input.txt > /shared/output.txt'

Each container finds its partition in /shared/input.txt and must write
/shared/output.txt; the command runs with 'sh -c' in the image, exactly as
written. Give flags that take a value starting with '-' in the '=' form:
--docker-option=--memory=1g, --docker-option='-e THREADS=4'.
"""

MAP_DESCRIPTION = """\
Run CMD in a Docker container for each partition of the text file INPUT
and write the output lines to OUTPUT, in partition order; with --reduce,
merge the partitions' outputs with a second command and write the result.
Spark runs locally (local[*]) unless --master names a cluster.
"""

REPORT_DESCRIPTION = """\
Read the trace lofn wrote with tracing on (a directory of *.jsonl files, or
one .jsonl file) and write one self-contained HTML page: a timeline of the
containers per host and worker, a table per stage, the slowest partitions
and every failed attempt with its error and stderr tail.

example:
  $ lofn report /tmp/trace -o report.html
"""

# ---------------------------------------------------------------------------
# the flags declared in lofn.options

def declared_type(declared: Field) -> Callable[[str], Any]:
    """argparse's ``type`` for a single-valued option: the field's ``parse``, then its check.

    A check's :class:`~lofn.errors.LofnError` becomes argparse's usage error
    (``lofn map: error: argument --timeout: timeout must be ...``).
    """
    def convert(text: str) -> Any:
        try:
            return declared.metadata["check"](declared.name, _read(declared, text))
        except LofnError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _read(declared: Field, text: str) -> Any:
    """``text`` parsed by the field's ``parse``; what it cannot read goes to the check as text."""
    parse = declared.metadata["parse"]
    if parse is None:
        return text
    try:
        return parse(text)
    except LofnError:
        raise
    except (TypeError, ValueError):
        declared.metadata["check"](declared.name, text)  # rejects it in the option's words
        raise argparse.ArgumentTypeError(f"{declared.name}: cannot read {text!r}") from None


def _add_declared(group: argparse._ArgumentGroup) -> None:
    """Add a flag for each option declared with one in :mod:`lofn.options`."""
    for _, declared in command_line_options():
        meta = declared.metadata
        # A flag not given leaves the option out (None, [] or False): the declared default applies.
        settings: dict[str, Any] = {"dest": declared.name, "help": meta["help"]}
        if meta["action"] == "store_true":
            settings.update(action="store_true")
        elif meta["action"] == "append":  # checked as a whole after parsing
            settings.update(action="append", default=[], metavar=meta["metavar"])
        elif meta["choices"]:
            settings.update(choices=meta["choices"])
        else:
            settings.update(type=declared_type(declared), metavar=meta["metavar"])
        group.add_argument(*meta["flags"], **settings)


# ---------------------------------------------------------------------------
# the other flags

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _spark_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    """The ``lofn`` argument parser, with its subcommands."""
    from lofn import __version__

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=formatter, epilog=EXAMPLES,
        description="Run a command-line tool in Docker containers over the partitions of a "
                    "file, with Apache Spark.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    run = commands.add_parser(
        "map", formatter_class=formatter, description=MAP_DESCRIPTION, epilog=EXAMPLES,
        help="run a command in a container per partition of a text file (and reduce)")
    _add_map_arguments(run)
    report = commands.add_parser(
        "report", formatter_class=formatter, description=REPORT_DESCRIPTION,
        help="make an HTML report (timeline, stages, failures) of a lofn trace")
    _add_report_arguments(report)
    return parser


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (``'map'``) of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _add_map_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("input", metavar="INPUT",
                     help="text file (or directory, or glob) to split into partitions; a "
                          "local path, or a URI Spark can read (hdfs://...)")
    run.add_argument("-o", "--output", metavar="OUTPUT", required=True,
                     help="local file to write the output lines to ('-' for stdout); "
                          "written only when the job succeeds")
    container = run.add_argument_group("containers")
    container.add_argument("--image", required=True, metavar="IMAGE",
                           help="Docker image to run the command in")
    container.add_argument("--command", required=True, metavar="CMD",
                           help="command run by 'sh -c' in the image for each partition; "
                                "reads /shared/input.txt, writes /shared/output.txt")
    container.add_argument("--reduce", metavar="CMD",
                           help="merge the map's outputs with this command: it reads the "
                                "concatenated outputs of several partitions in "
                                "/shared/input.txt and writes /shared/output.txt, in rounds "
                                "until one output is left")
    container.add_argument("--reduce-image", metavar="IMAGE",
                           help="image for --reduce (default: --image)")
    _add_declared(container)
    spark = run.add_argument_group("Spark")
    spark.add_argument("--partitions", "-p", type=_positive_int, metavar="N",
                       help="split INPUT into N partitions, one container each (default: "
                            "Spark's default parallelism, e.g. the number of cores)")
    spark.add_argument("--master", default="local[*]", metavar="URL",
                       help="Spark master: local[N], spark://HOST:PORT or yarn "
                            "(default %(default)s)")
    spark.add_argument("--app-name", default="lofn map", metavar="NAME",
                       help="Spark application name (default %(default)r)")
    spark.add_argument("--conf", action="append", default=[], type=_spark_setting,
                       metavar="KEY=VALUE",
                       help="a Spark setting, e.g. --conf spark.executor.memory=4g "
                            "(repeatable)")
    output = run.add_argument_group("output")
    output.add_argument("--quiet", "-q", action="store_true",
                        help="no progress line (the summary and errors are still printed)")
    output.add_argument("--verbose", action="store_true",
                        help="show Spark's own log (WARN and above) instead of hiding it")


def _add_report_arguments(report: argparse.ArgumentParser) -> None:
    report.add_argument("trace", metavar="TRACE",
                        help="trace directory (its *.jsonl files) or one .jsonl file; "
                             "hdfs:///path for one on HDFS")
    report.add_argument("-o", "--output", metavar="OUTPUT", required=True,
                        help="HTML file to write ('-' for stdout); replaced whole, and only "
                             "when the trace could be read")
    report.add_argument("--title", metavar="TEXT",
                        help="the page's title (default: 'lofn report:' and the app ids)")
    report.add_argument("--hdfs-url", metavar="URL",
                        help="WebHDFS address (http://NAMENODE:9870) for a TRACE on HDFS "
                             "(hdfs:///path); default: from HADOOP_CONF_DIR")
