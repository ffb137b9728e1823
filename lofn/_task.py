"""Code that runs inside Spark tasks, on the executors.

A reduce treats each partition (for ``reduce_binary``, each file) as one
block and merges blocks in a tree, on the executors: in a round merging
``fan_in`` blocks per container, block ``b`` goes to merge partition
``b // fan_in``, each merge partition runs one container over its blocks,
and its output becomes block ``index`` of the next round. Blocks travel
through Spark's shuffle as records
``(target, (block, reduced, seq, chunk))`` of at most ``CHUNK`` bytes, so
no record holds a whole partition.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from lofn import _engine, _safefs, _trace
from lofn._cache import ResultCache, run_key
from lofn._images import Shipment
from lofn._reaper import temp_prefix, watch
from lofn._stream import (
    encode_records,
    run_streaming,
    run_streaming_warm,
    split_records,
    text_records,
)
from lofn._trace import TraceLog
from lofn.docker_handler import (
    ContainerSpec,
    ensure_image,
    get_client,
    run_container,
    run_in_warm_container,
)
from lofn.errors import (
    LofnError,
    MissingOutputError,
    TemporaryDirectoryError,
    UnsafeOutputError,
)
from lofn.hdfs_handler import HdfsConfig, setup_user_volumes_from_hdfs
from lofn.resources import Sizing
from lofn.tmp_file_handler import (
    UDF,
    TaskDirectory,
    encode_lines,
    handle_binary,
    lines_of,
    read_lines,
    reuse_directory,
    write_new_lines,
)

CHUNK = 1 << 20

_EMPTY = object()
# reuse mode: this worker's long-lived shared directory per warm-container digest
_reuse_directories: dict[tuple[int, str], str] = {}


def _task_ids() -> tuple[int, int, int]:
    """(stage, partition, attempt) of the running Spark task; zeros outside Spark."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return 0, 0, 0
    return context.stageId(), context.partitionId(), context.attemptNumber()


def _peek(iterator: Iterator) -> Iterator | None:
    """Return an iterator over the same elements, or ``None`` if there are none."""
    iterator = iter(iterator)  # PySpark passes a range object for parallelize(range(...))
    first = next(iterator, _EMPTY)
    if first is _EMPTY:
        return None

    def chained():
        yield first
        yield from iterator
    return chained()


@dataclass(frozen=True)
class ContainerJob:
    """How to run the container for one task; built on the driver, pickled to tasks."""

    image: str
    command: str
    shared_mountpoint: str
    volumes: dict
    options: dict
    temporary_directory_parent: str | None
    app: str
    hdfs_volumes: dict | None = None
    hdfs: HdfsConfig | None = None
    timeout: float | None = None
    pull: str = "never"
    reuse: bool = False
    cache: ResultCache | None = None
    shipment: Shipment | None = None  # ship_image: the driver's saved image
    trace: TraceLog | None = None
    method: str = "map"  # the DockerPipe method, for the trace
    sizing: Sizing | None = None  # resources: limits from each task's Spark resources

    def task_directory(self) -> TaskDirectory:
        """A new temp directory for this task, known to the worker's watchdog.

        In reuse mode its shared directory is the worker's long-lived one for
        this job's container, emptied for the task.
        """
        parent = self.temporary_directory_parent or tempfile.gettempdir()
        try:
            os.makedirs(parent, exist_ok=True)
            watch(parent)
            shared = self._reuse_directory(parent) if self.reuse else None
            return TaskDirectory(parent, prefix=temp_prefix(), shared=shared)
        except OSError as exc:
            raise temp_error(exc, f"cannot create a temp directory in {parent!r}") from exc

    def _reuse_directory(self, parent: str) -> str:
        """This worker's shared directory for this job's warm container, made on first use.

        Its name is random (``mkdtemp``), so nothing can create it first.
        """
        digest = hashlib.sha256(repr((self.image, self.shared_mountpoint, self.volumes,
                                      self.hdfs_volumes, self.options, parent)).encode())
        key = (os.getpid(), digest.hexdigest())
        shared = _reuse_directories.get(key)
        if shared is None or not os.path.isdir(shared):
            shared = _reuse_directories[key] = reuse_directory(parent, f"{temp_prefix()}reuse-")
        return shared

    @contextmanager
    def traced(self, bytes_in: int | None = None) -> Iterator[dict | None]:
        """The trace record of the container attempt the block runs (``None`` untraced)."""
        with _trace.attempt(self.trace, _task_ids(), app=self.app, method=self.method,
                            mode="reuse" if self.reuse else "fresh", image=self.image,
                            command=self.command, bytes_in=bytes_in) as record:
            yield record

    def run(self, task: TaskDirectory, output_name: str) -> None:
        """Run the container over the files in ``task.shared``, or restore its cached result."""
        bytes_in = _trace.directory_bytes(task.shared) if self.trace is not None else None
        with self.traced(bytes_in) as record:
            self._run_or_restore(task, output_name, record)
            if record is not None:  # a missing or unsafe output fails the attempt
                if record["mode"] != "cache":
                    record["exit_code"] = 0
                with self.open_output(task, output_name) as output:
                    record["bytes_out"] = os.fstat(output.fileno()).st_size

    def _run_or_restore(self, task: TaskDirectory, output_name: str,
                        record: dict | None) -> None:
        cache, key = self.cache, None
        if cache is not None:
            client = get_client()
            self._ensure_shipped()
            with _engine.in_flight(_task_ids()[1], "looking up the image's ID"):
                ensure_image(client, self.image, self.pull)
                image_id = str(client.images.get(self.image).id)
            key = run_key(image_id, self.command, self.options,
                          {"local": self.volumes, "hdfs": self.hdfs_volumes}, output_name,
                          task.shared)
            if cache.restore(key, task.shared, output_name):
                if record is not None:
                    record.update(mode="cache", image_id=image_id)
                return
        with self.mounted_volumes() as volumes:
            self._run(task, volumes, record)
        if cache is not None and key is not None:
            with self.open_output(task, output_name) as output:
                cache.store(key, output)

    @contextmanager
    def mounted_volumes(self) -> Iterator[dict]:
        """The user volumes as local host paths, HDFS ones staged on this host."""
        if not self.hdfs_volumes:
            yield dict(self.volumes)
            return
        with setup_user_volumes_from_hdfs(
                self.hdfs_volumes, hdfs=self.hdfs,
                temporary_directory_parent=self.temporary_directory_parent) as local:
            yield {**self.volumes, **local}

    def spec(self, mounts: dict, unique: str, record: dict | None = None) -> ContainerSpec:
        """The container for the running task; ``unique`` starts its name.

        The container's run fills in ``record``, the attempt's trace record, if any.

        With ``ship_image``, first makes sure this host's engine has the driver's image.
        """
        stage, partition, attempt = _task_ids()
        self._ensure_shipped()
        options, limits = self.options, None
        if self.sizing is not None:
            from pyspark import TaskContext

            limits = self.sizing.limits(TaskContext.get())
            options = {**limits.create_options(), **options}  # docker_options win
            if record is not None:
                record["limits"] = limits.record()
        if self.reuse:  # one container serves many tasks: no task in its name or labels
            labels, name = {"lofn.app": self.app}, None
        else:
            labels = {"lofn.app": self.app, "lofn.stage": str(stage),
                      "lofn.partition": str(partition), "lofn.attempt": str(attempt)}
            name = f"{unique.replace('_', '')}-s{stage}-p{partition}-a{attempt}"
        return ContainerSpec(self.image, self.command, volumes=mounts, options=options,
                             labels=labels, name=name, partition=partition,
                             timeout=self.timeout, pull=self.pull, record=record, limits=limits)

    def _ensure_shipped(self) -> None:
        """With ``ship_image``: load the driver's image on this host if its engine lacks it."""
        if self.shipment is not None:
            partition = _task_ids()[1]
            with _engine.in_flight(partition, "loading the driver's image"):
                self.shipment.ensure(get_client(), self.temporary_directory_parent, partition)

    def _run(self, task: TaskDirectory, volumes: dict, record: dict | None) -> None:
        mounts = {task.shared: {"bind": self.shared_mountpoint, "mode": "rw"}, **volumes}
        if "user" in self.options:
            os.chmod(task.shared, 0o777)  # the container's user is not ours
        spec = self.spec(mounts, os.path.basename(task.root), record)
        (run_in_warm_container if self.reuse else run_container)(spec)

    @contextmanager
    def output_errors(self, task: TaskDirectory, name: str) -> Iterator[None]:
        """Turn a missing or non-regular output ``name`` into the lofn error that says so."""
        path = os.path.join(task.shared, name)
        try:
            yield
        except (_safefs.MissingFile, _safefs.NotRegularFile) as exc:
            where = (f"{os.path.join(self.shared_mountpoint, name)} (host "
                     f"{socket.gethostname()}:{path})")
            fields: dict[str, Any] = {"image": self.image, "command": self.command,
                                      "partition": _task_ids()[1]}
            if isinstance(exc, _safefs.MissingFile):
                raise MissingOutputError(f"container exited 0 but did not write {where}",
                                         **fields) from exc
            what = exc.kind + (f" to {exc.target!r}" if exc.target is not None else "")
            problem = (f"is {what}, not a regular file" if exc.path == path else
                       f"lies behind {exc.path}, which is {what}")
            raise UnsafeOutputError(
                f"output {where} {problem}: the host refused to follow or read it",
                **fields) from exc

    def open_output(self, task: TaskDirectory, name: str) -> BinaryIO:
        """The container's output ``name``, opened if it is a regular file reached without links.

        Raises:
            MissingOutputError: the container did not write it.
            UnsafeOutputError: it is a link, FIFO, socket, device or directory.
        """
        with self.output_errors(task, name):
            return _safefs.open_regular(task.shared, name)

    def write_input(self, task: TaskDirectory, items: Iterator, input_name: str,
                    map_udf: Callable | None) -> None:
        """Write a partition's input files into the shared directory, exclusively."""
        try:
            if map_udf is not None:
                UDF(task.shared, map_udf, partition=items).map_udf()
            else:
                write_new_lines(task.shared, input_name, items)
        except OSError as exc:
            raise temp_error(exc, f"cannot write the input of partition {_task_ids()[1]} "
                                  f"in {task.shared!r}") from exc

    def run_on_partition(self, task: TaskDirectory, items: Iterator, input_name: str,
                         map_udf: Callable | None, output_name: str) -> BinaryIO:
        """Write a partition's inputs, run the container, return its output, opened."""
        self.write_input(task, items, input_name, map_udf)
        self.run(task, output_name)
        return self.open_output(task, output_name)


def temp_error(exc: OSError, what: str) -> TemporaryDirectoryError:
    """A :class:`TemporaryDirectoryError` saying what failed, where, and for whom."""
    hint = {28: "the disk is full", 13: "it is not writable by this user",
            2: "a parent directory is missing", 30: "the filesystem is read-only"}.get(
                exc.errno or 0, "")
    return TemporaryDirectoryError(
        exc.errno, f"{what} on host {socket.gethostname()} as uid {os.getuid()}: {exc.strerror}"
                   + (f" ({hint}; set temporary_directory_parent to a writable directory with "
                      "room)" if hint else ""))


def map_partition(job: ContainerJob, input_name: str, output_name: str,
                  map_udf: Callable | None, iterator: Iterator) -> Iterator[str]:
    """``mapPartitions`` body of ``DockerPipe.map``: yields the output's lines."""
    items = _peek(iterator)
    if items is None:
        return
    with job.task_directory() as task, \
            job.run_on_partition(task, items, input_name, map_udf, output_name) as output:
        yield from lines_of(output, output_name, _task_ids()[1])


def stream_partition(job: ContainerJob, binary: bool, delimiter: bytes | None,
                     iterator: Iterator):
    """``mapPartitions`` body of ``DockerPipe.pipe``: records through stdin and stdout."""
    items = _peek(iterator)
    if items is None:
        return
    watch(job.temporary_directory_parent or tempfile.gettempdir())  # the watchdog, for SIGKILL
    with job.mounted_volumes() as volumes, job.traced(0) as record:
        spec = job.spec(volumes, f"{temp_prefix()}stream-{uuid.uuid4().hex[:8]}", record)
        stream = run_streaming_warm if job.reuse else run_streaming
        stdout = stream(spec, _counted(encode_records(items, delimiter), record, "bytes_in"))
        try:
            chunks = _counted(stdout, record, "bytes_out")
            if binary or delimiter is None:
                yield from split_records(chunks, delimiter)
            else:
                yield from text_records(chunks, delimiter, spec.partition)
        finally:
            stdout.close()  # the container goes now, also after a decode error or a read cut short


def _counted(chunks: Iterable[bytes], record: dict | None, key: str) -> Iterator[bytes]:
    """``chunks``, their bytes added up in ``record[key]`` (if tracing)."""
    if record is None:
        yield from chunks
        return
    record[key] = record[key] or 0
    for chunk in chunks:
        record[key] += len(chunk)
        yield chunk


def map_binary_partition(job: ContainerJob, input_name: str, output_name: str,
                         map_udf: Callable | None, destination: str, master_type: str,
                         iterator: Iterator) -> Iterator[str]:
    """``mapPartitions`` body of ``DockerPipe.map_binary``: yields the stored file's path."""
    items = _peek(iterator)
    if items is None:
        return
    task = job.task_directory()
    try:
        job.write_input(task, items, input_name, map_udf)
        job.run(task, output_name)
        extension = os.path.splitext(output_name)[1]
        name = f"part-{_task_ids()[1]:05d}{extension}"
        # out of the container's reach first (in reuse mode task.shared is not in task.root)
        staged = os.path.join(task.staging, "output")
        with job.output_errors(task, output_name):
            _safefs.move_out(task.shared, output_name, staged)
        yield handle_binary(task.root, destination, staged, master_type, name=name,
                            hdfs=job.hdfs)
    finally:
        task.remove()


# ---------------------------------------------------------------------------
# tree reduce

def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        chunk = handle.read(CHUNK)
        yield chunk  # at least one record, so an empty block still counts
        while chunk:
            chunk = handle.read(CHUNK)
            if chunk:
                yield chunk


def _records(block: int, reduced: bool, fan_in: int, chunks: Iterable[bytes]):
    for seq, chunk in enumerate(chunks):
        yield block // fan_in, (block, reduced, seq, chunk)


def _rechunk(pieces: Iterable[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= CHUNK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def text_blocks(fan_in: int, index: int, iterator: Iterator):
    """Partition ``index`` becomes block ``index``; an empty partition is no block."""
    items = _peek(iterator)
    if items is None:
        return
    yield from _records(index, False, fan_in, _rechunk(encode_lines(items)))


def binary_blocks(fan_in: int, offsets: list[int], index: int, iterator: Iterator):
    """Each element (bytes, or a ``(path, bytes)`` pair from ``binaryFiles``) is a block."""
    for number, element in enumerate(iterator):
        data = element[1] if isinstance(element, tuple) else element
        if not isinstance(data, (bytes, bytearray)):
            raise LofnError(f"reduce_binary needs bytes or (path, bytes) elements, "
                            f"got {type(data).__name__}")
        chunks = [bytes(data[i:i + CHUNK]) for i in range(0, max(len(data), 1), CHUNK)]
        yield from _records(offsets[index] + number, False, fan_in, chunks)


@dataclass(frozen=True)
class Merge:
    """How a merge task turns its blocks into the container's input files.

    ``kind`` is ``'append'`` (blocks concatenated into ``names[0]``),
    ``'pair'`` (two blocks as files ``names[0]`` and ``names[1]``),
    ``'numbered'`` (blocks as files named by the pattern ``names[0]``
    filled with 1, 2, ..., listed in the file ``names[1]`` by their
    container paths), ``'text_udf'`` (user function on the blocks' lines)
    or ``'binary_udf'`` (user function on the blocks' bytes).
    """

    job: ContainerJob
    kind: str
    names: tuple[str, ...]
    output_name: str
    udf: Callable | None = None

    @property
    def runs_single_block(self) -> bool:
        """Whether a lone block that was never merged still goes through the command."""
        return self.kind == "append"

    def prepare(self, task: TaskDirectory, paths: list[str]) -> None:
        """Write the blocks (files in ``task.staging``) as the container's inputs."""
        shared = task.shared
        if self.kind == "append":
            with _safefs.create(shared, self.names[0]) as target:
                for path in paths:
                    with open(path, "rb") as source:
                        shutil.copyfileobj(source, target, CHUNK)
        elif self.kind == "pair":
            for path, name in zip(paths, self.names, strict=True):
                _safefs.move_in(path, shared, name)
        elif self.kind == "numbered":
            pattern, listing = self.names
            names = [pattern.format(number) for number in range(1, len(paths) + 1)]
            for path, name in zip(paths, names, strict=True):
                _safefs.move_in(path, shared, name)
            with _safefs.create(shared, listing) as handle:
                handle.writelines(f"{posixpath.join(self.job.shared_mountpoint, name)}\n"
                                  .encode() for name in names)
        else:  # 'text_udf' or 'binary_udf': the user's function writes the inputs
            assert self.udf is not None
            text = self.kind == "text_udf"
            left, right = (list(read_lines(path)) if text else _read_bytes(path)
                           for path in paths)
            UDF(shared, self.udf, partition_1=left, partition_2=right,
                input_mode=None if text else "binary").reduce_udf()


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def merge_partition(merge: Merge, final: bool, next_fan_in: int, index: int,
                    iterator: Iterator):
    """One merge task of one round: receive blocks, run the container, emit block ``index``.

    The emitted records are keyed for the next round, ``index // next_fan_in``.
    """
    with merge.job.task_directory() as task:
        blocks: dict[int, list] = {}  # block -> [path, reduced, next seq]
        for _, (block, reduced, seq, chunk) in iterator:
            entry = blocks.setdefault(
                block, [os.path.join(task.staging, f"{block:09d}"), reduced, 0])
            if seq != entry[2]:
                raise LofnError(f"block {block} arrived out of order (chunk {seq}, "
                                f"expected {entry[2]})")
            with open(entry[0], "ab") as handle:
                handle.write(chunk)
            entry[2] += 1
        if not blocks:
            return
        order = sorted(blocks)
        if len(order) == 1:
            path, reduced, _ = blocks[order[0]]
            if reduced or not (final and merge.runs_single_block):
                block = open(path, "rb")  # noqa: SIM115 - _file_chunks closes it
                yield from _records(index, reduced, next_fan_in, _file_chunks(block))
                return
        merge.prepare(task, [blocks[block][0] for block in order])
        merge.job.run(task, merge.output_name)
        output = merge.job.open_output(task, merge.output_name)
        yield from _records(index, True, next_fan_in, _file_chunks(output))


def first_field(record) -> str:
    """The default key of ``reduce_by_key``: the text before the first tab."""
    return str(record).split("\t", 1)[0]


def with_key(key: Callable, record):
    """``(key(record), record)``, for the shuffle of ``reduce_by_key``."""
    return key(record), record


def identity(key: int) -> int:
    """Partition function for the merge rounds: block key ``k`` goes to partition ``k``."""
    return key


def count(iterator: Iterable) -> list[int]:
    """Number of elements in a partition."""
    return [sum(1 for _ in iterator)]
