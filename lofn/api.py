"""Wrapper to execute docker containers as spark tasks."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property, partial
from typing import TYPE_CHECKING, cast

from lofn import _cache, _images, _task, _trace, hdfs_handler
from lofn.docker_handler import ensure_image, get_client, validate_user_input
from lofn.errors import (
    DockerUnavailable,
    EmptyInput,
    InvalidArgument,
    InvalidArgumentType,
    LofnError,
    from_spark_error,
)
from lofn.options import BINARY_INPUTS_LIST, MAX_FAN_IN, CallOptions, Default, PipeOptions
from lofn.resources import Resources, Sizing
from lofn.resources import sizing as _sizing
from lofn.tmp_file_handler import split_lines

if TYPE_CHECKING:
    from pyspark import RDD, SparkConf, SparkContext
    from pyspark.resource import ResourceProfile

__all__ = ["DockerPipe"]

logger = logging.getLogger(__name__)

PAIRWISE = 2


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


def _master_type(spark_configuration) -> tuple[str, str]:
    """Return (master URL, lofn master type) from a SparkConf or the active context."""
    master: str = ""
    if spark_configuration is not None and hasattr(spark_configuration, "get"):
        master = spark_configuration.get("spark.master") or ""
    if not master:
        from pyspark import SparkContext
        active = SparkContext._active_spark_context
        master = str(active.master) if active is not None else "local[*]"
        logger.debug("no spark.master in the configuration; using %s", master)
    if master.startswith(("local", "spark://")):
        return master, "standalone"
    if master.startswith("yarn"):
        return master, "yarn"
    raise InvalidArgument(f"Spark master {master!r} is not supported by lofn; use local[...], "
                          "spark://HOST:PORT (standalone) or yarn")


def _profile(rdd: RDD) -> tuple[ResourceProfile | None, bool]:
    """(the RDD's resource profile or ``None``, whether that is known): a pair RDD of
    ``binaryFiles`` cannot say (its Java side lacks the call; its tasks still see it)."""
    from py4j.protocol import Py4JError

    try:
        return rdd.getResourceProfile(), True
    except Py4JError:
        return None, False


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
        reuse_containers: run each partition in a long-lived container per
            Python worker (and per image, mounts and options) instead of a
            fresh container, saving the start-up of one container per
            partition: lofn's runner, the container's main process, runs each
            partition's command with ``sh -c`` and then kills every process it
            started (:meth:`pipe` streams by an ``exec`` instead, and a
            container its command left a process in is not used again). The
            shared directory is emptied between partitions;
            anything else a tool leaves in the container (files outside
            ``/shared/``, caches) is seen by the next partition, so do not
            use it for such tools, nor for commands or data you do not
            trust when the container's user can write the image's files
            (root: see the security page). A container is
            discarded after a failure; all are removed when the worker ends.
        result_cache: a directory (absolute, shared by all executors) or an
            ``hdfs:///path`` where the output of each container that works on
            files (every method but :meth:`pipe`) is kept, keyed by
            the image ID, command, options, mounts and the exact input files.
            A rerun of an unchanged partition (after a failure, or after new
            input was appended) restores the output and starts no container.
            Volume contents are not part of the key: use a new location after
            changing a reference.
        trace: a directory (local: relative to the driver's working
            directory, and shared by the executors of a multi-host cluster;
            on YARN an ``hdfs:///path``) where every container attempt,
            failed and retried ones too, leaves one JSON record: task, host,
            image and its ID, times, exit status, peak memory and CPU time,
            bytes in and out, stderr tail on failure (see :doc:`trace`).
            ``lofn report DIR`` draws them. Made and tried on the driver:
            one that cannot be written raises
            :class:`~lofn.errors.InvalidArgument` naming it.
        resources: size every container by its Spark task (default: no
            limits but the process limit): ``True`` or a
            :class:`~lofn.resources.Resources` gives each container
            ``--cpus`` = the task's CPUs, a memory limit = the task's share
            of the executor's memory budget (grown on each retry after an
            :class:`~lofn.errors.OutOfMemory` if asked), and with
            ``gpus=True`` the GPUs Spark assigned the task. A method's
            ``docker_options`` ``--cpus``, ``--memory`` or ``--gpus`` wins.
            The formula and its inputs: :mod:`lofn.resources`.

    Raises:
        TypeError: an unknown keyword argument, or ``volumes`` not a dict.
        ValueError: bad volumes, a relative path, or an unsupported master.
    """

    def __init__(self, spark_configuration: SparkConf | None, *,
                 temporary_directory_parent: str | None = None,
                 shared_mountpoint: str = "/shared/",
                 volumes: dict | None = None,
                 hdfs_url: str | None = None,
                 hdfs_user: str | None = None,
                 hdfs_timeout: float | tuple[float, float] | None = None,
                 timeout: float | None = None,
                 image_pull: str = "never",
                 ship_image: bool = False,
                 reuse_containers: bool = False,
                 result_cache: str | None = None,
                 trace: str | None = None,
                 resources: bool | Resources | None = None) -> None:
        #: The checked keywords (a frozen :class:`~lofn.options.PipeOptions`).
        self.options = PipeOptions(
            temporary_directory_parent=temporary_directory_parent,
            shared_mountpoint=shared_mountpoint, volumes=volumes, hdfs_url=hdfs_url,
            hdfs_user=hdfs_user, hdfs_timeout=hdfs_timeout, timeout=timeout,
            image_pull=image_pull, ship_image=ship_image, reuse_containers=reuse_containers,
            result_cache=result_cache, trace=trace, resources=resources)
        self.master, self.master_type = _master_type(spark_configuration)
        self._spark_configuration = spark_configuration
        self._hdfs: hdfs_handler.HdfsConfig | None = None
        if self._driver_is_executor:
            self._check_temp_parent()
        self.volumes = (validate_user_input(self.options.volumes, self.options.shared_mountpoint,
                                            check_host_paths=self._driver_is_executor)
                        if self.options.volumes else {})
        if self.options.trace is not None:
            if self.master_type == "yarn" and not self.options.trace.startswith("hdfs:"):
                raise InvalidArgument(f"trace {self.options.trace!r} is a local directory, "
                                      "which YARN executors on other hosts cannot write where "
                                      "the driver reads it: give an hdfs:///path")
            assert self._trace is not None
            self._trace.check()
        if self.master_type == "yarn":
            for path in self.volumes:
                if self.hdfs.call(f"check volume {path!r}", "status", path, strict=False) is None:
                    raise InvalidArgument(f"volume HDFS path {path!r} does not exist "
                                          f"(WebHDFS {self.hdfs.url})")

    @property
    def hdfs(self) -> hdfs_handler.HdfsConfig:
        """How this pipe reaches HDFS, found on first use (see :mod:`lofn.hdfs_handler`)."""
        if self._hdfs is None:
            options = self.options
            self._hdfs = hdfs_handler.resolve(options.hdfs_url, self._spark_configuration,
                                              options.hdfs_user, options.hdfs_timeout)
        return self._hdfs

    # -- driver-side preparation ---------------------------------------------------

    def _check_temp_parent(self) -> None:
        parent = self.options.temporary_directory_parent or tempfile.gettempdir()
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
        """Check the image on the driver's engine, which is the executors' in local mode."""
        try:
            client = get_client()
        except DockerUnavailable:
            logger.debug("no Docker engine answers the driver; tasks will report it")
            return
        ensure_image(client, image_name, self.options.image_pull)

    def job(self, call: CallOptions, *, app: str, spark_context: SparkContext | None,
            local_checks: bool | None = None, binary: bool = False,
            method: str = "map", profile: ResourceProfile | None = None,
            profile_known: bool = True) -> _task.ContainerJob:
        """The container job of one call, which travels to its tasks: the one builder.

        Every method, :func:`~lofn.dataframe.map_dataframe` and the ``lofn``
        command line build their jobs here, from this pipe's options and the
        call's. ``call`` is already checked; this is where the side effects
        start: the image is checked on the driver's engine (in local mode),
        and with ``ship_image`` saved and added to Spark's files.

        Args:
            call: the call's checked options.
            app: the Spark application id (the containers' ``lofn.app`` label).
            spark_context: the context the job runs in; ``None`` in a Spark
                Connect session, which has none.
            local_checks: whether the driver's host is the executors' (its
                engine and paths can be checked here); default: a local master.
            binary: the job writes binary outputs (on YARN they go to HDFS).
            method: what the trace calls the job's containers (``'map'``, ``'reduce'``...).
            profile: the resource profile of the RDD the containers run on, if it
                has one (for ``resources``); ``profile_known=False`` if that
                cannot be told.
        """
        options = self.options
        local = self._driver_is_executor if local_checks is None else local_checks
        create = dict(call.create_options)
        if create.get("volumes"):
            create["volumes"] = validate_user_input(create["volumes"], options.shared_mountpoint,
                                                    check_host_paths=local)
        shipment = None
        if options.ship_image:  # images without a registry; ship() checks the driver's image
            if spark_context is None and not local:
                raise InvalidArgument("ship_image=True needs a SparkContext to send the image "
                                      "with (a classic SparkSession); under Spark Connect, "
                                      "load the image on every executor host instead")
            shipment = _images.ship(spark_context, call.image_name,
                                    options.temporary_directory_parent,
                                    save=not self._driver_is_executor)
        elif local:
            self._preflight(call.image_name)
        sizing = self._sizing(create, spark_context, profile, profile_known)
        on_hdfs = self.master_type == "yarn"
        return _task.ContainerJob(
            image=call.image_name, command=call.command,
            shared_mountpoint=options.shared_mountpoint,
            volumes={} if on_hdfs else self.volumes, options=create,
            temporary_directory_parent=options.temporary_directory_parent, app=app,
            hdfs_volumes=self.volumes if on_hdfs else None,
            hdfs=self.hdfs if on_hdfs and (self.volumes or binary) else None,
            timeout=options.timeout if isinstance(call.timeout, Default) else call.timeout,
            pull=options.image_pull, reuse=options.reuse_containers,
            cache=self._cache(), shipment=shipment, trace=self._trace, method=method,
            sizing=sizing)

    def _sizing(self, create: dict, spark_context: SparkContext | None,
                profile: ResourceProfile | None, profile_known: bool) -> Sizing | None:
        """``resources`` with the job's Spark configuration, checked (``None`` if not asked)."""
        resources = cast("Resources | None", self.options.resources)  # True became a Resources
        if resources is None:
            return None
        conf = spark_context.getConf() if spark_context is not None else (
            self._spark_configuration if hasattr(self._spark_configuration, "get") else None)
        # local[*]: the threads Spark runs, unless spark.default.parallelism hides them
        threads = (spark_context.defaultParallelism if self.master.startswith("local[*")
                   and spark_context is not None
                   and not (conf and conf.get("spark.default.parallelism")) else None)
        return _sizing(resources, conf, self.master, profile, create,
                       profile_known=profile_known, local_cores=threads)

    def _rdd_job(self, rdd: RDD, call: CallOptions, method: str,
                 binary: bool = False, after_shuffle: bool = False) -> _task.ContainerJob:
        """The job of a call on ``rdd``; ``after_shuffle``: its containers run in a later
        stage (a reduce's merges), under the default resource profile."""
        if not hasattr(rdd, "mapPartitions"):
            raise InvalidArgumentType(f"rdd must be a Spark RDD, got {type(rdd).__name__}")
        profile, known = ((None, True) if after_shuffle or not self.options.resources
                          else _profile(rdd))
        return self.job(call, app=rdd.context.applicationId, spark_context=rdd.context,
                        binary=binary, method=method, profile=profile, profile_known=known)

    @cached_property
    def _trace(self) -> _trace.TraceLog | None:
        location = self.options.trace
        if location is None:
            return None
        return _trace.TraceLog(location, self.hdfs if location.startswith("hdfs:") else None)

    def _cache(self) -> _cache.ResultCache | None:
        location = self.options.result_cache
        if location is None:
            return None
        return _cache.ResultCache(location, self.hdfs if location.startswith("hdfs:") else None)

    # -- public API -----------------------------------------------------------------

    def map(self, rdd: RDD, image_name: str, command: str, *,
            container_input_name: str = "input.txt",
            container_output_name: str = "output.txt",
            docker_options: list[str] | None = None,
            map_udf: Callable | None = None,
            timeout: float | Default | None = Default.PIPE_TIMEOUT,
            sample: float | None = None,
            sample_seed: int = 0) -> RDD:
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
            timeout: seconds each container may run, ``None`` for no limit
                (default: the pipe's).
            sample: run on a random fraction of the input only (e.g. ``0.01``),
                to try a pipeline quickly; every method takes it.
            sample_seed: the sample's seed (default 0): the same seed gives
                the same sample.

        Returns:
            The transformed RDD (lazy, like any Spark transformation).
        """
        call = CallOptions(image_name=image_name, command=command,
                           container_input_name=container_input_name,
                           container_output_name=container_output_name,
                           docker_options=docker_options, map_udf=map_udf, timeout=timeout,
                           sample=sample, sample_seed=sample_seed)
        job = self._rdd_job(rdd, call, "map")
        return call.sampled(rdd).mapPartitions(partial(
            _task.map_partition, job, call.container_input_name, call.container_output_name,
            call.map_udf))

    def pipe(self, rdd: RDD, image_name: str, command: str, *,
             binary: bool = False,
             delimiter: str | bytes | Default | None = Default.DELIMITER,
             docker_options: list[str] | None = None,
             timeout: float | Default | None = Default.PIPE_TIMEOUT,
             sample: float | None = None,
             sample_seed: int = 0) -> RDD:
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
        call = CallOptions(image_name=image_name, command=command, binary=binary,
                           delimiter=delimiter, docker_options=docker_options, timeout=timeout,
                           sample=sample, sample_seed=sample_seed)
        job = self._rdd_job(rdd, call, "pipe")
        return call.sampled(rdd).mapPartitions(partial(
            _task.stream_partition, job, call.binary, call.delimiter))

    @contextmanager
    def map_binary(self, rdd: RDD, image_name: str, command: str, *,
                   container_input_name: str = "input.txt",
                   container_binary_output_name: str = "output.bin",
                   docker_options: list[str] | None = None,
                   map_udf: Callable | None = None,
                   hdfs_tempdir: str | None = None,
                   timeout: float | Default | None = Default.PIPE_TIMEOUT,
                   sample: float | None = None,
                   sample_seed: int = 0) -> Iterator[str]:
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
        call = CallOptions(image_name=image_name, command=command,
                           container_input_name=container_input_name,
                           container_binary_output_name=container_binary_output_name,
                           docker_options=docker_options, map_udf=map_udf,
                           hdfs_tempdir=hdfs_tempdir, timeout=timeout, sample=sample,
                           sample_seed=sample_seed)
        job = self._rdd_job(rdd, call, "map_binary", binary=True)
        sampled = call.sampled(rdd)
        if self.master_type == "yarn":
            destination = hdfs_handler.binary_output_directory(
                call.hdfs_tempdir, self.hdfs, app=rdd.context.applicationId)
            remove = partial(hdfs_handler.remove_directory, config=self.hdfs)
        else:
            parent = self.options.temporary_directory_parent
            if parent:
                os.makedirs(parent, exist_ok=True)
            destination = tempfile.mkdtemp(prefix="lofn-binary-", dir=parent)
            remove = partial(shutil.rmtree, ignore_errors=True)
        try:
            with _task_errors():
                sampled.mapPartitions(partial(
                    _task.map_binary_partition, job, call.container_input_name,
                    call.container_binary_output_name, call.map_udf, destination,
                    self.master_type)).count()
            yield destination
        finally:
            failing = sys.exc_info()[0] is not None
            try:
                remove(destination)
            except Exception:
                if not failing:
                    raise
                logger.warning("could not remove %s after an error", destination, exc_info=True)

    def reduce(self, rdd: RDD, image_name: str, command: str, *,
               container_input_name: str = "input.txt",
               container_output_name: str = "output.txt",
               docker_options: list[str] | None = None,
               reduce_udf: Callable | None = None,
               max_fan_in: int = MAX_FAN_IN,
               timeout: float | Default | None = Default.PIPE_TIMEOUT,
               sample: float | None = None,
               sample_seed: int = 0) -> list[str]:
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
            EmptyInput: every partition is empty (a ``ValueError``).
            DockerFailure: a container failed.
        """
        call = CallOptions(image_name=image_name, command=command,
                           container_input_name=container_input_name,
                           container_output_name=container_output_name,
                           docker_options=docker_options, reduce_udf=reduce_udf,
                           max_fan_in=max_fan_in, timeout=timeout, sample=sample,
                           sample_seed=sample_seed)
        job = self._rdd_job(rdd, call, "reduce", after_shuffle=True)
        rdd = call.sampled(rdd)
        output_name = call.container_output_name
        if call.reduce_udf is None:
            merge = _task.Merge(job, "append", (call.container_input_name,), output_name)
            max_fan_in = call.max_fan_in
        else:
            merge = _task.Merge(job, "text_udf", (), output_name, call.reduce_udf)
            max_fan_in = PAIRWISE
        fan_ins = plan_fan_ins(rdd.getNumPartitions(), rdd.context.defaultParallelism,
                               max_fan_in)
        blocks = rdd.mapPartitionsWithIndex(partial(_task.text_blocks, fan_ins[0]))
        return split_lines(self._tree(blocks, rdd.getNumPartitions(), merge, fan_ins))

    def reduce_by_key(self, rdd: RDD, image_name: str, command: str, *,
                      key: Callable | None = None,
                      num_partitions: int | None = None,
                      partition_func: Callable | None = None,
                      sort: bool = False,
                      combiner: str | None = None,
                      container_input_name: str = "input.txt",
                      container_output_name: str = "output.txt",
                      docker_options: list[str] | None = None,
                      timeout: float | Default | None = Default.PIPE_TIMEOUT,
                      sample: float | None = None,
                      sample_seed: int = 0) -> RDD:
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
        from pyspark.rdd import portable_hash

        call = CallOptions(image_name=image_name, command=command, key=key,
                           num_partitions=num_partitions, partition_func=partition_func,
                           sort=sort, combiner=combiner,
                           container_input_name=container_input_name,
                           container_output_name=container_output_name,
                           docker_options=docker_options, timeout=timeout, sample=sample,
                           sample_seed=sample_seed)
        job = self._rdd_job(rdd, call, "reduce_by_key", after_shuffle=True)
        combine = (self._rdd_job(rdd, replace(call, command=call.combiner), "reduce_by_key")
                   if call.combiner is not None else None)  # in the input's stage
        rdd = call.sampled(rdd)
        input_name, output_name = call.container_input_name, call.container_output_name
        count = rdd.getNumPartitions() if call.num_partitions is None else call.num_partitions
        partition_func = call.partition_func or portable_hash
        if combine is not None:
            rdd = rdd.mapPartitions(partial(_task.map_partition, combine, input_name,
                                            output_name, None))
        keyed = rdd.map(partial(_task.with_key, call.key or _task.first_field))
        if call.sort:
            shuffled = keyed.repartitionAndSortWithinPartitions(count, partition_func)
        else:
            shuffled = keyed.partitionBy(count, partition_func)
        return shuffled.values().mapPartitions(partial(
            _task.map_partition, job, input_name, output_name, None))

    def reduce_binary(self, rdd: RDD, image_name: str, command: str, *,
                      container_binary_input_1_name: str = "input_1.bin",
                      container_binary_input_2_name: str = "input_2.bin",
                      container_binary_inputs_name: str = "input_{:03d}.bin",
                      container_binary_output_name: str = "output.bin",
                      docker_options: list[str] | None = None,
                      reduce_udf: Callable | None = None,
                      max_fan_in: int = PAIRWISE,
                      timeout: float | Default | None = Default.PIPE_TIMEOUT,
                      sample: float | None = None,
                      sample_seed: int = 0) -> bytes:
        """Merge binary files with a container, in a tree on the executors.

        Each element of ``rdd`` (``bytes``, or the ``(path, bytes)`` pairs of
        ``sc.binaryFiles``) is one block, numbered in the RDD's order. Each
        merge runs ``command``, which writes ``container_binary_output_name``,
        the merged block. The elements are counted first (one extra pass
        over the input). A block with no partner in a round, and so the only
        element of a one-element RDD, is passed on unmerged, without a
        container.

        By default (``max_fan_in=2``) the merges are pairwise, in about
        log2(N) rounds: each writes its two blocks to
        ``container_binary_input_1_name`` and ``container_binary_input_2_name``
        (``samtools merge /shared/output.bin /shared/input_1.bin /shared/input_2.bin``).

        With ``max_fan_in`` K > 2, for tools that merge many files at once,
        rounds are planned as for :meth:`reduce`: the first runs about as
        many containers as Spark has cores, later ones merge what is left at
        once, each container merging 2 to K blocks. A merge of n blocks
        gets them, in block order, as ``input_001.bin`` ... (n, zero-padded,
        so that ``/shared/input_*.bin`` lists them in order; the pattern is
        ``container_binary_inputs_name``) and the file ``inputs.txt``
        listing their container paths (``/shared/input_001.bin``), one a
        line: ``samtools merge -f -o /shared/output.bin -b /shared/inputs.txt``
        or ``cat /shared/input_*.bin > /shared/output.bin``. The command
        must give the same result however the blocks are grouped.

        Args:
            rdd: a Spark RDD of binary contents.
            image_name: Docker image name.
            command: command run by ``sh -c`` in the container.

        Keyword Args:
            container_binary_input_1_name: left input of a pairwise merge
                (default ``'input_1.bin'``; ``max_fan_in=2`` only).
            container_binary_input_2_name: right input of a pairwise merge
                (default ``'input_2.bin'``; ``max_fan_in=2`` only).
            container_binary_inputs_name: the ``str.format`` pattern of the
                numbered inputs' names when ``max_fan_in`` > 2 (default
                ``'input_{:03d}.bin'``); the names must sort in number order.
            container_binary_output_name: output (default ``'output.bin'``).
            docker_options: additional ``docker run`` flags, as a list.
            reduce_udf: function taking the two blocks (bytes) of a pairwise
                merge and returning a dict of file name -> contents
                (``max_fan_in=2`` only).
            max_fan_in: the most blocks one container merges, from 2 (the
                default: pairwise, with the two named inputs) to
                :data:`~lofn.options.MAX_FAN_IN` (32).
            timeout, sample, sample_seed: as for :meth:`map`.

        Returns:
            The bytes of the final output file.

        Raises:
            InvalidArgument: a bad keyword, ``max_fan_in`` not a whole number
                from 2 to 32, or a keyword of the other way to merge given
                (``reduce_udf`` or an input name of a pairwise merge with
                ``max_fan_in`` > 2; ``container_binary_inputs_name`` with
                ``max_fan_in=2``). Raised before any Spark job.
            EmptyInput: the RDD has no elements (a ``ValueError``).
            DockerFailure: a container failed.
        """
        call = CallOptions(image_name=image_name, command=command,
                           container_binary_input_1_name=container_binary_input_1_name,
                           container_binary_input_2_name=container_binary_input_2_name,
                           container_binary_inputs_name=container_binary_inputs_name,
                           container_binary_output_name=container_binary_output_name,
                           docker_options=docker_options, reduce_udf=reduce_udf,
                           binary_max_fan_in=max_fan_in, timeout=timeout, sample=sample,
                           sample_seed=sample_seed)
        job = self._rdd_job(rdd, call, "reduce_binary", after_shuffle=True)
        rdd = call.sampled(rdd)
        output_name = call.container_binary_output_name
        if call.reduce_udf is not None:
            merge = _task.Merge(job, "binary_udf", (), output_name, call.reduce_udf)
        elif call.binary_max_fan_in == PAIRWISE:
            names = (call.container_binary_input_1_name, call.container_binary_input_2_name)
            merge = _task.Merge(job, "pair", names, output_name)
        else:
            names = (call.container_binary_inputs_name, BINARY_INPUTS_LIST)
            merge = _task.Merge(job, "numbered", names, output_name)
        with _task_errors():
            counts = rdd.mapPartitions(_task.count).collect()
        offsets = [sum(counts[:index]) for index in range(len(counts))]
        # max_fan_in=2 plans the pairwise tree whatever the parallelism
        fan_ins = plan_fan_ins(sum(counts), rdd.context.defaultParallelism,
                               call.binary_max_fan_in)
        blocks = rdd.mapPartitionsWithIndex(partial(_task.binary_blocks, fan_ins[0], offsets))
        return self._tree(blocks, sum(counts), merge, fan_ins)

    @staticmethod
    def _tree(blocks, count: int, merge: _task.Merge, fan_ins: list[int]) -> bytes:
        """Merge ``count`` blocks in rounds (``fan_ins[r]`` blocks a container); return the last."""
        if count == 0:
            raise EmptyInput("Can not reduce() empty RDD")
        for round_number, fan_in in enumerate(fan_ins):
            count = -(-count // fan_in)
            final = round_number == len(fan_ins) - 1
            next_fan_in = 1 if final else fan_ins[round_number + 1]
            blocks = blocks.partitionBy(count, _task.identity).mapPartitionsWithIndex(
                partial(_task.merge_partition, merge, final, next_fan_in))
        with _task_errors():
            records = blocks.values().collect()
        if not records:
            raise EmptyInput("Can not reduce() empty RDD: every partition is empty")
        return b"".join(chunk for _, _, _, chunk in sorted(records, key=lambda r: r[2]))
