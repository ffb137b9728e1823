"""Streaming mode: the partition goes to the container's stdin, results come from stdout.

No file holds the data: records are written to the container's stdin over
the Docker API's attach connection by a writer thread, while stdout is read
and split into records as it arrives. stderr keeps only its last lines.
The container is removed when the stream ends, fails, or is abandoned.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Iterator

from docker.utils.socket import STDERR, STDOUT, frames_iter

from lofn import _engine
from lofn._engine import Deadline, StderrTail
from lofn.docker_handler import (
    ContainerSpec,
    _create,
    _exit_failure,
    _failure,
    _timeout_failure,
    ensure_image,
    get_client,
)


def run_streaming(spec: ContainerSpec, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Run ``spec`` with ``chunks`` on stdin; yield its stdout as it arrives.

    Raises (when the stream ends):
        DockerFailure: non-zero exit (:class:`~lofn.errors.ContainerTimeout`,
            :class:`~lofn.errors.OutOfMemory` as for file mode).
        EngineLost: the engine went away meanwhile.
    """
    client = get_client()
    with _engine.in_flight(spec.partition, "checking the image") as flight:
        ensure_image(client, spec.image, spec.pull, spec.partition)
        flight.step = "creating the container"
        # stdin_open on a container not created detached also sets StdinOnce: the
        # engine closes the container's stdin when we half-close our connection
        container = _create(client, spec,
                            {**spec.create_kwargs(), "stdin_open": True, "tty": False}, flight)
        try:
            yield from _attached(client, spec, container, chunks, flight)
        finally:
            _engine.remove(container, flight)


def _attached(client, spec: ContainerSpec, container, chunks: Iterable[bytes],
              flight: _engine.Flight) -> Iterator[bytes]:
    """Start ``container`` attached: ``chunks`` to its stdin, its stdout yielded."""
    writer_error: list[BaseException] = []

    def feed(stdin) -> None:
        try:
            for chunk in chunks:
                stdin.sendall(chunk)
        except OSError:
            pass  # the container stopped reading (it exited); its exit code tells why
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
            writer_error.append(exc)
        finally:
            try:
                stdin.shutdown(socket.SHUT_WR)  # EOF on the container's stdin
            except OSError:
                pass
            stdin.close()

    flight.step = "attaching to the container"
    attached = client.api.attach_socket(
        str(container.id), params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    if hasattr(attached, "sendall"):
        # Over TLS or SSH docker-py returns the socket itself, whose shutdown ends TLS
        # in both directions (or which has none): the output would be lost. Untested.
        raise _failure(spec, f"streaming (pipe) needs a unix socket or plain TCP connection "
                             f"to the Docker engine; {_engine.address()} uses TLS or SSH: "
                             "use map, which works over any connection")
    flight.step = "starting the container"
    container.start()
    with Deadline(spec.timeout, container.kill) as deadline:
        writer = threading.Thread(target=feed, args=(_writable(attached),), daemon=True)
        writer.start()
        stderr = StderrTail()
        flight.step = "streaming through the container"
        for stream, data in frames_iter(attached, tty=False):
            if stream == STDOUT:
                yield data
            elif stream == STDERR:
                stderr.add(data)
        writer.join()
        if writer_error:
            raise writer_error[0]
        flight.step = "waiting for the container"
        code = container.wait().get("StatusCode")
    if deadline.fired:
        raise _timeout_failure(spec, stderr.text())
    if code != 0:
        raise _exit_failure(spec, container, code, stderr.text())


def _writable(attached):
    """What writes to, and half-closes, the attach connection ``attached``.

    Over a plain unix or TCP connection docker-py's ``attach_socket``
    returns the socket's file object (``socket.SocketIO``), which can
    neither ``sendall`` nor half-close: a new socket on a duplicate of its
    descriptor can, on the same connection. The caller closes that one.
    """
    return socket.socket(fileno=os.dup(attached.fileno()))


def split_records(chunks: Iterable[bytes], delimiter: bytes | None) -> Iterator[bytes]:
    """Split a byte stream into records ending in ``delimiter`` (the last may lack it).

    With ``delimiter=None`` the whole stream is one record.
    """
    if delimiter is None:
        yield b"".join(chunks)
        return
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *records, buffer = buffer.split(delimiter)
        yield from records
    if buffer:
        yield buffer


def encode_records(elements: Iterable, delimiter: bytes | None) -> Iterator[bytes]:
    """Each element as bytes (text as UTF-8), followed by ``delimiter`` if there is one."""
    for element in elements:
        data = element if isinstance(element, (bytes, bytearray)) else str(element).encode()
        yield bytes(data) + delimiter if delimiter is not None else bytes(data)

