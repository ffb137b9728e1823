"""Wrapper to execute docker containers as spark tasks."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

from pyspark.rdd import portable_hash

from lofn import _cache, _images, _options, _task, hdfs_handler
from lofn.docker_handler import PULL_POLICIES, ensure_image, get_client, validate_user_input
from lofn.errors import (
    DockerUnavailable,
    InvalidArgument,
    InvalidArgumentType,
    LofnError,
    from_spark_error,
)
from lofn.tmp_file_handler import check_file_name, split_lines

__all__ = ["DockerPipe"]

logger = logging.getLogger(__name__)

_COMMON = {"docker_options", "timeout", "sample", "sample_seed"}
_MAP = _COMMON | {"container_input_name", "container_output_name", "map_udf"}
_MAP_BINARY = _COMMON | {"container_input_name", "container_binary_output_name", "map_udf",
                         "hdfs_tempdir"}
_REDUCE = _COMMON | {"container_input_name", "container_output_name", "reduce_udf",
                     "max_fan_in"}
_PIPE = _COMMON | {"binary", "delimiter"}
_REDUCE_BY_KEY = _COMMON | {"container_input_name", "container_output_name", "key",
                             "num_partitions", "partition_func", "sort", "combiner"}
_REDUCE_BINARY = _COMMON | {"container_binary_input_1_name", "container_binary_input_2_name",
                            "container_binary_output_name", "reduce_udf"}
_DEFAULT_NAMES = {
    "container_input_name": "input.txt",
    "container_output_name": "output.txt",
    "container_binary_output_name": "output.bin",
    "container_binary_input_1_name": "input_1.bin",
    "container_binary_input_2_name": "input_2.bin",
}
PAIRWISE = 2
#: Default bound on how many blocks one ``reduce`` container merges at once.
MAX_FAN_IN = 32


def plan_fan_ins(count: int, parallelism: int, max_fan_in: int) -> list[int]:
    """Blocks merged per container in each round, until one block is left.

    The first round uses about as many containers as there are cores
    (``ceil(count / parallelism)`` blocks each); later rounds, which have
    about one block per core left, merge as many blocks as allowed at once,
    since a round costs a Spark stage and a container start. A merge takes
    never fewer than 2 blocks nor more than ``max_fan_in``; ``max_fan_in=2``
    gives the pairwise tree. A lone block still makes one round.
    """
    fan_ins: list[int] = []
    while count > 1 or not fan_ins:
        wanted = -(-count // max(parallelism, 1)) if not fan_ins else count
        fan_in = max(PAIRWISE, min(max_fan_in, wanted))
        fan_ins.append(fan_in)
        count = -(-count // fan_in)
    return fan_ins


def _check_kwargs(where: str, kwargs: dict, allowed: set[str]) -> None:
    unknown = set(kwargs) - allowed
    if unknown:
        raise InvalidArgumentType(f"{where}() got unexpected keyword arguments "
                                  f"{sorted(unknown)}; it accepts {sorted(allowed)}")


def _master_type(spark_configuration) -> tuple[str, str]:
    """Return (master URL, lofn master type) from a SparkConf or the active context."""
    master = None
    if spark_configuration is not None and hasattr(spark_configuration, "get"):
        master = spark_configuration.get("spark.master")
    if not master:
        from pyspark import SparkContext
        active = SparkContext._active_spark_context
        master = active.master if active is not None else "local[*]"
        logger.debug("no spark.master in the configuration; using %s", master)
    if master.startswith(("local", "spark://")):
        return master, "standalone"
    if master.startswith("yarn"):
        return master, "yarn"
    raise InvalidArgument(f"Spark master {master!r} is not supported by lofn; use local[...], "
                          "spark://HOST:PORT (standalone) or yarn")


def _check_timeout(timeout) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidArgument(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


@contextmanager
def _task_errors():
    """Re-raise a lofn error raised inside a Spark task as itself, on the driver."""
    try:
        yield
    except LofnError:
        raise
    except Exception as exc:
        failure = from_spark_error(exc)
        if failure is None:
            raise
        raise failure from exc


class DockerPipe:
    """Main entry point for lofn: run a Docker container per Spark partition.

    Args:
        spark_configuration: the Spark configuration, e.g. ``pyspark.SparkConf()``;
            its ``spark.master`` decides where binary outputs go.

    Keyword Args:
        temporary_directory_parent: absolute path of the parent directory for
            temp dirs and files on each executor. ``None`` (the default) uses
            ``TMPDIR``, ``TEMP``, ``TMP`` or the platform default. It is
            created if missing.
        shared_mountpoint: the directory inside each container where the
            task's temp directory is mounted (default ``'/shared/'``).
        volumes: user volumes mounted in every container, e.g. a reference
            genome: ``{'/host/dir': {'bind': '/container/dir', 'mode': 'ro'}}``.
            ``mode`` is ``'ro'`` (the default) or ``'rw'``. Host paths must be
            absolute; in local mode they must exist (elsewhere they are on the
            executor hosts, where the engine checks them). On YARN the keys are HDFS paths (files or
            directories): each is downloaded once per executor host and mounted
            as a directory; a ``rw`` volume gets a private copy per task.
        hdfs_url: the namenode's WebHDFS address (``http://namenode:9870``,
            ``;``-separated for HA) or an HdfsCLI alias. Found in the Spark
            configuration or ``HADOOP_CONF_DIR`` if not given; only needed on YARN.
        hdfs_user: the HDFS user (default: the driver's user).
        hdfs_timeout: seconds, or ``(connect, read)``, for each WebHDFS request
            (default ``(10, 300)``).
        timeout: seconds each container may run before it is killed and the
            task fails with :class:`~lofn.errors.ContainerTimeout` (default:
            no limit). Each method also takes ``timeout`` for its own containers.
        image_pull: ``'never'`` (default: a missing image fails with
            :class:`~lofn.errors.ImageUnavailable`), ``'missing'`` (pull where
            absent) or ``'always'`` (pull once per Python worker).
        ship_image: ``True`` to run the driver's copy of each image without a
            registry: it is saved on the driver (``docker save``), sent with
            Spark's ``addFile`` and loaded (``docker load``) on each executor
            host whose engine lacks that image ID, once per host. Needs the
            image on the driver's engine; leave ``image_pull`` at ``'never'``.
            See :doc:`images`.
        reuse_containers: run each partition with ``docker exec`` in a
            long-lived container per Python worker (and per image, mounts and
            options) instead of a fresh container, saving the start-up of one
            container per partition. The shared directory is emptied between
            partitions; anything else a tool leaves in the container (files
            outside ``/shared/``, background processes) is seen by the next
            partition, so do not use it for such tools. A container is
            discarded after a failure; all are removed when the worker ends.
        result_cache: a directory (absolute, shared by all executors) or an
            ``hdfs:///path`` where the output of each container that works on
            files (every method but :meth:`pipe`) is kept, keyed by
            the image ID, command, options, mounts and the exact input files.
            A rerun of an unchanged partition (after a failure, or after new
            input was appended) restores the output and starts no container.
            Volume contents are not part of the key: use a new location after
            changing a reference.

    Raises:
        TypeError: an unknown keyword argument, or ``volumes`` not a dict.
        ValueError: bad volumes, a relative path, or an unsupported master.
    """

    def __init__(self, spark_configuration, **kwargs) -> None:
        _check_kwargs("DockerPipe", kwargs,
                      {"temporary_directory_parent", "shared_mountpoint", "volumes",
                       "hdfs_url", "hdfs_user", "hdfs_timeout", "timeout", "image_pull",
                       "reuse_containers", "result_cache", "ship_image"})
        self.master, self.master_type = _master_type(spark_configuration)
        self._spark_configuration = spark_configuration
        self._hdfs_options = (kwargs.get("hdfs_url"), kwargs.get("hdfs_user"),
                              kwargs.get("hdfs_timeout"))
        self._hdfs: hdfs_handler.HdfsConfig | None = None
        self.timeout = _check_timeout(kwargs.get("timeout"))
        self.reuse_containers = bool(kwargs.get("reuse_containers", False))
        self.result_cache = kwargs.get("result_cache")
        if self.result_cache is not None and not (
                isinstance(self.result_cache, str)
                and (self.result_cache.startswith("/") or self.result_cache.startswith("hdfs:///"))):
            raise InvalidArgument(f"result_cache must be an absolute directory or an "
                                  f"hdfs:///path, got {self.result_cache!r}")
        self.image_pull = kwargs.get("image_pull", "never")
        if self.image_pull not in PULL_POLICIES:
            raise InvalidArgument(f"image_pull {self.image_pull!r} is not one of "
                                  f"{', '.join(map(repr, PULL_POLICIES))}")
        self.ship_image = bool(kwargs.get("ship_image", False))  # images without a registry
        if self.ship_image and self.image_pull != "never":
            raise InvalidArgument(f"ship_image=True runs the driver's image and pulls nothing: "
                                  f"leave image_pull at 'never', not {self.image_pull!r}")
        self.shared_mountpoint = kwargs.get("shared_mountpoint") or "/shared/"
        if not isinstance(self.shared_mountpoint, str) or not self.shared_mountpoint.startswith("/"):
            raise InvalidArgument(f"shared_mountpoint must be an absolute container path, "
                                  f"got {self.shared_mountpoint!r}")
        self.temporary_directory_parent = kwargs.get("temporary_directory_parent")
        parent = self.temporary_directory_parent
        if parent is not None and (not isinstance(parent, str) or not os.path.isabs(parent)):
            raise InvalidArgument(f"temporary_directory_parent must be an absolute path, "
                                  f"got {parent!r}")
        if self._driver_is_executor:
            self._check_temp_parent()
        volumes = kwargs.get("volumes")
        self.user_volume = (validate_user_input(volumes, self.shared_mountpoint,
                                                check_host_paths=self._driver_is_executor)
                            if volumes is not None else {})
        if self.master_type == "yarn":
            for path in self.user_volume:
                if self.hdfs.call(f"check volume {path!r}", "status", path, strict=False) is None:
                    raise InvalidArgument(f"volume HDFS path {path!r} does not exist "
                                          f"(WebHDFS {self.hdfs.url})")

    @property
    def hdfs(self) -> hdfs_handler.HdfsConfig:
        """How this pipe reaches HDFS, found on first use (see :mod:`lofn.hdfs_handler`)."""
        if self._hdfs is None:
            url, user, timeout = self._hdfs_options
            self._hdfs = hdfs_handler.resolve(url, self._spark_configuration, user, timeout)
        return self._hdfs

    # -- driver-side preparation ---------------------------------------------------

    def _check_temp_parent(self) -> None:
        parent = self.temporary_directory_parent or tempfile.gettempdir()
        try:
            os.makedirs(parent, exist_ok=True)
            tempfile.TemporaryDirectory(dir=parent).cleanup()
        except OSError as exc:
            raise _task.temp_error(exc, f"temporary_directory_parent {parent!r} cannot be "
                                        "used") from exc

    @property
    def _driver_is_executor(self) -> bool:
        """In local mode this host runs the tasks, so their paths and engine can be checked here."""
        return self.master.startswith("local")

    def _preflight(self, image_name: str) -> None:
        """In local mode the driver's engine is the executors': check the image before any task."""
        if not self._driver_is_executor:
            return
        try:
            client = get_client()
        except DockerUnavailable:
            logger.debug("no Docker engine answers the driver; tasks will report it")
            return
        ensure_image(client, image_name, self.image_pull)

    def _job(self, rdd, image_name, command, kwargs: dict,
             binary: bool = False) -> _task.ContainerJob:
        if not hasattr(rdd, "mapPartitions"):
            raise InvalidArgumentType(f"rdd must be a Spark RDD, got {type(rdd).__name__}")
        for name, value in (("image_name", image_name), ("command", command)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgument(f"{name} must be a non-empty string, got {value!r}")
        options = _options.parse_docker_options(kwargs.get("docker_options"))
        timeout = _check_timeout(kwargs.get("timeout", self.timeout))
        if not self.ship_image:  # with ship_image, ship() below checks the driver's image
            self._preflight(image_name)
        extra = options.get("volumes", {})
        if extra:
            options["volumes"] = validate_user_input(extra, self.shared_mountpoint,
                                                     check_host_paths=self._driver_is_executor)
        shipment = (_images.ship(rdd.context, image_name, self.temporary_directory_parent,
                                 save=not self._driver_is_executor)
                    if self.ship_image else None)  # images without a registry
        on_hdfs = self.master_type == "yarn"
        return _task.ContainerJob(
            image=image_name, command=command, shared_mountpoint=self.shared_mountpoint,
            volumes={} if on_hdfs else self.user_volume, options=options,
            temporary_directory_parent=self.temporary_directory_parent,
            app=rdd.context.applicationId,
            hdfs_volumes=self.user_volume if on_hdfs else None,
            hdfs=self.hdfs if on_hdfs and (self.user_volume or binary) else None,
            timeout=timeout, pull=self.image_pull, reuse=self.reuse_containers,
            cache=self._cache(), shipment=shipment)

    def _cache(self) -> _cache.ResultCache | None:
        if self.result_cache is None:
            return None
        on_hdfs = self.result_cache.startswith("hdfs:")
        return _cache.ResultCache(self.result_cache, self.hdfs if on_hdfs else None)

    @staticmethod
    def _sampled(rdd, kwargs: dict):
        """``rdd``, or the reproducible sample of it that ``sample``/``sample_seed`` ask for."""
        fraction = kwargs.get("sample")
        if fraction is None:
            return rdd
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1:
            raise InvalidArgument(f"sample must be a fraction in (0, 1], got {fraction!r}")
        seed = kwargs.get("sample_seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgument(f"sample_seed must be a whole number, got {seed!r}")
        return rdd if fraction == 1 else rdd.sample(False, fraction, seed)

    @staticmethod
    def _name(kwargs: dict, key: str) -> str:
        return check_file_name(kwargs.get(key, _DEFAULT_NAMES[key]), key)

    @staticmethod
    def _udf(kwargs: dict, key: str) -> Callable | None:
        udf = kwargs.get(key)
        if udf is not None and not callable(udf):
            raise InvalidArgumentType(f"{key} must be a function, got {udf!r}")
        return udf

    # -- public API -----------------------------------------------------------------

    def map(self, rdd, image_name: str, command: str, **kwargs):
        """Run a container over each partition and return its output lines as an RDD.

        Each partition is streamed to ``container_input_name`` in the shared
        directory (or written by ``map_udf``), the container runs ``command``
        with ``sh -c``, and the lines of ``container_output_name`` become the
        new partition. Empty partitions start no container and stay empty.

        Args:
            rdd: a Spark RDD; each element is written as one line.
            image_name: Docker image name.
            command: command run by ``sh -c`` in the container, exactly as written.

        Keyword Args:
            container_input_name: input file in the shared mountpoint (default ``'input.txt'``).
            container_output_name: output file in the shared mountpoint (default ``'output.txt'``).
            docker_options: additional ``docker run`` flags, as a list.
            map_udf: function taking the partition (as a list) and returning a
                dict of file name -> contents (bytes, str, or an iterable of
                lines); the files replace the input file.
            timeout: seconds each container may run (overrides the pipe's).
            sample: run on a random fraction of the input only (e.g. ``0.01``),
                to try a pipeline quickly; every method takes it.
            sample_seed: the sample's seed (default 0): the same seed gives
                the same sample.

        Returns:
            The transformed RDD (lazy, like any Spark transformation).
        """
        _check_kwargs("map", kwargs, _MAP)
        job = self._job(rdd, image_name, command, kwargs)
        rdd = self._sampled(rdd, kwargs)
        return rdd.mapPartitions(partial(
            _task.map_partition, job, self._name(kwargs, "container_input_name"),
            self._name(kwargs, "container_output_name"), self._udf(kwargs, "map_udf")))

    def pipe(self, rdd, image_name: str, command: str, **kwargs):
        """Stream each partition through a container's stdin and stdout (no temp files).

        Like Spark's ``rdd.pipe`` with the tool in a container: each element
        is written to the command's stdin followed by ``delimiter``, and
        its stdout, split at ``delimiter``, becomes the new partition. The
        same cleanup, errors (exit code and stderr tail) and ``timeout`` apply
        as for :meth:`map`; empty partitions start no container.

        Args:
            rdd: a Spark RDD of text (or, with ``binary=True``, of bytes).
            image_name: Docker image name.
            command: command run by ``sh -c``; reads stdin, writes stdout.

        Keyword Args:
            binary: records are ``bytes``, passed through unchanged (default
                ``False``: text, UTF-8).
            delimiter: what ends each record: ``'\\n'`` for text by default;
                ``'\\0'`` (or ``b'\\0'``) for records holding newlines. For
                binary mode the default is ``None``: the elements are written
                back to back, and each partition's whole stdout is one record.
            docker_options, timeout, sample, sample_seed: as for :meth:`map`.

        Returns:
            The transformed RDD.
        """
        _check_kwargs("pipe", kwargs, _PIPE)
        job = self._job(rdd, image_name, command, kwargs)
        rdd = self._sampled(rdd, kwargs)
        binary = bool(kwargs.get("binary", False))
        delimiter = kwargs.get("delimiter", None if binary else "\n")
        if isinstance(delimiter, str):
            delimiter = delimiter.encode("utf-8")
        if delimiter is not None and (not isinstance(delimiter, bytes) or not delimiter):
            raise InvalidArgument(f"delimiter must be a non-empty str or bytes, got {delimiter!r}")
        if delimiter is None and not binary:
            raise InvalidArgument("text mode needs a delimiter; use binary=True for whole streams")
        return rdd.mapPartitions(partial(_task.stream_partition, job, binary, delimiter))

    @contextmanager
    def map_binary(self, rdd, image_name: str, command: str, **kwargs) -> Iterator[str]:
        """Run a container over each partition and keep its binary output files.

        Used as a context manager: the job runs on entry, the block gets the
        directory holding one output file per non-empty partition
        (``part-00000.bin``, ... named by partition id; read it with
        ``sc.binaryFiles``), and the directory is removed on exit, also on error.
        A retried task replaces its partition's file, never adds a second one.

        On local and standalone masters the directory is made on the driver,
        under ``temporary_directory_parent``, and executors move their files
        into it: on a standalone cluster of several hosts that parent must be
        on a filesystem every node shares (NFS, say), as must user volumes.

        Args:
            rdd: a Spark RDD.
            image_name: Docker image name.
            command: command run by ``sh -c`` in the container.

        Keyword Args:
            container_input_name: input file in the shared mountpoint (default ``'input.txt'``).
            container_binary_output_name: output file (default ``'output.bin'``).
            docker_options: additional ``docker run`` flags, as a list.
            map_udf: as for :meth:`map`.
            hdfs_tempdir: on YARN, the HDFS directory under which a unique
                directory for the outputs is made (default
                ``/user/<user>/lofn_temp``).

        Yields:
            The directory path containing the output files.
        """
        _check_kwargs("map_binary", kwargs, _MAP_BINARY)
        job = self._job(rdd, image_name, command, kwargs, binary=True)
        rdd = self._sampled(rdd, kwargs)
        input_name = self._name(kwargs, "container_input_name")
        output_name = self._name(kwargs, "container_binary_output_name")
        udf = self._udf(kwargs, "map_udf")
        if self.master_type == "yarn":
            destination = hdfs_handler.binary_output_directory(
                kwargs.get("hdfs_tempdir"), self.hdfs, app=rdd.context.applicationId)
            remove = partial(hdfs_handler.remove_directory, config=self.hdfs)
        else:
            parent = self.temporary_directory_parent
            if parent:
                os.makedirs(parent, exist_ok=True)
            destination = tempfile.mkdtemp(prefix="lofn-binary-", dir=parent)
            remove = partial(shutil.rmtree, ignore_errors=True)
        try:
            with _task_errors():
                rdd.mapPartitions(partial(_task.map_binary_partition, job, input_name,
                                          output_name, udf, destination,
                                          self.master_type)).count()
            yield destination
        finally:
            try:
                remove(destination)
            except Exception:  # noqa: BLE001 - must not hide the error in flight
                if sys.exc_info()[0] is None:
                    raise
                logger.warning("could not remove %s after an error", destination, exc_info=True)

    def reduce(self, rdd, image_name: str, command: str, **kwargs) -> list[str]:
        """Merge all partitions into one result with a container, in a tree on the executors.

        Each non-empty partition is one block. Each merge appends its blocks
        (in partition order) into ``container_input_name`` and runs
        ``command``; its output is the merged block. The first round runs
        about as many containers as Spark has cores, later ones merge what
        is left at once, each container merging up to ``max_fan_in`` blocks,
        until one block is left: with ``max_fan_in=2``
        this is a pairwise tree of about log2(P) rounds. If the command is
        associative and commutative, the result is what one container over
        all the data gives. A single non-empty partition still goes through
        the command once.

        Args:
            rdd: a Spark RDD, e.g. the output of :meth:`map`.
            image_name: Docker image name.
            command: command run by ``sh -c`` in the container.

        Keyword Args:
            container_input_name: input file in the shared mountpoint (default ``'input.txt'``).
            container_output_name: output file (default ``'output.txt'``).
            docker_options: additional ``docker run`` flags, as a list.
            reduce_udf: function taking the two blocks (lists of lines) and
                returning a dict of file name -> contents, written instead of
                the appended input. Merges are then pairwise, and a lone
                block is passed on unmerged.
            max_fan_in: the most blocks one container merges (default 32);
                bounds the size of each container's input.

        Returns:
            The lines of the final output file.

        Raises:
            ValueError: every partition is empty.
            DockerFailure: a container failed.
        """
        _check_kwargs("reduce", kwargs, _REDUCE)
        job = self._job(rdd, image_name, command, kwargs)
        rdd = self._sampled(rdd, kwargs)
        udf = self._udf(kwargs, "reduce_udf")
        output_name = self._name(kwargs, "container_output_name")
        max_fan_in = kwargs.get("max_fan_in", MAX_FAN_IN)
        if isinstance(max_fan_in, bool) or not isinstance(max_fan_in, int) or max_fan_in < 2:
            raise InvalidArgument(f"max_fan_in must be a whole number >= 2, got {max_fan_in!r}")
        if udf is None:
            merge = _task.Merge(job, "append", (self._name(kwargs, "container_input_name"),),
                                output_name)
        else:
            merge, max_fan_in = _task.Merge(job, "text_udf", (), output_name, udf), PAIRWISE
        fan_ins = plan_fan_ins(rdd.getNumPartitions(), rdd.context.defaultParallelism,
                               max_fan_in)
        blocks = rdd.mapPartitionsWithIndex(partial(_task.text_blocks, fan_ins[0]))
        return split_lines(self._tree(blocks, rdd.getNumPartitions(), merge, fan_ins))

    def reduce_by_key(self, rdd, image_name: str, command: str, **kwargs):
        """Shuffle records by key, then run the reduce container once per shuffled partition.

        This is the MapReduce shuffle of Hadoop Streaming and Disco: every
        record with a given key lands in the same partition, and each
        partition goes through ``command`` (as in :meth:`map`) in parallel.
        An optional ``combiner`` command first runs on each input partition,
        in the same image, to shrink it before the shuffle.

        Args:
            rdd: an RDD of text records (lines).
            image_name: Docker image name.
            command: the reduce command, run by ``sh -c`` on each shuffled partition.

        Keyword Args:
            key: function from a record to its key; default: the text before
                the first tab.
            num_partitions: partitions after the shuffle (default: as many as ``rdd``).
            partition_func: function from a key to a partition number
                (taken modulo ``num_partitions``); default: Spark's hash.
            sort: sort the records of each partition by key, so equal keys
                are consecutive and ascending (default ``False``).
            combiner: a command run on each input partition before the shuffle.
            container_input_name, container_output_name, docker_options,
            timeout, sample, sample_seed: as for :meth:`map`.

        Returns:
            An RDD of the reduce command's output lines.
        """
        _check_kwargs("reduce_by_key", kwargs, _REDUCE_BY_KEY)
        job = self._job(rdd, image_name, command, kwargs)
        rdd = self._sampled(rdd, kwargs)
        input_name = self._name(kwargs, "container_input_name")
        output_name = self._name(kwargs, "container_output_name")
        key = kwargs.get("key") or _task.first_field
        partition_func = kwargs.get("partition_func") or portable_hash
        for name, function in (("key", key), ("partition_func", partition_func)):
            if not callable(function):
                raise InvalidArgumentType(f"{name} must be a function, got {function!r}")
        count = kwargs.get("num_partitions")
        count = rdd.getNumPartitions() if count is None else count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidArgument(f"num_partitions must be a positive whole number, got {count!r}")
        if kwargs.get("combiner") is not None:
            combiner = self._job(rdd, image_name, kwargs["combiner"], kwargs)
            rdd = rdd.mapPartitions(partial(_task.map_partition, combiner, input_name,
                                            output_name, None))
        keyed = rdd.map(partial(_task.with_key, key))
        if kwargs.get("sort"):
            shuffled = keyed.repartitionAndSortWithinPartitions(count, partition_func)
        else:
            shuffled = keyed.partitionBy(count, partition_func)
        return shuffled.values().mapPartitions(partial(
            _task.map_partition, job, input_name, output_name, None))

    def reduce_binary(self, rdd, image_name: str, command: str, **kwargs) -> bytes:
        """Merge binary files pairwise with a container, in a tree on the executors.

        Each element of ``rdd`` (``bytes``, or the ``(path, bytes)`` pairs of
        ``sc.binaryFiles``) is one block. Each merge writes its two blocks to
        ``container_binary_input_1_name`` and ``container_binary_input_2_name``
        and runs ``command``, which writes ``container_binary_output_name``.
        The elements are counted first (one extra pass over the input).

        Args:
            rdd: a Spark RDD of binary contents.
            image_name: Docker image name.
            command: command run by ``sh -c`` in the container.

        Keyword Args:
            container_binary_input_1_name: left input (default ``'input_1.bin'``).
            container_binary_input_2_name: right input (default ``'input_2.bin'``).
            container_binary_output_name: output (default ``'output.bin'``).
            docker_options: additional ``docker run`` flags, as a list.
            reduce_udf: function taking the two blocks (bytes) and returning a
                dict of file name -> contents.

        Returns:
            The bytes of the final output file.
        """
        _check_kwargs("reduce_binary", kwargs, _REDUCE_BINARY)
        job = self._job(rdd, image_name, command, kwargs)
        rdd = self._sampled(rdd, kwargs)
        udf = self._udf(kwargs, "reduce_udf")
        output_name = self._name(kwargs, "container_binary_output_name")
        if udf is None:
            names = (self._name(kwargs, "container_binary_input_1_name"),
                     self._name(kwargs, "container_binary_input_2_name"))
            merge = _task.Merge(job, "pair", names, output_name)
        else:
            merge = _task.Merge(job, "binary_udf", (), output_name, udf)
        with _task_errors():
            counts = rdd.mapPartitions(_task.count).collect()
        offsets = [sum(counts[:index]) for index in range(len(counts))]
        fan_ins = plan_fan_ins(sum(counts), 1, PAIRWISE)
        blocks = rdd.mapPartitionsWithIndex(partial(_task.binary_blocks, PAIRWISE, offsets))
        return self._tree(blocks, sum(counts), merge, fan_ins)

    @staticmethod
    def _tree(blocks, count: int, merge: _task.Merge, fan_ins: list[int]) -> bytes:
        """Merge ``count`` blocks in rounds (``fan_ins[r]`` blocks per container); return the last."""
        if count == 0:
            raise InvalidArgument("Can not reduce() empty RDD")
        for round_number, fan_in in enumerate(fan_ins):
            count = -(-count // fan_in)
            final = round_number == len(fan_ins) - 1
            next_fan_in = 1 if final else fan_ins[round_number + 1]
            blocks = blocks.partitionBy(count, _task.identity).mapPartitionsWithIndex(
                partial(_task.merge_partition, merge, final, next_fan_in))
        with _task_errors():
            records = blocks.values().collect()
        if not records:
            raise InvalidArgument("Can not reduce() empty RDD: every partition is empty")
        return b"".join(chunk for _, _, _, chunk in sorted(records, key=lambda r: r[2]))
