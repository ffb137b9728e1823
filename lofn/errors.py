"""Exceptions raised by lofn.

Every exception lofn raises derives from :class:`LofnError`, so one
``except LofnError`` catches them all. Errors about bad input also derive
from the builtin a caller would expect::

    LofnError
     +-- InvalidArgument (ValueError)        bad value: volumes, options, names
          +-- EmptyInput                     reduce of an RDD whose partitions are all empty
     +-- InvalidArgumentType (TypeError)     bad type (an unknown keyword is Python's TypeError)
     +-- DockerUnavailable (OSError)         no Docker engine answers
          +-- EngineLost                     the engine went away while a task used it
     +-- HdfsFailure (OSError)               an HDFS operation failed
          +-- HdfsUnavailable                WebHDFS does not answer in time
     +-- TemporaryDirectoryError (OSError)   temp directory missing, unwritable, full
     +-- DockerFailure                       a container failed
          +-- MissingOutputError             exit 0, but no output file
          +-- UnsafeOutputError              output is a link, FIFO, device...: refused
          +-- ContainerTimeout               killed at the ``timeout`` deadline
          +-- OutOfMemory                    killed for exceeding its memory limit
          +-- ImageUnavailable               image not on the host (and not pulled)
     +-- OutputDecodeError (UnicodeError)    text output is not UTF-8

Errors raised inside Spark tasks reach the driver wrapped in Spark's own
exception. For the actions lofn runs itself (``reduce``, ``reduce_binary``,
``map_binary``) the driver re-raises them as the lofn exception; for a mapped
RDD that the user collects, :func:`from_spark_error` recovers it.
"""

from __future__ import annotations

import re

__all__ = [
    "LofnError",
    "InvalidArgument",
    "InvalidArgumentType",
    "EmptyInput",
    "DockerUnavailable",
    "EngineLost",
    "HdfsFailure",
    "HdfsUnavailable",
    "TemporaryDirectoryError",
    "DockerFailure",
    "MissingOutputError",
    "UnsafeOutputError",
    "ContainerTimeout",
    "OutOfMemory",
    "ImageUnavailable",
    "OutputDecodeError",
    "from_spark_error",
]


class LofnError(Exception):
    """Root of every exception lofn raises."""


class InvalidArgument(LofnError, ValueError):
    """An argument has a value lofn cannot use."""


class InvalidArgumentType(LofnError, TypeError):
    """An argument has the wrong type."""


class EmptyInput(InvalidArgument):
    """``reduce`` or ``reduce_binary`` was given an RDD with no element: nothing to merge."""


class DockerUnavailable(LofnError, OSError):
    """The Docker engine cannot be reached from this host."""


class EngineLost(DockerUnavailable):
    """The Docker engine went away (stopped, restarted, crashed) while a task was using it.

    The message names the host, the partition, the engine's address and
    what the task was asking of it. What the engine left (containers) is
    removed when it answers again; a retry of the task then works.
    """


class HdfsFailure(LofnError, OSError):
    """An HDFS operation failed (a missing path, a refused request)."""


class HdfsUnavailable(HdfsFailure):
    """The namenode's WebHDFS endpoint cannot be reached within the timeout."""


class DockerFailure(LofnError):
    """A container failed.

    Args:
        message: what went wrong, in one line.
        image: the image the container ran.
        command: the command given to ``sh -c`` in the container.
        exit_code: the container's exit status, if it exited.
        partition: the Spark partition id the container worked on.
        stderr: the last lines the container wrote to stderr.
        hint: what the caller could change, in the API's words (``None`` if
            nothing obvious); kept apart from ``message`` so a front end
            such as the ``lofn`` command can give its own advice instead.
    """

    _FIELDS = ("image", "command", "exit_code", "partition", "hint")

    def __init__(
        self,
        message: str,
        *,
        image: str | None = None,
        command: str | None = None,
        exit_code: int | None = None,
        partition: int | None = None,
        stderr: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.hint = hint
        self.image = image
        self.command = command
        self.exit_code = exit_code
        self.partition = partition
        self.stderr = stderr
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [self.message]
        for field in self._FIELDS:
            value = getattr(self, field)
            if value is not None:
                lines.append(f"  {field.replace('_', ' ')}: {value}")
        if self.stderr:
            lines.append("  stderr tail:")
            lines.extend("    " + line for line in self.stderr.rstrip("\n").split("\n"))
        return "\n".join(lines)

    def __reduce__(self):
        return _rebuild, (type(self), self.message, self.image, self.command,
                          self.exit_code, self.partition, self.stderr, self.hint)

    @classmethod
    def _parse(cls, text: str) -> DockerFailure:
        """Rebuild a failure from its rendered text (the inverse of ``str``)."""
        lines = text.splitlines()
        fields: dict = {}
        stderr: list[str] = []
        in_stderr = False
        for line in lines[1:]:
            if in_stderr:
                stderr.append(line[4:] if line.startswith("    ") else line)
                continue
            if line.strip() == "stderr tail:":
                in_stderr = True
                continue
            key, _, value = line.strip().partition(": ")
            name = key.replace(" ", "_")
            if name in cls._FIELDS:
                fields[name] = int(value) if name in ("exit_code", "partition") else value
        return cls(lines[0] if lines else "", stderr="\n".join(stderr) or None, **fields)


class MissingOutputError(DockerFailure):
    """The container exited 0 but did not write the expected output file."""


class UnsafeOutputError(DockerFailure):
    """An output the container left is not a regular file, and the host refused to touch it.

    A symbolic link (which the host would otherwise follow to its own
    files), a FIFO, socket, device or directory where lofn expected a
    regular file; or a link on the way to it. Nothing of it was read.
    """


class ContainerTimeout(DockerFailure):
    """The container ran past its ``timeout`` and was killed."""


class OutOfMemory(DockerFailure):
    """The container was killed for exceeding its memory limit (exit 137, OOMKilled)."""


class ImageUnavailable(DockerFailure):
    """The image is not on the host, and the pull policy does not fetch it (or the pull failed)."""


class TemporaryDirectoryError(LofnError, OSError):
    """A temp directory cannot be created or written: missing, not writable, or full."""


class OutputDecodeError(LofnError, UnicodeError):
    """A container's text output is not valid UTF-8."""


def _rebuild(cls, message, image, command, exit_code, partition, stderr, hint=None):
    return cls(message, image=image, command=command, exit_code=exit_code,
               partition=partition, stderr=stderr, hint=hint)


# The task's exception ends where Spark's own text starts: its Java stack
# ("\tat ..."), a blank line, or (Spark 4.2) " SQLSTATE: 38000".
_TASK_ERROR = re.compile(
    r"^lofn\.errors\.(\w+): (.*?)(?=\n\tat |\n\n|\n SQLSTATE: |\Z)", re.MULTILINE | re.DOTALL)


def from_spark_error(exc: BaseException) -> LofnError | None:
    """Recover the lofn exception a Spark task raised.

    Spark reports a failed task as its own exception (``Py4JJavaError`` or
    ``PythonException``) whose text holds the task's Python traceback. This
    finds the lofn exception in that text.

    Args:
        exc: the exception a Spark action raised on the driver.

    Returns:
        The lofn exception the task raised, or ``None`` if there is none.
    """
    match = _TASK_ERROR.search(str(exc))
    if match is None:
        return None
    cls = globals().get(match.group(1))
    if not (isinstance(cls, type) and issubclass(cls, LofnError)):
        return None
    text = match.group(2).rstrip()
    if issubclass(cls, DockerFailure):
        return cls._parse(text)
    return cls(text)
