"""Streaming mode: the partition goes to the container's stdin, results come from stdout.

No file holds the data: records are written to the container's stdin over
the Docker API's attach connection by a writer thread, while stdout is read
and split into records as it arrives. stderr keeps only its last lines.
The container is removed when the stream ends, fails, or is abandoned.
"""

from __future__ import annotations

import collections
import socket
import threading
from typing import Iterable, Iterator

from docker.errors import APIError, NotFound
from docker.models.containers import _create_container_args
from docker.utils.socket import STDERR, STDOUT, frames_iter

from lofn.docker_handler import (
    STDERR_TAIL_LINES,
    ContainerSpec,
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
    """
    client = get_client()
    ensure_image(client, spec.image, spec.pull, spec.partition)
    # StdinOnce: the engine closes the container's stdin when we half-close
    # ours. The SDK does not expose it, so the SDK's own translation builds
    # the configuration and the flag is set on it before creating.
    arguments = _create_container_args(
        {**spec.create_kwargs(), "image": spec.image, "stdin_open": True, "tty": False,
         "version": client.api._version})
    name = arguments.pop("name", None)
    config = client.api.create_container_config(**arguments)
    config["StdinOnce"] = True
    try:
        container = client.containers.get(
            client.api.create_container_from_config(config, name)["Id"])
    except APIError as exc:
        raise _failure(spec, f"the Docker engine refused to create the container: "
                             f"{exc.explanation or exc}") from exc
    timed_out = threading.Event()
    timer = None
    writer_error: list[BaseException] = []
    try:
        attached = client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(attached, "_sock", attached)
        container.start()
        if spec.timeout is not None:
            def kill():
                timed_out.set()
                container.kill()
            timer = threading.Timer(spec.timeout, kill)
            timer.daemon = True
            timer.start()

        def feed():
            try:
                for chunk in chunks:
                    raw.sendall(chunk)
            except OSError:
                pass  # the container stopped reading (it exited); its exit code tells why
            except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                writer_error.append(exc)
            finally:
                try:
                    raw.shutdown(socket.SHUT_WR)  # EOF on the container's stdin
                except OSError:
                    pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        stderr = collections.deque(maxlen=STDERR_TAIL_LINES + 1)
        partial = b""
        for stream, data in frames_iter(attached, tty=False):
            if stream == STDOUT:
                yield data
            elif stream == STDERR:
                lines = (partial + data).split(b"\n")
                partial = lines.pop()
                stderr.extend(lines)
        writer.join()
        if writer_error:
            raise writer_error[0]
        stderr.append(partial)
        tail = b"\n".join(stderr).strip(b"\n").decode("utf-8", "replace")
        code = container.wait().get("StatusCode")
        if timed_out.is_set():
            raise _timeout_failure(spec, tail)
        if code != 0:
            raise _exit_failure(spec, container, code, tail)
    finally:
        if timer is not None:
            timer.cancel()
        try:
            container.remove(force=True)
        except NotFound:
            pass


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

