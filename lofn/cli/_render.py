"""How the ``lofn`` command speaks: its name, exit statuses, errors in one line.

Every line lofn writes to stderr starts with ``lofn: `` or two spaces, so
its own output stands apart from anything else on the terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from lofn.errors import (
    DockerFailure,
    ImageUnavailable,
    LofnError,
    OutOfMemory,
    from_spark_error,
)
from lofn.report import elapsed, plural  # noqa: F401 - the command line's wording too

PROG = "lofn"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The command line's advice for a failure whose ``hint`` (the API's advice) is set.
CLI_HINTS: dict[type[DockerFailure], str] = {
    ImageUnavailable: "build or load the image on every host, or pass --image-pull missing",
    OutOfMemory: "raise the limit with --docker-option=--memory=SIZE",
}

_PYTHON_ERROR = re.compile(r"^(\w[\w.]*(?:Error|Exception|Interrupt)\b.*)$", re.MULTILINE)


class UsageError(Exception):
    """A command-line value lofn cannot use (exit status 2)."""


def error(message: str, details: Sequence[str] = ()) -> None:
    """Print ``lofn: error: MESSAGE`` and the (indented) detail lines to stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    for line in details:
        print(line, file=sys.stderr)
    sys.stderr.flush()


def describe_error(exc: BaseException) -> tuple[str, list[str]]:
    """One readable line for ``exc``, and indented detail lines (a container's stderr tail).

    A Spark exception that carries a task's lofn error is described as that
    error. Nothing of ``exc`` is changed.
    """
    if not isinstance(exc, LofnError):
        exc = from_spark_error(exc) or exc
    if isinstance(exc, DockerFailure):
        return _describe_failure(exc)
    if isinstance(exc, (LofnError, UsageError)):
        return str(exc).strip().split("\n")[0], []
    return spark_message(exc), []


def _describe_failure(exc: DockerFailure) -> tuple[str, list[str]]:
    where = [f"partition {exc.partition}"] if exc.partition is not None else []
    if exc.image:
        where.append(f"image {exc.image}")
    line = exc.message + (f" ({', '.join(where)})" if where else "")
    details = []
    if exc.stderr and exc.stderr.strip():
        details.append("  container stderr (last lines):")
        details.extend("    " + text for text in exc.stderr.rstrip("\n").split("\n"))
    hint = cli_hint(exc)
    if hint:
        details.append(f"  hint: {hint}")
    return line, details


def cli_hint(exc: DockerFailure) -> str | None:
    """The advice to show for ``exc``: the command line's own words where it has some."""
    if not exc.hint:
        return None
    for cls, hint in CLI_HINTS.items():
        if isinstance(exc, cls):
            return hint
    return exc.hint


def spark_message(exc: BaseException) -> str:
    """The one line that says what went wrong in a Spark (JVM or task) failure."""
    text = str(exc)
    if "Traceback (most recent call last)" in text:
        # a Python task failed: its exception is the last line of the traceback
        section = text.split("Traceback (most recent call last)", 1)[1].split("\n\tat ", 1)[0]
        found = _PYTHON_ERROR.findall(section)
        if found:
            return str(found[-1]).strip()
    java = getattr(exc, "java_exception", None)
    if java is not None:
        return _java_message(java, text)
    first = text.strip().split("\n")[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _java_message(java, text: str) -> str:
    try:
        message = str(java.toString())
    except Exception:  # noqa: BLE001 - the JVM may be gone
        message = text
    message = message.strip().split("\n")[0]
    if message.startswith("org.apache.spark.SparkException: Job aborted"):
        match = re.search(r"most recent failure: .*?\): (.*)", message)
        message = match.group(1) if match else message
    return message
