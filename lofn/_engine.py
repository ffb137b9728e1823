"""The Docker engine, written once: the client, the deadline, the stderr tail.

* :func:`client` is this process's client; :func:`connect` makes a new one
  (with a longer timeout, for image transfers). Both raise
  :class:`~lofn.errors.DockerUnavailable` naming :func:`address` and the host.
* :class:`Deadline` kills a container when its timeout passes and tells
  afterwards whether it did.
* :class:`StderrTail` keeps the last lines of a container's stderr as it
  streams by; :func:`logs_tail` asks the engine for them.
* :func:`in_flight` turns the engine going away in the middle of a task into
  :class:`~lofn.errors.EngineLost`, naming what was in flight, and has what
  the lost engine left removed when it answers again (:func:`remove_when_back`).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import requests
import urllib3
from docker.errors import APIError, DockerException, NotFound
from docker.utils.socket import STDERR, STDOUT

from lofn.errors import DockerUnavailable, EngineLost

__all__ = ["client", "connect", "address", "Deadline", "StderrTail", "logs_tail",
           "STDERR_TAIL_LINES", "LOST", "in_flight", "remove", "remove_when_back", "when_lost"]

logger = logging.getLogger(__name__)

#: Lines of a container's stderr that a failure carries.
STDERR_TAIL_LINES = 20
#: Bytes kept of one stderr line (its end): a line never ending cannot fill the memory.
LINE_BYTES = 1 << 16
_DEFAULT_ADDRESS = "unix:///var/run/docker.sock"
#: How docker-py fails when the engine goes away in the middle of a call: requests' and
#: urllib3's connection errors, a reply cut off after its headers (``wait`` answers with
#: headers at once and its body when the container ends), and the socket's own errors
#: (reset, broken pipe, refused).
LOST: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError, ConnectionError)
#: What an engine that is down, or went away, raises.
NOT_ANSWERING: tuple[type[BaseException], ...] = (DockerUnavailable, *LOST)
#: Seconds a worker (and its watchdog) keeps trying to remove what a lost engine left.
RETRY_SECONDS = 300.0
#: Seconds between two tries.
RETRY_INTERVAL = 1.0

_clients: dict[int, docker.DockerClient] = {}


def address() -> str:
    """The engine's address as the docker CLI finds it: ``DOCKER_HOST``, else the local socket."""
    return os.environ.get("DOCKER_HOST", _DEFAULT_ADDRESS)


def connect(timeout: float | None = None) -> docker.DockerClient:
    """A new client, checked with a ping; the caller closes it.

    The engine is found as the docker CLI finds it: ``DOCKER_HOST``,
    ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``, else the local socket.

    Args:
        timeout: seconds one API call may take (default: the SDK's, 60).

    Raises:
        DockerUnavailable: no engine answers, or this user may not use it.
    """
    new = None
    try:
        new = docker.from_env() if timeout is None else docker.from_env(timeout=int(timeout))
        new.ping()
    except (DockerException, OSError) as exc:
        if new is not None:
            new.close()
        hint = ("this user may not use the Docker socket: add it to the 'docker' group "
                "or point DOCKER_HOST at an engine it may use"
                if "Permission denied" in str(exc) else
                "start the engine (e.g. 'systemctl start docker' or 'dockerd &') or "
                "point DOCKER_HOST at a running one")
        raise DockerUnavailable(
            f"cannot reach the Docker engine at {address()} from host {os.uname().nodename}: "
            f"{exc}; {hint}") from exc
    return new


def client() -> docker.DockerClient:
    """Return this process's Docker client, connecting on first use.

    The engine is found as the docker CLI finds it: ``DOCKER_HOST``,
    ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``, else the local socket.

    Raises:
        DockerUnavailable: no engine answers, or this user may not use it.
    """
    pid = os.getpid()
    found = _clients.get(pid)
    if found is None:
        found = connect()
        _clients.clear()  # a forked worker must not reuse its parent's connection
        _clients[pid] = found
    return found


class Deadline:
    """Call ``kill`` when ``seconds`` have passed, unless the ``with`` block ended first.

    ``fired`` tells afterwards whether it did; a kill that failed (the
    container had ended, or the engine is gone) does not count. With
    ``seconds=None`` there is no deadline.

    Example::

        with Deadline(spec.timeout, container.kill) as deadline:
            code = container.wait()["StatusCode"]
        if deadline.fired:
            ...
    """

    def __init__(self, seconds: float | None, kill: Callable[[], Any]) -> None:
        self._kill = kill
        self._fired = threading.Event()
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True

    def _fire(self) -> None:
        try:
            self._kill()
        except Exception as exc:  # noqa: BLE001 - in the timer's thread, nobody to raise to
            logger.debug("kill at the deadline failed: %s", exc)
            return
        self._fired.set()

    def __enter__(self) -> Deadline:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()  # a kill under way has finished: ``fired`` is final

    @property
    def fired(self) -> bool:
        """Whether the deadline passed and the kill went through."""
        return self._fired.is_set()


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class StderrTail:
    """The last ``lines`` lines of a byte stream that arrives in pieces (stderr)."""

    def __init__(self, lines: int = STDERR_TAIL_LINES) -> None:
        self._count = lines
        self._lines: collections.deque[bytes] = collections.deque(maxlen=lines)
        self._partial = b""

    def add(self, data: bytes) -> None:
        """Take the next piece of the stream."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-LINE_BYTES:]
        self._lines.extend(line[-LINE_BYTES:] for line in lines)

    def text(self) -> str:
        """The kept lines, newlines around them stripped, as UTF-8 (bad bytes replaced)."""
        lines = [*self._lines, self._partial] if self._partial else list(self._lines)
        return _decode(b"\n".join(lines[-self._count:]).strip(b"\n"))


#: The header of each frame of a non-TTY attach stream: stream (1 stdout, 2 stderr), size.
_FRAME_HEADER = struct.Struct(">BxxxL")


class FrameTooLarge(ValueError):
    """The engine sent a frame of the attach stream larger than its reader accepts."""


def attached_stdout(connection: socket.socket, on_stderr: Callable[[bytes], Any],
                    read_size: int, max_frame: int | None = None) -> Iterator[bytes]:
    """The stdout of a non-TTY attach stream on ``connection``, a read at a time.

    The stream is frames of an 8-byte header (stream, size) and that many
    bytes. Each read of up to ``read_size`` bytes is taken apart in place:
    its stdout bytes are yielded as one piece, its stderr bytes go to
    ``on_stderr``. Nothing is kept between reads but a header cut by a read
    (at most 7 bytes): a frame's size is only counted down, never
    allocated; a frame over ``max_frame`` bytes raises :class:`FrameTooLarge`.
    The stream ends at EOF, also in the middle of a frame.
    """
    buffer = bytearray(read_size)
    view = memoryview(buffer)
    header = b""  # a header cut by the end of a read
    stream = left = 0  # the frame under way: its stream, and its bytes still to come
    while True:
        size = connection.recv_into(view)
        if not size:
            return
        out = []
        at = 0
        while at < size:
            if not left:
                piece = view[at:min(size, at + _FRAME_HEADER.size - len(header))]
                header += piece
                at += len(piece)
                if len(header) == _FRAME_HEADER.size:
                    stream, left = _FRAME_HEADER.unpack(header)
                    header = b""
                    if max_frame is not None and left > max_frame:
                        raise FrameTooLarge(f"the engine sent a frame of {left} bytes on the "
                                            "attach stream")
                continue
            end = min(size, at + left)
            if stream == STDOUT:
                out.append(view[at:end])
            elif stream == STDERR:
                on_stderr(bytes(view[at:end]))
            left -= end - at
            at = end
        if out:
            yield b"".join(out)  # a copy: the buffer is read into again


def logs_tail(container) -> str:
    """The last :data:`STDERR_TAIL_LINES` lines of a container's stderr, from the engine."""
    return _decode(container.logs(stdout=False, stderr=True, tail=STDERR_TAIL_LINES))


# ---------------------------------------------------------------------------
# an engine lost in the middle of a task

class Flight:
    """What a task is asking of the engine (``step``), and the containers it made."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.containers: list[str] = []


_lost_hooks: list[Callable[[], None]] = []


def when_lost(hook: Callable[[], None]) -> None:
    """Call ``hook`` whenever a task of this process loses the engine (reuse mode's handles)."""
    _lost_hooks.append(hook)


@contextmanager
def in_flight(partition: int | None, step: str = "connecting to it") -> Iterator[Flight]:
    """Turn the engine going away inside the block into :class:`~lofn.errors.EngineLost`.

    The block keeps ``flight.step`` (what it asks of the engine) and
    ``flight.containers`` (what it made) up to date; when the engine is
    lost, those containers are removed as soon as it answers again.
    """
    flight = Flight(step)
    try:
        yield flight
    except LOST as exc:
        remove_when_back(flight.containers)
        for hook in _lost_hooks:
            hook()
        where = "" if partition is None else f" (partition {partition})"
        raise EngineLost(
            f"lost the Docker engine at {address()} on host {os.uname().nodename} while "
            f"{flight.step}{where}: {exc}; lofn removes what it left when it answers again, "
            "and a retry of the task runs on it then") from exc


def remove(container, flight: Flight) -> None:
    """Remove ``container`` (forced), at the end of a task's use of it.

    When the engine is lost meanwhile, the container is left to
    :func:`remove_when_back`; that loss is the task's error only if no other
    error is on its way already.
    """
    failing = sys.exc_info()[1] is not None
    if not failing:
        flight.step = "removing the container"
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except LOST:
        remove_when_back([container.id])
        if not failing:
            raise


_orphans: set[str] = set()
_orphans_lock = threading.Lock()
_cleaning = False  # a cleaner thread owns _orphans (set and cleared under the lock)


def remove_when_back(containers: Iterable[str]) -> None:
    """Remove ``containers`` (IDs or names) as soon as the engine answers again.

    A daemon thread of this process tries every :data:`RETRY_INTERVAL`
    seconds for :data:`RETRY_SECONDS`. A Spark Python worker usually ends
    right after a failed task, taking the thread with it; its watchdog then
    removes all of the worker's containers, retrying as long
    (:mod:`lofn._reaper`).
    """
    global _cleaning
    with _orphans_lock:
        _orphans.update(containers)
        if not _orphans or _cleaning:
            return
        _cleaning = True
    threading.Thread(target=_remove_orphans, name="lofn-engine-cleanup", daemon=True).start()


def _remove_orphans() -> None:
    global _cleaning
    deadline = time.monotonic() + RETRY_SECONDS
    while time.monotonic() < deadline:
        time.sleep(RETRY_INTERVAL)
        with _orphans_lock:
            pending = sorted(_orphans)
        try:
            for container in pending:
                client().api.remove_container(container, force=True)
                with _orphans_lock:
                    _orphans.discard(container)
        except APIError as exc:
            if exc.status_code in (404, 409):  # gone, or being removed already
                with _orphans_lock:
                    _orphans.discard(container)
            else:
                logger.debug("could not remove container %s yet: %s", container, exc)
        except Exception as exc:  # noqa: BLE001 - the engine is not back yet: try again
            logger.debug("the Docker engine does not answer yet: %s", exc)
        with _orphans_lock:
            if not _orphans:
                _cleaning = False
                logger.info("removed the containers a lost Docker engine left: %s",
                            ", ".join(name[:12] for name in pending))
                return
    with _orphans_lock:
        _cleaning = False
        left = ", ".join(sorted(_orphans))
    logger.warning("the Docker engine at %s did not answer within %.0f s; containers left: %s",
                   address(), RETRY_SECONDS, left)
