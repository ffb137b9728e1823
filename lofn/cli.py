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

Exit status: 0 on success, 1 when the job fails (a container fails, Spark
fails), 2 for a usage error (bad option, missing input file, unsupported
docker option), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlparse

__all__ = ["main"]

PROG = "lofn"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
JOB_GROUP = "lofn-cli"
#: Seconds between two polls of Spark's status tracker.
POLL_INTERVAL = 0.2
#: Seconds between two progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 2.0

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
        --command 'grep -F -f /patterns/list.txt /shared/input.txt > /shared/output.txt; test $? -le 1'

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


class UsageError(Exception):
    """A command-line value lofn cannot use (exit status 2)."""


# ---------------------------------------------------------------------------
# argument parsing

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _fan_in(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a number >= 2, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
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
    run.set_defaults(handler=run_map)
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
    container.add_argument("--max-fan-in", type=_fan_in, metavar="N",
                           help="the most outputs one --reduce container merges at once "
                                "(default 32; 2 gives a pairwise tree)")
    container.add_argument("--volume", "-v", action="append", default=[],
                           metavar="HOST:BIND[:ro|rw]",
                           help="mount host directory or file HOST at BIND in every container, "
                                "read-only unless ':rw' (repeatable)")
    container.add_argument("--docker-option", action="append", default=[], metavar="FLAG",
                           help="a 'docker run' flag, e.g. --docker-option=--memory=1g or "
                                "--docker-option='-e THREADS=4' (repeatable; see lofn's "
                                "docker_options documentation for the supported flags)")
    container.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                           help="kill a container that runs longer than this and fail the job")
    container.add_argument("--image-pull", choices=("never", "missing", "always"),
                           default="never",
                           help="pull the image: never (default: it must be on every host), "
                                "when missing, or always")
    container.add_argument("--reuse-containers", action="store_true",
                           help="run the partitions with 'docker exec' in one long-lived "
                                "container per Spark worker instead of a container each")
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
    return parser


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
        return args.handler(args)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE


# ---------------------------------------------------------------------------
# checks made before Spark starts

def _is_local(path: str) -> bool:
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or len(scheme) == 1  # C:\ on Windows


def _local_path(path: str) -> str:
    return urlparse(path).path if path.startswith("file:") else path


def _check_input(path: str) -> int | None:
    """Check a local INPUT exists; return its size if it is a single file."""
    if not _is_local(path):
        return None
    local = _local_path(path)
    if glob.has_magic(local):
        if not glob.glob(local):
            raise UsageError(f"input {path!r} matches no file")
        return None
    if not os.path.exists(local):
        raise UsageError(f"input file {path!r} does not exist")
    if not os.access(local, os.R_OK):
        raise UsageError(f"input file {path!r} is not readable")
    return os.path.getsize(local) if os.path.isfile(local) else None


def _check_output(path: str) -> None:
    if path == "-":
        return
    if os.path.isdir(path):
        raise UsageError(f"output {path!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"output directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent!r} is not writable")


def parse_volume(text: str, on_hdfs: bool = False) -> tuple[str, dict]:
    """``HOST:BIND[:ro|rw]`` -> (host path, ``{'bind': BIND, 'mode': MODE}``).

    A relative HOST is made absolute (except on YARN, where HOST is an HDFS path).
    """
    parts = text.split(":")
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        host, bind, mode = parts
    elif len(parts) == 2:
        (host, bind), mode = parts, "ro"
    else:
        raise UsageError(f"--volume {text!r} is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw")
    if not host or not bind:
        raise UsageError(f"--volume {text!r} is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw")
    if not on_hdfs and not host.startswith("/"):
        host = os.path.abspath(host)
    return host, {"bind": bind, "mode": mode}


def _volumes(values: list[str], master: str) -> dict:
    from lofn.docker_handler import validate_user_input
    from lofn.errors import LofnError

    on_hdfs = master.startswith("yarn")
    volumes: dict = {}
    for text in values:
        host, binding = parse_volume(text, on_hdfs)
        if host in volumes:
            raise UsageError(f"--volume {text!r}: {host!r} is already mounted by another "
                             "--volume")
        try:
            validate_user_input({host: binding}, "/shared/",
                                check_host_paths=master.startswith("local"))
        except LofnError as exc:
            raise UsageError(f"--volume {text!r}: {exc}") from None
        volumes[host] = binding
    return volumes


def _check_docker_options(options: list[str]) -> None:
    from lofn import _options
    from lofn.errors import LofnError

    try:
        _options.parse_docker_options(options)
    except LofnError as exc:
        raise UsageError(f"--docker-option: {exc}") from None


def _check_image(image: str, pull: str) -> None:
    """In local mode, check the image before the (slow) Spark start-up."""
    from lofn.docker_handler import ensure_image, get_client

    ensure_image(get_client(), image, pull)


# ---------------------------------------------------------------------------
# output

def _error(message: str, details: list[str] = ()) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    for line in details:
        print(line, file=sys.stderr)
    sys.stderr.flush()


def describe_error(exc: BaseException) -> tuple[str, list[str]]:
    """One readable line for ``exc``, and indented detail lines (a container's stderr tail)."""
    from lofn.errors import (
        DockerFailure,
        ImageUnavailable,
        LofnError,
        OutOfMemory,
        from_spark_error,
    )

    if not isinstance(exc, LofnError):
        exc = from_spark_error(exc) or exc
    if isinstance(exc, DockerFailure):
        hint = None
        if isinstance(exc, ImageUnavailable) and "image_pull is 'never'" in exc.message:
            exc.message = exc.message.split(": build or load")[0]  # its advice is for the API
            hint = "  hint: build or load the image on every host, or pass --image-pull missing"
        elif isinstance(exc, OutOfMemory):
            exc.message = exc.message.split("; raise it with")[0]
            hint = "  hint: raise the limit with --docker-option=--memory=SIZE"
        where = [f"partition {exc.partition}"] if exc.partition is not None else []
        if exc.image:
            where.append(f"image {exc.image}")
        line = exc.message + (f" ({', '.join(where)})" if where else "")
        details = []
        if exc.stderr and exc.stderr.strip():
            details.append("  container stderr (last lines):")
            details.extend("    " + text for text in exc.stderr.rstrip("\n").split("\n"))
        if hint:
            details.append(hint)
        return line, details
    if isinstance(exc, (LofnError, UsageError)):
        return str(exc).strip().split("\n")[0], []
    return _spark_message(exc), []


_PYTHON_ERROR = re.compile(r"^(\w[\w.]*(?:Error|Exception|Interrupt)\b.*)$", re.MULTILINE)


def _spark_message(exc: BaseException) -> str:
    """The one line that says what went wrong in a Spark (JVM or task) failure."""
    text = str(exc)
    java = getattr(exc, "java_exception", None)
    if "Traceback (most recent call last)" in text:
        # a Python task failed: its exception is the last line of the traceback
        section = text.split("Traceback (most recent call last)", 1)[1].split("\n\tat ", 1)[0]
        found = _PYTHON_ERROR.findall(section)
        if found:
            return found[-1].strip()
    if java is not None:
        try:
            message = str(java.toString())
        except Exception:  # noqa: BLE001 - the JVM may be gone
            message = text
        message = message.strip().split("\n")[0]
        if message.startswith("org.apache.spark.SparkException: Job aborted"):
            match = re.search(r"most recent failure: .*?\): (.*)", message)
            message = match.group(1) if match else message
        return message
    first = text.strip().split("\n")[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _write_output(path: str, lines: list[str]) -> None:
    """Write ``lines``; a file appears only complete (written aside, then renamed)."""
    if path == "-":
        sys.stdout.writelines(line + "\n" for line in lines)
        sys.stdout.flush()
        return
    directory, name = os.path.split(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory,
                                         prefix=f".{name}.", suffix=".partial", delete=False)
    try:
        with handle:
            handle.writelines(line + "\n" for line in lines)
        if os.path.exists(path):
            shutil.copymode(path, handle.name)
        else:
            os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------
# containers, counted from the Docker engine's events

class ContainerCounter:
    """Counts the containers lofn starts for one Spark application.

    Every container lofn starts carries the label ``lofn.app=<application
    id>``; this follows the driver host's Docker engine events for that label
    and counts ``start`` events (and, for ``--reuse-containers``, the
    ``exec_start`` of each partition run in a long-lived container). Only
    this host's engine is seen: on a cluster, containers on other hosts are
    not counted.
    """

    def __init__(self, app_id: str) -> None:
        import docker

        self.app_id = app_id
        self.started: set[str] = set()
        self.removed: set[str] = set()
        self.execs = 0
        self._lock = threading.Lock()
        self._client = docker.from_env()
        self._client.ping()
        self._stream = self._client.events(
            decode=True, since=int(time.time()) - 1,
            filters={"type": "container", "label": [f"lofn.app={app_id}"]})
        self._last_event = time.monotonic()
        self._closed = False
        self._thread = threading.Thread(target=self._follow, name="lofn-cli-events",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def connect(cls, app_id: str) -> ContainerCounter | None:
        try:
            return cls(app_id)
        except Exception:  # noqa: BLE001 - no engine here: containers are not counted
            return None

    def _follow(self) -> None:
        try:
            for event in self._stream:
                action = event.get("Action") or event.get("status") or ""
                container = event.get("id") or event.get("Actor", {}).get("ID", "")
                with self._lock:
                    self._last_event = time.monotonic()
                    if action == "start":
                        self.started.add(container)
                    elif action == "destroy":
                        self.removed.add(container)
                    elif action.startswith("exec_start"):
                        self.execs += 1
        except Exception:  # noqa: BLE001 - the stream was closed
            pass

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.started)

    def close(self, settle: float = 2.0) -> None:
        """Stop following, once the events of the finished job have arrived.

        Every container of a finished job has been removed (lofn always
        removes its containers), so wait until each one seen starting was seen
        removed, and events have been quiet for a moment; at most ``settle``
        seconds. Reused containers live until Spark stops, so are not awaited.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            with self._lock:
                done = self.execs or self.started <= self.removed
                quiet = time.monotonic() - self._last_event > 0.3
            if done and quiet:
                break
            time.sleep(0.05)
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001
            pass
        self._thread.join(1.0)
        self._client.close()


# ---------------------------------------------------------------------------
# progress

class Progress:
    """A background thread that shows the job's stages from Spark's status tracker.

    On a terminal, one line per stage is redrawn in place (``\\r``); otherwise
    a plain line is printed at most every ``PLAIN_INTERVAL`` seconds while a
    stage changes, and once when it ends.
    """

    def __init__(self, sc, stream, start: float, counter: ContainerCounter | None,
                 enabled: bool = True) -> None:
        self.sc = sc
        self.stream = stream
        self.start = start
        self.counter = counter
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.stages: dict[int, dict] = {}  # stage id -> latest numbers and label
        self._printed: dict[int, tuple] = {}
        self._finished: set[int] = set()
        self._last_plain = 0.0
        self._drawn = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lofn-cli-progress",
                                        daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._poll(final=True)
        except Exception:  # noqa: BLE001 - Spark may be gone after an interrupt
            pass
        if self._drawn:
            self._write("\n")

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - a poll racing the end of the job
                pass

    def _poll(self, final: bool = False) -> None:
        tracker = self.sc.statusTracker()
        for job in sorted(tracker.getJobIdsForGroup(JOB_GROUP)):
            info = tracker.getJobInfo(job)
            if info is None:
                continue
            stage_ids = sorted(info.stageIds)
            for index, stage_id in enumerate(stage_ids):
                stage = tracker.getStageInfo(stage_id)
                if stage is None or stage_id not in self.stages and not (
                        stage.numActiveTasks or stage.numCompletedTasks or stage.numFailedTasks):
                    continue  # not started (yet, or ever: a stage after a failure)
                if index == 0:
                    label, unit = "map", "partitions"
                else:
                    label, unit = f"reduce round {index}/{len(stage_ids) - 1}", "merges"
                self.stages[stage_id] = {
                    "label": label, "unit": unit, "tasks": stage.numTasks,
                    "done": stage.numCompletedTasks, "running": stage.numActiveTasks,
                    "failed": stage.numFailedTasks}
        if self.enabled:
            self._show(final)

    def _show(self, final: bool) -> None:
        now = time.monotonic()
        for stage_id in sorted(self.stages):
            if stage_id in self._finished:
                continue
            numbers = self.stages[stage_id]
            ended = numbers["done"] >= numbers["tasks"] or final
            state = (numbers["done"], numbers["running"], numbers["failed"])
            if self.tty:
                self._draw(numbers, now)
                if ended:
                    self._write("\n")
                    self._drawn = False
            elif ended or (state != self._printed.get(stage_id)
                           and now - self._last_plain >= PLAIN_INTERVAL):
                self._write(self._plain(numbers, now) + "\n")
                self._printed[stage_id] = state
                self._last_plain = now
            if ended:
                self._finished.add(stage_id)
            else:
                break  # stages run one after the other: show the first unfinished one

    def _plain(self, numbers: dict, now: float) -> str:
        text = (f"{PROG}: {numbers['label']}: {numbers['done']}/{numbers['tasks']} "
                f"{numbers['unit']} done, {numbers['running']} running, "
                f"{numbers['failed']} failed")
        if self.counter is not None:
            text += f"; {_plural(self.counter.count, 'container')} started"
        return text + f"; {_elapsed(now - self.start)}"

    def _draw(self, numbers: dict, now: float) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        tasks = max(numbers["tasks"], 1)
        bar_width = 16
        full = bar_width * numbers["done"] // tasks
        running = min(bar_width - full, -(-bar_width * numbers["running"] // tasks))
        bar = "#" * full + ">" * running + "." * (bar_width - full - running)
        text = (f"{numbers['label']} [{bar}] {numbers['done']}/{numbers['tasks']} done, "
                f"{numbers['running']} running, {numbers['failed']} failed")
        if self.counter is not None:
            text += f", {_plural(self.counter.count, 'container')}"
        text += f", {_elapsed(now - self.start)}"
        self._write("\r\x1b[K" + text[:max(width - 1, 10)])
        self._drawn = True

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def totals(self) -> dict:
        """Partitions of the map stage, reduce rounds and failed tasks, over what ran."""
        stages = [self.stages[s] for s in sorted(self.stages)]
        return {"rounds": sum(1 for s in stages if s["label"].startswith("reduce")),
                "failed": sum(s["failed"] for s in stages)}


# ---------------------------------------------------------------------------
# Spark

@contextmanager
def _jvm_output(log) -> Iterator[None]:
    """Send what the JVM (and Spark's Python workers) print to ``log``, not to our terminal.

    The JVM is started as a child process that inherits our stdout and
    stderr: point both at ``log`` while it starts, then restore ours.
    """
    if log is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _log_tail(log, lines: int = 15) -> list[str]:
    if log is None:
        return []
    size = os.fstat(log.fileno()).st_size
    data = os.pread(log.fileno(), 64 * 1024, max(size - 64 * 1024, 0))
    return ["  " + line for line in data.decode("utf-8", "replace").splitlines()[-lines:]]


def _spark_conf(args):
    from pyspark import SparkConf

    conf = (SparkConf().setMaster(args.master).setAppName(args.app_name)
            .set("spark.log.level", "WARN" if args.verbose else "ERROR")
            .set("spark.ui.showConsoleProgress", "false"))
    if args.partitions and args.input_size:
        # Split a single local file into exactly N byte ranges (Spark's minPartitions
        # alone may make N + 1); textFile keeps each range's lines in order.
        conf.set("spark.hadoop.mapreduce.input.fileinputformat.split.minsize",
                 str(max(1, -(-args.input_size // args.partitions))))
    for key, value in args.conf:
        conf.set(key, value)
    return conf


# ---------------------------------------------------------------------------
# lofn map

def run_map(args) -> int:
    """The ``map`` subcommand."""
    from lofn.errors import (
        DockerUnavailable,
        InvalidArgument,
        InvalidArgumentType,
        LofnError,
    )

    started = time.monotonic()
    if args.reduce is None and (args.max_fan_in is not None or args.reduce_image is not None):
        raise UsageError("--max-fan-in and --reduce-image need --reduce")
    for name in ("image", "command", "reduce", "reduce_image"):
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise UsageError(f"--{name.replace('_', '-')} must not be empty")
    args.input_size = _check_input(args.input)
    _check_output(args.output)
    volumes = _volumes(args.volume, args.master)
    _check_docker_options(args.docker_option)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark import SparkConf

    from lofn.api import DockerPipe

    conf = _spark_conf(args)
    try:
        pipe = DockerPipe(SparkConf(loadDefaults=False).setMaster(args.master),
                          volumes=volumes or None, timeout=args.timeout,
                          image_pull=args.image_pull, reuse_containers=args.reuse_containers)
    except (InvalidArgument, InvalidArgumentType) as exc:
        raise UsageError(str(exc).split("\n")[0]) from None
    except LofnError as exc:
        _error(*describe_error(exc))
        return EXIT_FAILED
    reduce_image = args.reduce_image or args.image
    if args.master.startswith("local"):
        try:
            for image in dict.fromkeys([args.image] + ([reduce_image] if args.reduce else [])):
                _check_image(image, args.image_pull)
        except DockerUnavailable as exc:
            _error(str(exc).split("\n")[0])
            return EXIT_FAILED
        except LofnError as exc:
            _error(*describe_error(exc))
            return EXIT_FAILED
    return _run_job(args, conf, pipe, reduce_image, started)


def _run_job(args, conf, pipe, reduce_image: str, started: float) -> int:
    from pyspark import SparkContext

    from lofn.errors import InvalidArgument

    log = None if args.verbose else tempfile.TemporaryFile(prefix="spark-output-")
    sc = None
    counter = None
    outcome = {"ok": False, "lines": None, "partitions": None, "empty": False}
    try:
        try:
            with _jvm_output(log):
                sc = SparkContext(conf=conf)
        except Exception as exc:  # noqa: BLE001 - Java missing, bad master, ...
            _error(f"could not start Spark: {_spark_message(exc)}", _log_tail(log))
            return EXIT_FAILED
        spark_ready = time.monotonic()
        interrupted = _cancel_on_interrupt(sc)
        sc.setJobGroup(JOB_GROUP, f"lofn map of {args.input}")
        counter = ContainerCounter.connect(sc.applicationId)
        options = {"docker_options": args.docker_option} if args.docker_option else {}
        progress = Progress(sc, sys.stderr, started, counter, enabled=not args.quiet)
        failure = None
        try:
            with progress:
                minimum = args.partitions or sc.defaultParallelism
                rdd = sc.textFile(args.input, minPartitions=minimum)
                outcome["partitions"] = rdd.getNumPartitions()  # lists the input files
                mapped = pipe.map(rdd, args.image, args.command, **options)
                if args.reduce is None:
                    outcome["lines"] = mapped.collect()
                else:
                    if args.max_fan_in is not None:
                        options["max_fan_in"] = args.max_fan_in
                    try:
                        outcome["lines"] = pipe.reduce(mapped, reduce_image, args.reduce,
                                                       **options)
                    except InvalidArgument as exc:
                        if not str(exc).startswith("Can not reduce() empty RDD"):
                            raise
                        outcome["lines"], outcome["empty"] = [], True
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - reported below, in one line
            failure = exc
        if failure is None:
            try:
                _write_output(args.output, outcome["lines"])
                outcome["ok"] = True
            except OSError as exc:
                failure = UsageError(f"cannot write {args.output!r}: {exc.strerror or exc}")
        if counter is not None:
            counter.close()
        _summary(args, outcome, progress, counter, started, spark_ready, interrupted.is_set())
        if interrupted.is_set():
            _error("interrupted: the job was cancelled; Spark stops and lofn removes its "
                   "containers")
            return EXIT_INTERRUPTED
        if failure is not None:
            _error(*describe_error(failure))
            return EXIT_FAILED
        return EXIT_OK
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if counter is not None:
            counter.close(settle=0)
        if sc is not None:
            sc.stop()
        if log is not None:
            log.close()


def _cancel_on_interrupt(sc) -> threading.Event:
    """On Ctrl-C, cancel the job from another thread and let it end as a failure.

    PySpark's own handler calls into the JVM from inside the signal handler,
    on the connection the main thread is blocked on, which breaks py4j. A
    second Ctrl-C exits at once: Spark's JVM then stops, and the containers
    are removed by the workers' watchdog.
    """
    interrupted = threading.Event()

    def cancel() -> None:
        try:
            sc.cancelJobGroup(JOB_GROUP)
        except Exception:  # noqa: BLE001 - Spark may be stopping already
            pass

    def handler(signum, frame) -> None:
        if interrupted.is_set():
            os.write(2, f"\n{PROG}: interrupted again: exiting now\n".encode())
            os._exit(EXIT_INTERRUPTED)
        interrupted.set()
        os.write(2, f"\n{PROG}: interrupted: cancelling the job (Ctrl-C again to exit "
                    "at once)\n".encode())
        threading.Thread(target=cancel, name="lofn-cli-cancel", daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
    return interrupted


def _summary(args, outcome: dict, progress: Progress, counter, started: float,
             spark_ready: float, interrupted: bool = False) -> None:
    totals = progress.totals()
    now = time.monotonic()
    head = "done" if outcome["ok"] else "interrupted" if interrupted else "failed"
    lines = [f"{PROG}: {head} in {_elapsed(now - started)} "
             f"(Spark start-up {_elapsed(spark_ready - started)})"]
    partitions = f"{outcome['partitions']} (map)" if outcome["partitions"] is not None \
        else "unknown (the input could not be read)"
    if args.reduce is not None:
        rounds = totals["rounds"]
        partitions += f", then {_plural(rounds, 'reduce round')}"
    lines.append(f"  partitions: {partitions}")
    if counter is None:
        containers = "not counted (no Docker engine answers on this host)"
    else:
        containers = f"{counter.count} started"
        if counter.execs:
            containers += f", running {counter.execs} partitions with docker exec"
        if not args.master.startswith("local"):
            containers += " on this host (other hosts' containers are not counted)"
    lines.append(f"  containers: {containers}")
    lines.append(f"  failures:   {_plural(totals['failed'], 'failed task')}")
    if outcome["ok"]:
        where = "stdout" if args.output == "-" else os.path.abspath(args.output)
        count = len(outcome["lines"])
        note = " - the map wrote no lines, so there was nothing to reduce" \
            if outcome["empty"] else ""
        lines.append(f"  output:     {where} ({_plural(count, 'line')}{note})")
    else:
        lines.append(f"  output:     {args.output} not written")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
