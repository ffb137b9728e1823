"""Streaming mode: the partition goes to the container's stdin, results come from stdout.

No file holds the data: records are joined into pieces of about
:data:`CHUNK` bytes and written to the container's stdin over the Docker
API's attach connection by a writer thread, while the connection is read
in reads of up to :data:`CHUNK` bytes, its multiplexed frames taken apart
(stdout kept, stderr's last lines kept) and the stdout split into records
a read at a time. The container is removed when the stream ends, fails,
or is abandoned; the writer thread is stopped and joined on every path.

How a stream is cut into records is the same as ``bytes.split`` of the
whole stream (a trailing empty record dropped); a record cut across reads,
a delimiter cut across reads, and a record longer than many reads are
joined without copying the record more than twice.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain, islice
from typing import Any

from docker.errors import APIError

from lofn import _engine
from lofn._engine import Deadline, StderrTail
from lofn.docker_handler import (
    ContainerSpec,
    Metering,
    _create,
    _exit_failure,
    _failure,
    _timeout_failure,
    attach,
    discard_warm,
    ensure_image,
    get_client,
    hijacked,
    warm_command,
    warm_metered,
    warm_runner,
)
from lofn.tmp_file_handler import decode_text

logger = logging.getLogger(__name__)
# warm containers streaming a partition in this process now (by container id)
_streaming: set[str] = set()

#: Seconds the engine may take to mark an exec exited after its stream ended.
EXEC_EXIT_GRACE = 5.0
#: Bytes of input joined before a write, and the most read from the connection at once.
CHUNK = 1 << 20
# Elements joined at once by encode_records, at first and at most: adjusted to ~CHUNK bytes.
_FIRST_BATCH, _MAX_BATCH = 256, 1 << 16


def run_streaming(spec: ContainerSpec,
                  chunks: Iterable[bytes]) -> Generator[bytes, None, None]:
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
        kwargs = {**spec.create_kwargs(), "stdin_open": True, "tty": False}
        # the engine's default log driver (json-file) would also write every line of
        # stdout to a log file, as JSON: three times the time of the stream itself
        kwargs.setdefault("log_config", {"Type": "none", "Config": {}})
        container = _create(client, spec, kwargs, flight)
        metering = Metering(spec, container)
        try:
            flight.step = "attaching to the container"
            attached, connection = attach(client, spec, container, "streaming (pipe)",
                                          "use map, which works over any connection")
            yield from _exchange(spec, container, (attached, connection), chunks,
                                 metering.start, lambda: container.wait().get("StatusCode"),
                                 flight)
        finally:
            metering.finish()
            _engine.remove(container, flight)


def run_streaming_warm(spec: ContainerSpec,
                       chunks: Iterable[bytes]) -> Generator[bytes, None, None]:
    """:func:`run_streaming` in this worker's warm container (reuse mode).

    The command runs by an ``exec`` whose own connection carries its stdin
    and stdout (the runner's carries requests, and a stream has no end it
    could mark). Afterwards the container is kept only if nothing but the
    runner is left in it, as the engine lists its processes: a process the
    command left (which could write into the next partition's stream through
    ``/proc/PID/fd/1``, or read the runner's stdin) sends the container away,
    as do a failure, a timeout and a stream cut short. Same errors as :func:`run_streaming`.
    """
    client = get_client()
    with _engine.in_flight(spec.partition, "checking the image") as flight:
        key, runner = warm_runner(client, spec, flight)
        if runner.id in _streaming:
            # a pipe of a pipe, in one task: the warm container streams the other one
            flight.step = "streaming in a fresh container (the warm one is busy)"
            yield from run_streaming(spec, chunks)
            return
        _streaming.add(runner.id)
        clean = False
        try:
            flight.step = "starting the partition's command (warm container)"
            started = client.api.exec_create(runner.id, ["sh", "-c", warm_command(spec)],
                                             stdin=True, stdout=True, stderr=True, tty=False)
            hijack = hijacked(client.api.exec_start(started["Id"], socket=True), spec,
                              "streaming (pipe) in a warm container",
                              "run pipe without reuse_containers")
            with warm_metered(spec, runner):
                yield from _exchange(spec, runner.container, hijack, chunks, lambda: None,
                                     lambda: _exec_status(client, spec, started["Id"]), flight)
            flight.step = "checking that the command left no process"
            clean = len(client.api.top(runner.id).get("Processes") or []) == 1
            if not clean:
                logger.info("a partition's command left processes in warm container %s; "
                            "the next partition gets a new one", runner.id[:12])
        except APIError as exc:
            raise _failure(spec, "the Docker engine refused to run the partition's command in "
                                 f"the warm container: {exc.explanation or exc}") from exc
        finally:
            _streaming.discard(runner.id)
            if not clean:
                discard_warm(key, flight, runner)


def _exec_status(client, spec: ContainerSpec, exec_id: str) -> int:
    """The exit status of an exec whose stream has ended (the engine may lag a moment)."""
    deadline = time.monotonic() + EXEC_EXIT_GRACE
    while True:
        state = client.api.exec_inspect(exec_id)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return state["ExitCode"]
        if time.monotonic() > deadline:
            raise _failure(spec, "the partition's command closed its output but had not exited "
                                 f"{EXEC_EXIT_GRACE:g} s later")
        time.sleep(0.01)


def _exchange(spec: ContainerSpec, container, hijack: tuple[Any, socket.socket],
              chunks: Iterable[bytes], start: Callable[[], Any], status: Callable[[], Any],
              flight: _engine.Flight) -> Iterator[bytes]:
    """Call ``start``, send ``chunks`` to the hijacked connection's stdin and yield its stdout.

    A writer thread sends; ``container`` is killed at ``spec.timeout``;
    ``status`` is asked for the command's exit status after the stream's
    end. The connection is closed on every path.

    Raises:
        DockerFailure: the timeout, or a non-zero status.
    """
    attached, connection = hijack
    writer_error: list[BaseException] = []

    def feed() -> None:
        try:
            for chunk in chunks:
                connection.sendall(chunk)
        except OSError:
            pass  # the container stopped reading (it exited), or the reader shut the socket
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
            writer_error.append(exc)
        finally:
            try:
                connection.shutdown(socket.SHUT_WR)  # EOF on the command's stdin
            except OSError:
                pass

    try:
        flight.step = "starting the command"
        start()
        with Deadline(spec.timeout, container.kill) as deadline:
            writer = threading.Thread(target=feed, name="lofn-stdin", daemon=True)
            writer.start()
            stderr = StderrTail()
            flight.step = "streaming through the container"
            try:
                yield from _engine.attached_stdout(connection, stderr.add, CHUNK)
                flight.step = "waiting for the command's exit"
                code = -1 if deadline.fired else status()  # killed: nothing to ask
            finally:
                # ended (the command has exited), failed, or abandoned (GeneratorExit): a
                # writer still sending (to a container killed at its deadline, which the
                # engine no longer reads from) fails at its next send and stops taking
                # records from the partition
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                writer.join()
        if writer_error:
            raise writer_error[0]
    finally:
        connection.close()
        attached.close()
    if deadline.fired:
        raise _timeout_failure(spec, stderr.text())
    if code != 0:
        raise _exit_failure(spec, container, code, stderr.text())


def _blocks(chunks: Iterable[bytes], delimiter: bytes) -> Iterator[tuple[bytes, bool]]:
    """The stream ``chunks`` as ``(block, whole)``: cut after the last delimiter of each chunk.

    A block with ``whole`` true is whole records, each ending in
    ``delimiter``; the last block, if the stream does not end in
    ``delimiter``, is the last record, without it (``whole`` false). Cuts
    are where ``bytes.split`` of the whole stream would cut. A record
    spanning chunks is kept in pieces, and a chunk that holds no delimiter
    (checking the ``len(delimiter) - 1`` bytes before it too, for a
    delimiter cut between chunks) is just added to them: a record is
    joined once, when its end arrives.
    """
    width = len(delimiter)
    keep = width - 1
    # a delimiter that can overlap itself ('aa', '\r\n\r\n'): the last cut of bytes.split
    # is not always at rfind
    overlaps = any(delimiter[:k] == delimiter[-k:] for k in range(1, width))
    pending: list[bytes] = []  # the record under way, in pieces, no delimiter in or across them
    tail = b""  # its last `keep` bytes
    for chunk in chunks:
        if not chunk:
            continue
        if pending and delimiter not in chunk and not (keep and delimiter in tail + chunk[:keep]):
            pending.append(chunk)
            if keep:
                tail = (tail + chunk[-keep:])[-keep:]
            continue
        data = b"".join([*pending, chunk]) if pending else chunk
        if overlaps:
            cut = len(data) - len(data.split(delimiter)[-1])
        else:
            at = data.rfind(delimiter)
            cut = at + width if at >= 0 else 0
        if cut == len(data):
            yield data, True
            pending, tail = [], b""
            continue
        if cut:
            yield data[:cut], True
        rest = data[cut:]
        pending = [rest]
        tail = rest[-keep:] if keep else b""
    if pending:
        yield b"".join(pending), False


def split_records(chunks: Iterable[bytes], delimiter: bytes | None) -> Iterator[bytes]:
    """Split a byte stream into records ending in ``delimiter`` (the last may lack it).

    With ``delimiter=None`` the whole stream is one record.
    """
    return chain.from_iterable(_split_blocks(chunks, delimiter))  # no Python step a record


def _split_blocks(chunks: Iterable[bytes], delimiter: bytes | None) -> Iterator[list[bytes]]:
    if delimiter is None:
        yield [b"".join(chunks)]
        return
    for block, whole in _blocks(chunks, delimiter):
        records = block.split(delimiter)
        if whole:
            records.pop()  # the empty piece after the block's last delimiter
        yield records


def text_records(chunks: Iterable[bytes], delimiter: bytes,
                 partition: int | None) -> Iterator[str]:
    """Split a byte stream as :func:`split_records` does, and decode each record as UTF-8.

    A block of records is decoded at once and split as text (the same
    records, since a delimiter that is UTF-8 can only match at character
    boundaries of valid UTF-8). A block that is not UTF-8 is decoded record
    by record, so the records before the bad one are still yielded.

    Raises:
        OutputDecodeError: a record is not UTF-8 (names its byte offset in stdout).
    """
    return chain.from_iterable(_text_blocks(chunks, delimiter, partition))


def _text_blocks(chunks: Iterable[bytes], delimiter: bytes,
                 partition: int | None) -> Iterator[Iterable[str]]:
    try:
        text_delimiter: str | None = delimiter.decode("utf-8")
    except UnicodeDecodeError:
        text_delimiter = None
    offset = 0  # of the block in stdout
    for block, whole in _blocks(chunks, delimiter):
        records = None
        if text_delimiter is not None:
            try:
                records = block.decode("utf-8").split(text_delimiter)
            except UnicodeDecodeError:
                pass
        if records is None:
            pieces = block.split(delimiter)
            if whole:
                pieces.pop()
            yield _decoded(pieces, len(delimiter), offset, partition)
        else:
            if whole:
                records.pop()
            yield records
        offset += len(block)


def _decoded(pieces: list[bytes], width: int, offset: int,
             partition: int | None) -> Iterator[str]:
    """``pieces`` (records ``width`` bytes apart from ``offset`` on) decoded one at a time."""
    for raw in pieces:
        yield decode_text(raw, "stdout", offset, partition)
        offset += len(raw) + width


def encode_records(elements: Iterable, delimiter: bytes | None) -> Iterator[bytes]:
    """The elements as bytes (text as UTF-8), each followed by ``delimiter`` if there is one.

    Yielded in pieces of about :data:`CHUNK` bytes (one element may make a
    longer piece): a batch of elements that are all ``str`` (or all
    ``bytes``/``bytearray``) is joined at once; any other batch, one element
    at a time (``str(element)`` for what is neither).
    """
    iterator = iter(elements)
    separator = b"" if delimiter is None else delimiter
    try:
        text_separator: str | None = separator.decode("utf-8")
    except UnicodeDecodeError:
        text_separator = None
    count = _FIRST_BATCH
    while True:
        batch = list(islice(iterator, count))
        if not batch:
            return
        kinds = set(map(type, batch))
        data = None
        if kinds == {str} and text_separator is not None:
            try:  # the empty string last: a delimiter after the last element
                data = text_separator.join([*batch, ""]).encode()
            except UnicodeEncodeError:
                pass  # a lone surrogate: raised below, by the element that holds it
        elif kinds <= {bytes, bytearray}:
            data = separator.join([*batch, b""])
        if data is None:
            data = separator.join([_encoded(element) for element in batch]) + separator
        yield data
        count = max(1, min(_MAX_BATCH, count * CHUNK // max(len(data), 1)))


def _encoded(element) -> bytes:
    return bytes(element) if isinstance(element, (bytes, bytearray)) else str(element).encode()
