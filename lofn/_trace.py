"""The trace: one JSON record per container attempt (``DockerPipe(trace=...)``).

Each container a task runs (or restores from the result cache) becomes one
record, a line of JSON, written by the task into its own file
``<app>-s<stage>-p<partition>-a<attempt>-<random>.jsonl`` in the trace
directory: a local one (shared by the executors of a multi-host cluster) or
an ``hdfs:///`` one. A file is written under a hidden temporary name and
renamed, so a reader never sees half a record. The schema is in
``docs/trace.rst`` and :data:`SCHEMA` names its version.

Peak memory and CPU time come from the container's cgroup, read by a
:class:`Meter` thread while the container runs: cgroup v2 (``memory.peak``,
``cpu.stat``), or v1 (``memory.max_usage_in_bytes``, ``cpuacct.usage``).
Where a ``cgroup.events`` file exists (v2, or v1 next to a unified
hierarchy), the meter wakes when the container's last process exits and
reads the final numbers; on pure v1 it reads every :data:`POLL_SECONDS`, so
the CPU time may miss the last moments. The engine's ``stats`` call, which
waits a second or more, is never used.
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from lofn.errors import (
    ContainerTimeout,
    DockerFailure,
    HdfsFailure,
    InvalidArgument,
    OutOfMemory,
)
from lofn.hdfs_handler import Place

logger = logging.getLogger(__name__)

#: The schema of every record (its ``schema`` field).
SCHEMA = "lofn-trace/1"
#: Seconds between two cgroup reads where no ``cgroup.events`` says when a container ends.
POLL_SECONDS = 0.1
_CGROUP = "/sys/fs/cgroup"
# where Docker puts a container's cgroup: the cgroupfs driver, then the systemd one
_SCOPES = ("docker/{}", "system.slice/docker-{}.scope")


@dataclass(frozen=True)
class TraceLog(Place):
    """Where the records go: a local directory, or an HDFS one (``hdfs:///...``)."""

    option: ClassVar[str] = "trace"

    def check(self) -> None:
        """On the driver: make the directory and write a file in it, or raise naming it.

        Raises:
            InvalidArgument: the directory cannot be made or written.
        """
        probe = f"{self.root}/.lofn-probe-{uuid.uuid4().hex}"
        try:
            if self.on_hdfs:
                self.client.call(f"make the trace directory {self.location!r}", "makedirs",
                                 self.root)
                self.client.call(f"write in the trace directory {self.location!r}", "write",
                                 probe, data=b"")
                self.client.call(f"remove {probe!r}", "delete", probe)
            else:
                os.makedirs(self.root, exist_ok=True)
                with open(probe, "xb"):
                    pass
                os.unlink(probe)
        except OSError as exc:
            raise InvalidArgument(f"trace {self.location!r} cannot be written: "
                                  f"{exc.strerror or exc}; give a directory this user can "
                                  "create and write") from exc
        except HdfsFailure as exc:
            raise InvalidArgument(f"trace {self.location!r} cannot be written: {exc}") from exc

    def write(self, record: dict) -> None:
        """Add ``record`` to the trace, as a file of its own; a failure is only logged."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        name = (f"{record['app']}-s{record['stage']}-p{record['partition']}-"
                f"a{record['attempt']}-{uuid.uuid4().hex[:12]}.jsonl")
        try:
            self.put(f"{self.root}/{name}", io.BytesIO(line))
        except (OSError, HdfsFailure) as exc:
            logger.warning("could not write a trace record to %s: %s", self.location, exc)


@contextmanager
def attempt(log: TraceLog | None, task: tuple[int, int, int], *, app: str, method: str,
            mode: str, image: str, command: str,
            bytes_in: int | None = None) -> Iterator[dict | None]:
    """Record the container attempt the block runs; yields its record, or ``None`` untraced.

    ``task`` is the Spark task's (stage, partition, attempt number).

    The block (and the functions it calls) fill in what they learn: the
    image ID, the cgroup numbers, ``mode`` (``'cache'`` when restored),
    ``bytes_out``. On leaving, the end time and the outcome are added, from
    the exception the block raises, if any, and the record is written.
    """
    if log is None:
        yield None
        return
    from lofn import __version__

    stage, partition, number = task
    record: dict[str, Any] = {
        "schema": SCHEMA, "app": app, "stage": stage, "partition": partition,
        "attempt": number, "host": socket.gethostname(), "worker": os.getpid(),
        "method": method, "mode": mode, "image": image, "image_id": None,
        "command": command, "lofn_version": __version__, "start": time.time(), "end": None,
        "status": "ok", "error": None, "exit_code": None, "oom": False, "timeout": False,
        "peak_memory_bytes": None, "cpu_seconds": None, "meter": "not measured",
        "bytes_in": bytes_in, "bytes_out": None, "stderr_tail": None, "limits": None}
    try:
        yield record
        if record["mode"] != "cache" and record["exit_code"] is None:
            record["exit_code"] = 0
    except BaseException as exc:
        _failed(record, exc)
        raise
    finally:
        record["end"] = time.time()
        log.write(record)


def _failed(record: dict, exc: BaseException) -> None:
    if not isinstance(exc, Exception):  # the task was cancelled, or a stream cut short
        record["status"] = "cancelled"
        return
    record["status"] = "failed"
    message = exc.message if isinstance(exc, DockerFailure) else str(exc)
    record["error"] = f"{type(exc).__name__}: {message}"
    if isinstance(exc, DockerFailure):
        if exc.exit_code is not None:
            record["exit_code"] = exc.exit_code
        record.update(stderr_tail=exc.stderr, oom=isinstance(exc, OutOfMemory),
                      timeout=isinstance(exc, ContainerTimeout))


def directory_bytes(path: str) -> int:
    """Bytes in the regular files directly in ``path`` (links are not followed)."""
    with os.scandir(path) as entries:
        return sum(entry.stat(follow_symlinks=False).st_size for entry in entries
                   if entry.is_file(follow_symlinks=False))


# ---------------------------------------------------------------------------
# peak memory and CPU time from the container's cgroup

@dataclass(frozen=True)
class _Cgroup:
    """A container's cgroup files: peak memory, CPU time, and when it empties, if known."""

    peak: str | None
    cpu: str | None
    events: str | None
    version: str

    @classmethod
    def find(cls, container_id: str) -> _Cgroup | None:
        unified = os.path.exists(f"{_CGROUP}/cgroup.controllers")
        for scope in (pattern.format(container_id) for pattern in _SCOPES):
            if unified:
                path = f"{_CGROUP}/{scope}"
                if os.path.isdir(path):
                    return cls(_existing(f"{path}/memory.peak"), f"{path}/cpu.stat",
                               f"{path}/cgroup.events", "cgroup v2")
                continue
            peak = _existing(f"{_CGROUP}/memory/{scope}/memory.max_usage_in_bytes")
            cpu = (_existing(f"{_CGROUP}/cpuacct/{scope}/cpuacct.usage")
                   or _existing(f"{_CGROUP}/cpu,cpuacct/{scope}/cpuacct.usage"))
            if peak or cpu:
                return cls(peak, cpu, _existing(f"{_CGROUP}/unified/{scope}/cgroup.events"),
                           "cgroup v1")
        return None

    def read(self) -> tuple[int | None, float | None]:
        """(peak memory bytes, CPU seconds) now; ``None`` for what cannot be read."""
        return _read_number(self.peak), _cpu_seconds(self.cpu)


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:  # the cgroup is gone
        return None


def _read_number(path: str | None) -> int | None:
    text = _read(path)
    return int(text) if text and text.strip().isdigit() else None


def _cpu_seconds(path: str | None) -> float | None:
    text = _read(path)
    if not text:
        return None
    if path and path.endswith("cpuacct.usage"):
        return int(text) / 1e9 if text.strip().isdigit() else None
    for line in text.splitlines():  # cpu.stat
        key, _, value = line.partition(" ")
        if key == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


class Meter:
    """Follows a running container's cgroup until its last process ends.

    Start it right after the container starts; :meth:`result` gives the
    record's ``peak_memory_bytes``, ``cpu_seconds`` and ``meter`` (how they
    were measured, or why they are missing).
    """

    def __init__(self, container_id: str) -> None:
        self._cgroup = _Cgroup.find(container_id)
        self._peak: int | None = None
        self._cpu: float | None = None
        self._exact = False
        self._stop = threading.Event()
        self._wake = os.pipe()  # result() writes a byte: the thread stops waiting
        self._thread = None
        if self._cgroup is not None:
            self._sample()
            self._thread = threading.Thread(target=self._follow, name="lofn-meter", daemon=True)
            self._thread.start()

    def _sample(self) -> bool:
        assert self._cgroup is not None
        peak, cpu = self._cgroup.read()
        if peak is None and cpu is None:
            return False
        self._peak = peak if peak is not None else self._peak
        self._cpu = cpu if cpu is not None else self._cpu
        return True

    def _follow(self) -> None:
        assert self._cgroup is not None
        events = None
        if self._cgroup.events is not None:
            try:
                events = os.open(self._cgroup.events, os.O_RDONLY)
            except OSError:
                pass
        try:
            waiter = select.poll()
            waiter.register(self._wake[0], select.POLLIN)
            if events is not None:
                waiter.register(events, select.POLLPRI | select.POLLERR)
            interval = 1000 if events is not None else round(POLL_SECONDS * 1000)
            while True:
                if events is not None and b"populated 0" in os.pread(events, 256, 0):
                    self._exact = self._sample()  # the last process has just exited
                    return
                if self._stop.is_set() or (not self._sample() and events is None):
                    return  # stopped, or the cgroup is gone
                waiter.poll(interval)
        except OSError:
            return
        finally:
            if events is not None:
                os.close(events)

    def result(self) -> dict[str, Any]:
        """Stop following; the numbers as the record's fields."""
        self._stop.set()
        os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join()
            if not self._exact:
                self._sample()  # a last reading, if the cgroup is still there
        for end in self._wake:
            os.close(end)
        if self._cgroup is None:
            how = ("no cgroup of the container found on this host (a remote or rootless "
                   "engine, another cgroup layout, or it ended before it could be read)")
        elif self._peak is None and self._cpu is None:
            how = "the container ended before its cgroup could be read"
        else:
            how = self._cgroup.version + ("" if self._exact else ", sampled")
        return {"peak_memory_bytes": self._peak, "cpu_seconds": self._cpu, "meter": how}


Reading = tuple[str, int | None, float | None]  # (cgroup version, peak bytes, CPU seconds)


def warm_reading(container_id: str) -> Reading | None:
    """A warm container's cgroup numbers now, for :func:`warm_usage`."""
    cgroup = _Cgroup.find(container_id)
    return None if cgroup is None else (cgroup.version, *cgroup.read())


def warm_usage(container_id: str, before: Reading | None) -> dict[str, Any]:
    """What one partition used of a warm container, from readings before and after it.

    The CPU time is the difference, exact. The container's peak memory is
    the partition's only if it rose during the partition; otherwise which
    partition reached it cannot be told, and it is left out.
    """
    after = warm_reading(container_id)
    if before is None or after is None:
        return {"meter": "no cgroup of the warm container found on this host"}
    version, peak, cpu = after
    return {"peak_memory_bytes": peak if peak is not None and peak != before[1] else None,
            "cpu_seconds": cpu - before[2] if cpu is not None and before[2] is not None
            else None,
            "meter": f"{version}, reuse mode (peak memory only if this partition raised it)"}
