"""Create temp files for Docker read/write, and read container outputs back.

Partitions are streamed to files element by element and outputs are read
back lazily, so a partition never has to fit in a Python list unless a UDF
asks for one. Everything inside a directory a container mounts is touched
through :mod:`lofn._safefs`: created exclusively, read only as a regular
file, and no symbolic link the container made is ever followed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from lofn import _safefs
from lofn.errors import InvalidArgument, InvalidArgumentType, OutputDecodeError

__all__ = ["UDF", "handle_binary", "read_back", "read_binary", "write_lines",
           "write_new_lines", "read_lines", "lines_of", "split_lines", "check_file_name",
           "TaskDirectory", "reuse_directory"]

_BUFFER = 1 << 20


def _encode(element) -> bytes:
    if isinstance(element, (bytes, bytearray)):
        return bytes(element)
    return str(element).encode("utf-8")


def encode_lines(elements: Iterable) -> Iterator[bytes]:
    """Encode elements as UTF-8 lines; list elements give one line per item.

    Lists are flattened because scripts written for the older lofn nest
    each partition in a list (``mapPartitions(lambda p: [list(p)])``)
    before ``reduce``.
    """
    for element in elements:
        if isinstance(element, list):
            for item in element:
                yield _encode(item) + b"\n"
        else:
            yield _encode(element) + b"\n"


def write_lines(path: str, elements: Iterable) -> None:
    """Stream elements to ``path``, one line each, creating its directory if needed.

    For a directory lofn owns; inside a container's shared directory use
    :func:`write_new_lines`.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb", buffering=_BUFFER) as handle:
        handle.writelines(encode_lines(elements))


def write_new_lines(directory: str, name: str, elements: Iterable) -> None:
    """Stream elements to a new file ``name`` in ``directory``, which a container may write.

    The file and its directories are created without following links, and
    the file exclusively: whatever stands at ``name`` already makes it fail.
    """
    with _safefs.create(directory, name) as handle:
        handle.writelines(encode_lines(elements))


def _strip_newline(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return raw


def decode_text(raw: bytes, path: str, offset: int, partition: int | None) -> str:
    """``raw`` as UTF-8, or an :class:`OutputDecodeError` naming where it is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f" of partition {partition}" if partition is not None else ""
        raise OutputDecodeError(
            f"output {os.path.basename(path)}{where} is not valid UTF-8 at byte offset "
            f"{offset + exc.start}; use a binary mode for binary output") from exc


def read_lines(path: str, partition: int | None = None) -> Iterator[str]:
    """Yield the lines of a UTF-8 text file lazily, without line endings.

    Raises:
        OutputDecodeError: the file is not valid UTF-8 (names the byte offset).
    """
    with open(path, "rb", buffering=_BUFFER) as handle:
        yield from lines_of(handle, path, partition)


def lines_of(handle: BinaryIO, path: str, partition: int | None = None) -> Iterator[str]:
    """Yield the lines of the open binary file ``handle`` (named ``path`` in errors)."""
    offset = 0
    for raw in handle:
        yield decode_text(_strip_newline(raw), path, offset, partition)
        offset += len(raw)


def split_lines(data: bytes, name: str = "output") -> list[str]:
    """Split UTF-8 ``data`` into lines, as :func:`read_lines` does for a file."""
    text = decode_text(data, name, 0, None)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def check_file_name(name, what: str) -> str:
    """Check that ``name`` is a plain relative path inside the shared directory."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentType(f"{what} must be a non-empty file name, got {name!r}")
    normal = os.path.normpath(name)
    if os.path.isabs(name) or normal == ".." or normal.startswith("../") or normal == ".":
        raise InvalidArgument(
            f"{what} {name!r} must be a relative path inside the shared directory")
    return normal


class TaskDirectory:
    """A private temp directory for one container run, removed on exit.

    ``shared`` is mounted into the container; ``staging`` holds files the
    container must not see (reduce inputs before they are merged). In reuse
    mode ``shared`` is the worker's long-lived directory (made by
    :func:`reuse_directory`), emptied on entry and on exit instead of removed.
    Emptying and removal follow no link the container made.
    """

    def __init__(self, parent: str | None = None, prefix: str = "lofn-",
                 shared: str | None = None) -> None:
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix=prefix, dir=parent)
        self.staging = os.path.join(self.root, "staging")
        os.mkdir(self.staging)
        self._own_shared = shared is None
        self.shared = os.path.join(self.root, "shared") if shared is None else shared
        if shared is None:
            os.mkdir(self.shared)
        else:  # a long-lived directory lent to this task: it starts empty
            _safefs.empty(self.shared)

    def __enter__(self) -> TaskDirectory:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        if not self._own_shared:
            _safefs.empty(self.shared)
        _safefs.remove_tree(self.root, ignore_errors=True)


def reuse_directory(parent: str, prefix: str) -> str:
    """A new long-lived shared directory for a warm container, with a path no one can predict.

    It is ``shared`` inside a private (0700) ``mkdtemp`` directory: no other
    user of the host reaches it, even when it is opened to the container's
    user (mode 0777).
    """
    shared = os.path.join(tempfile.mkdtemp(prefix=prefix, dir=parent), "shared")
    os.mkdir(shared)
    return shared


class UDF:
    """Write partitions to files in the shared directory with a user function.

    The user function returns a dict mapping a file name (relative to the
    shared mountpoint) to its contents: ``bytes`` or ``str`` are written
    as they are; any other iterable is written one element per line.
    These files replace the default input file.

    Args:
        temporary_directory: the host directory mounted at the shared mountpoint.
        user_function: the ``map_udf`` or ``reduce_udf``.

    Keyword Args:
        partition: the partition, for :meth:`map_udf`.
        partition_1: the left block, for :meth:`reduce_udf`.
        partition_2: the right block, for :meth:`reduce_udf`.
        input_mode: ``'binary'`` for ``reduce_binary`` (accepted for
            compatibility; contents are written by their type).
    """

    def __init__(self, temporary_directory: str, user_function: Callable, *,
                 partition: Iterable = (), partition_1: object = None, partition_2: object = None,
                 input_mode: str | None = None) -> None:
        self.temporary_directory = temporary_directory
        self.user_function = user_function
        self.partition = partition
        self.partition_1 = partition_1
        self.partition_2 = partition_2
        self.mode = input_mode

    def write_temp_files(self, inner_partitions) -> list[str]:
        """Write each file the user function returned.

        Args:
            inner_partitions: dict of file name -> contents.

        Returns:
            The paths written.

        Raises:
            TypeError: not a dict, or contents that are neither bytes, str nor iterable.
            ValueError: a file name that is absolute or escapes the shared directory.
        """
        if not isinstance(inner_partitions, dict):
            raise InvalidArgumentType(
                "the user defined function must return a dict mapping file names to "
                f"contents, got {type(inner_partitions).__name__}")
        written = []
        for name, contents in inner_partitions.items():
            name = check_file_name(name, "UDF file name")
            if isinstance(contents, (bytes, bytearray, str)):
                with _safefs.create(self.temporary_directory, name) as handle:
                    handle.write(_encode(contents))
            elif hasattr(contents, "__iter__"):
                write_new_lines(self.temporary_directory, name, contents)
            else:
                raise InvalidArgumentType(
                    f"UDF contents for {name!r} must be bytes, str or an iterable of lines, "
                    f"got {type(contents).__name__}")
            written.append(os.path.join(self.temporary_directory, name))
        return written

    def map_udf(self) -> list[str]:
        """Call the user function on the partition (as a list) and write its files."""
        return self.write_temp_files(self.user_function(list(self.partition)))

    def reduce_udf(self) -> list[str]:
        """Call the user function on the two blocks and write its files."""
        return self.write_temp_files(self.user_function(self.partition_1, self.partition_2))


def handle_binary(origin_directory: str, destination_directory: str, input_path: str,
                  master_type: str, name: str | None = None, hdfs=None) -> str:
    """Move a container's binary output into the job's output directory.

    The file is renamed into place atomically, so a retried task replaces
    its earlier attempt's file instead of adding a second one (on HDFS the
    first stored file is kept instead). The container's temp directory is
    removed afterwards. Only a regular file is moved: a link, FIFO or
    anything else the container left raises
    :class:`~lofn._safefs.NotRegularFile`, and nothing is followed.

    Args:
        origin_directory: temp directory the container mounted.
        destination_directory: directory collecting every partition's output.
        input_path: the output file to move.
        master_type: ``'standalone'`` (local or standalone Spark) or ``'yarn'``.
        name: file name in the destination; a unique one if ``None``.
        hdfs: on YARN, the :class:`~lofn.hdfs_handler.HdfsConfig` to upload with.

    Returns:
        Path of the moved file.
    """
    if master_type != "standalone":
        from lofn import hdfs_handler
        return hdfs_handler.put_binary(origin_directory, destination_directory,
                                       input_path, name=name, config=hdfs)
    try:
        if name is None:
            handle, destination = tempfile.mkstemp(dir=destination_directory, prefix="part-")
            os.close(handle)
        else:
            destination = os.path.join(destination_directory, name)
        partial = f"{destination}.{os.getpid()}.partial"
        _safefs.move_out(origin_directory, input_path, partial)
        os.replace(partial, destination)
    finally:
        _safefs.remove_tree(origin_directory, ignore_errors=True)
    return destination


def read_back(shared_dir: str, output_file: str) -> Iterator[str]:
    """Yield the lines of ``output_file``, then remove ``shared_dir``.

    The directory is removed when the iterator is exhausted or closed. The
    file must be a regular file reached from ``shared_dir`` without links.
    """
    try:
        with _safefs.open_regular(shared_dir, output_file) as handle:
            yield from lines_of(handle, output_file)
    finally:
        _safefs.remove_tree(shared_dir, ignore_errors=True)


def read_binary(shared_dir: str, output_file: str) -> bytes:
    """Return the bytes of ``output_file`` (a regular file, as for :func:`read_back`),
    then remove ``shared_dir``."""
    try:
        with _safefs.open_regular(shared_dir, output_file) as handle:
            return handle.read()
    finally:
        _safefs.remove_tree(shared_dir, ignore_errors=True)
