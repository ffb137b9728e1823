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

import socket
import threading
from collections.abc import Generator, Iterable, Iterator
from itertools import chain, islice

from lofn import _engine
from lofn._engine import Deadline, StderrTail
from lofn.docker_handler import (
    ContainerSpec,
    _create,
    _exit_failure,
    _timeout_failure,
    attach,
    ensure_image,
    get_client,
)
from lofn.tmp_file_handler import decode_text

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
        try:
            yield from _attached(client, spec, container, chunks, flight)
        finally:
            _engine.remove(container, flight)


def _attached(client, spec: ContainerSpec, container, chunks: Iterable[bytes],
              flight: _engine.Flight) -> Iterator[bytes]:
    """Start ``container`` attached: ``chunks`` to its stdin, its stdout yielded."""
    writer_error: list[BaseException] = []

    flight.step = "attaching to the container"
    _, connection = attach(client, spec, container, "streaming (pipe)",
                           "use map, which works over any connection")

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
                connection.shutdown(socket.SHUT_WR)  # EOF on the container's stdin
            except OSError:
                pass

    try:
        flight.step = "starting the container"
        container.start()
        with Deadline(spec.timeout, container.kill) as deadline:
            writer = threading.Thread(target=feed, name="lofn-stdin", daemon=True)
            writer.start()
            stderr = StderrTail()
            flight.step = "streaming through the container"
            try:
                yield from _engine.attached_stdout(connection, stderr.add, CHUNK)
                flight.step = "waiting for the container"
                code = container.wait().get("StatusCode")
            finally:
                # ended (the container has exited), failed, or abandoned (GeneratorExit): a
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
