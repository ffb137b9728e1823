"""The Docker engine, written once: the client, the deadline, the stderr tail.

* :func:`client` is this process's client; :func:`connect` makes a new one
  (with a longer timeout, for image transfers). Both raise
  :class:`~lofn.errors.DockerUnavailable` naming :func:`address` and the host.
* :class:`Deadline` kills a container when its timeout passes and tells
  afterwards whether it did.
* :class:`StderrTail` keeps the last lines of a container's stderr as it
  streams by; :func:`logs_tail` asks the engine for them.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import docker
from docker.errors import DockerException

from lofn.errors import DockerUnavailable

__all__ = ["client", "connect", "address", "Deadline", "StderrTail", "logs_tail",
           "STDERR_TAIL_LINES"]

logger = logging.getLogger(__name__)

#: Lines of a container's stderr that a failure carries.
STDERR_TAIL_LINES = 20
#: Bytes kept of one stderr line (its end): a line never ending cannot fill the memory.
LINE_BYTES = 1 << 16
_DEFAULT_ADDRESS = "unix:///var/run/docker.sock"

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
    try:
        new = docker.from_env() if timeout is None else docker.from_env(timeout=int(timeout))
        new.ping()
    except (DockerException, OSError) as exc:
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


def logs_tail(container) -> str:
    """The last :data:`STDERR_TAIL_LINES` lines of a container's stderr, from the engine."""
    return _decode(container.logs(stdout=False, stderr=True, tail=STDERR_TAIL_LINES))
