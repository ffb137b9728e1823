"""``lofn map``: the Spark application's life, from its start to the summary.

pyspark and :mod:`lofn.api` are imported here, when a job runs, so that
``lofn --help`` and the usage errors work without them.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from lofn.cli._checks import check_image, check_map_arguments, declared_options
from lofn.cli._progress import JOB_GROUP, ContainerCounter, Progress
from lofn.cli._render import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    UsageError,
    describe_error,
    elapsed,
    error,
    plural,
    spark_message,
)
from lofn.errors import EmptyInput, InvalidArgument, InvalidArgumentType, LofnError

if TYPE_CHECKING:
    from pyspark import SparkConf, SparkContext

    from lofn.api import DockerPipe


@dataclass
class Outcome:
    """What a job produced, for the output file and the summary."""

    ok: bool = False
    lines: list[str] | None = None
    partitions: int | None = None
    #: every partition was empty, so there was nothing to reduce
    empty: bool = False


def run_map(args: argparse.Namespace) -> int:
    """The ``map`` subcommand: check everything, start Spark, run, write, summarise."""
    started = time.monotonic()
    check_map_arguments(args)
    pipe_options, call_options = declared_options(args)
    if not _have_pyspark():
        error("'lofn map' needs PySpark, which this Python cannot import: install lofn with "
              "its 'spark' extra (pip install \".[spark]\" in lofn's checkout) or PySpark")
        return EXIT_FAILED
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = _spark_conf(args)
    try:
        pipe = _pipe(args.master, pipe_options)
        if args.master.startswith("local"):
            images = [args.image] + ([args.reduce_image or args.image] if args.reduce else [])
            for image in dict.fromkeys(images):
                check_image(image, pipe.options.image_pull)
    except LofnError as exc:
        error(*describe_error(exc))
        return EXIT_FAILED
    return _run_job(args, conf, pipe, call_options, started)


def _have_pyspark() -> bool:
    try:
        importlib.import_module("pyspark")
    except ImportError:
        return False
    return True


def _pipe(master: str, options: dict[str, Any]) -> DockerPipe:
    """The pipe, its options checked; a value it refuses is a usage error."""
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    try:
        return DockerPipe(SparkConf(loadDefaults=False).setMaster(master), **options)
    except (InvalidArgument, InvalidArgumentType) as exc:
        raise UsageError(str(exc).split("\n")[0]) from None


def _spark_conf(args: argparse.Namespace) -> SparkConf:
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


def _run_job(args: argparse.Namespace, conf: SparkConf, pipe: DockerPipe,
             call_options: dict[str, Any], started: float) -> int:
    """Start Spark, run the job, write the output and the summary; stop Spark."""
    with ExitStack() as cleanup:  # on the way out: the counter, Spark, Spark's log
        try:
            return _start_and_run(args, conf, pipe, call_options, started, cleanup)
        except KeyboardInterrupt:
            error("interrupted")
            return EXIT_INTERRUPTED


def _start_and_run(args: argparse.Namespace, conf: SparkConf, pipe: DockerPipe,
                   call_options: dict[str, Any], started: float, cleanup: ExitStack) -> int:
    from pyspark import SparkContext

    log = None if args.verbose else cleanup.enter_context(
        tempfile.TemporaryFile(prefix="spark-output-"))  # noqa: SIM115 - closed by cleanup
    try:
        with _jvm_output(log):
            sc = SparkContext(conf=conf)
    except Exception as exc:  # noqa: BLE001 - Java missing, bad master, ...
        error(f"could not start Spark: {spark_message(exc)}", _log_tail(log))
        return EXIT_FAILED
    cleanup.callback(sc.stop)
    spark_ready = time.monotonic()
    interrupted = _cancel_on_interrupt(sc)
    sc.setJobGroup(JOB_GROUP, f"lofn map of {args.input}")
    counter = ContainerCounter.connect(sc.applicationId)
    if counter is not None:
        cleanup.callback(counter.close, settle=0)
    progress = Progress(sc, sys.stderr, started, counter, enabled=not args.quiet)
    outcome = Outcome()
    failure = _compute(args, sc, pipe, call_options, progress, outcome)
    if failure is None:
        failure = _write(args.output, outcome)
    if counter is not None:
        counter.close()  # once the job's last events have arrived
    _summary(args, outcome, progress.totals(), counter, started, spark_ready,
             interrupted.is_set())
    return _exit_status(interrupted.is_set(), failure)


def _compute(args: argparse.Namespace, sc: SparkContext, pipe: DockerPipe,
             call_options: dict[str, Any], progress: Progress,
             outcome: Outcome) -> Exception | None:
    """Run the map (and the reduce) while ``progress`` shows it; return the failure, if any."""
    try:
        with progress:
            minimum = args.partitions or sc.defaultParallelism
            rdd = sc.textFile(args.input, minPartitions=minimum)
            outcome.partitions = rdd.getNumPartitions()  # lists the input files
            mapped = pipe.map(rdd, args.image, args.command,
                              **_accepted(pipe.map, call_options))
            if args.reduce is None:
                outcome.lines = mapped.collect()
                return None
            try:
                outcome.lines = pipe.reduce(mapped, args.reduce_image or args.image,
                                            args.reduce, **_accepted(pipe.reduce, call_options))
            except EmptyInput:
                outcome.lines, outcome.empty = [], True
    except Exception as exc:  # noqa: BLE001 - reported after the summary, in one line
        return exc
    return None


def _accepted(method: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``method`` takes (``max_fan_in`` is for ``reduce`` only)."""
    parameters = inspect.signature(method).parameters
    return {name: value for name, value in options.items() if name in parameters}


def _write(path: str, outcome: Outcome) -> UsageError | None:
    try:
        _write_output(path, outcome.lines or [])
    except OSError as exc:
        return UsageError(f"cannot write {path!r}: {exc.strerror or exc}")
    outcome.ok = True
    return None


def _exit_status(interrupted: bool, failure: BaseException | None) -> int:
    if interrupted:
        error("interrupted: the job was cancelled; Spark stops and lofn removes its containers")
        return EXIT_INTERRUPTED
    if failure is not None:
        error(*describe_error(failure))
        return EXIT_FAILED
    return EXIT_OK


@contextmanager
def _jvm_output(log: IO[bytes] | None) -> Iterator[None]:
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


def _log_tail(log: IO[bytes] | None, lines: int = 15) -> list[str]:
    if log is None:
        return []
    size = os.fstat(log.fileno()).st_size
    data = os.pread(log.fileno(), 64 * 1024, max(size - 64 * 1024, 0))
    return ["  " + line for line in data.decode("utf-8", "replace").splitlines()[-lines:]]


def _cancel_on_interrupt(sc: SparkContext) -> threading.Event:
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

    def handler(signum: int, frame: Any) -> None:
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


# ---------------------------------------------------------------------------
# the end: output file and summary

def _write_output(path: str, lines: list[str]) -> None:
    """Write ``lines``; a file appears only complete (written aside, then renamed)."""
    if path == "-":
        sys.stdout.writelines(line + "\n" for line in lines)
        sys.stdout.flush()
        return
    directory, name = os.path.split(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, removed on error
        "w", encoding="utf-8", dir=directory, prefix=f".{name}.", suffix=".partial",
        delete=False)
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


def _summary(args: argparse.Namespace, outcome: Outcome, totals: dict,
             counter: ContainerCounter | None, started: float, spark_ready: float,
             interrupted: bool = False) -> None:
    now = time.monotonic()
    head = "done" if outcome.ok else "interrupted" if interrupted else "failed"
    lines = [f"{PROG}: {head} in {elapsed(now - started)} "
             f"(Spark start-up {elapsed(spark_ready - started)})"]
    partitions = f"{outcome.partitions} (map)" if outcome.partitions is not None \
        else "unknown (the input could not be read)"
    if args.reduce is not None:
        partitions += f", then {plural(totals['rounds'], 'reduce round')}"
    lines.append(f"  partitions: {partitions}")
    lines.append(f"  containers: {_containers(counter, args.master)}")
    lines.append(f"  failures:   {plural(totals['failed'], 'failed task')}")
    lines.append(f"  output:     {_output(args.output, outcome)}")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def _containers(counter: ContainerCounter | None, master: str) -> str:
    if counter is None:
        return "not counted (no Docker engine answers on this host)"
    text = f"{counter.count} started"
    if counter.warm:
        text += f" ({len(counter.warm)} kept warm for reuse)"
    if not master.startswith("local"):
        text += " on this host (other hosts' containers are not counted)"
    return text


def _output(path: str, outcome: Outcome) -> str:
    if not outcome.ok:
        return f"{path} not written"
    where = "stdout" if path == "-" else os.path.abspath(path)
    note = " - the map wrote no lines, so there was nothing to reduce" if outcome.empty else ""
    return f"{where} ({plural(len(outcome.lines or []), 'line')}{note})"
