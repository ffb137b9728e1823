"""Containers sized by Spark: CPUs, memory and GPUs from each task's resources.

Opt in with ``DockerPipe(conf, resources=Resources(...))`` (or
``resources=True`` for the defaults, or ``lofn map --resources auto``). Then
every container lofn starts for a task gets:

- **CPUs**: ``--cpus`` = the task's CPUs (``TaskContext.cpus()``: the
  stage's resource profile, else ``spark.task.cpus``), at most the host's.
- **Memory**: a limit, swap included, of the task's share of the
  executor's memory budget::

      share = budget * task CPUs / executor cores
      limit on attempt a = min(share * growth ** a, max_memory)

  The budget is ``Resources(memory=...)`` if stated; else
  ``spark.executor.pyspark.memory`` (the stage profile's, if it sets one),
  Spark's memory for Python beside each executor; else the executor
  host's physical memory minus the executor's heap (``spark.executor.memory``;
  ``spark.driver.memory`` on a ``local`` master). The executor cores are
  ``N`` on a ``local[N]`` master; else ``spark.executor.cores`` (the
  profile's, if it sets them); else 1 on YARN; else the executor host's CPU
  count (a standalone executor without ``spark.executor.cores`` takes all
  its worker's cores).
  ``max_memory`` defaults to the budget. Each attempt Spark makes at a
  task gets ``growth`` times more than the one before (``growth=1``, the
  default: the same), for a task retried after
  :class:`~lofn.errors.OutOfMemory` (or any other failure).
- **GPUs** (``Resources(gpus=True)``): the addresses Spark assigned to the
  task (``TaskContext.resources()['gpu']``) as the engine's device request
  for exactly those devices (``--gpus device=ID,...``). Untested on real
  GPUs: the translation is tested with a fake ``gpu`` resource.

A limit the user's ``docker_options`` set (``--cpus``, ``--memory``,
``--gpus``) wins over the derived one.

>>> Resources(memory="8g", growth=2).memory
8589934592
>>> Resources(memory="1k")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
lofn.errors.InvalidArgument: resources memory budget '1k' is 1 KiB; it must be at least 6 MiB...
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from lofn import _options
from lofn.errors import InvalidArgument, InvalidArgumentType

__all__ = ["MIN_MEMORY", "Limits", "Resources", "Sizing", "format_size", "parse_size"]

#: The least memory limit Docker (and Podman) accept for a container: 6 MiB.
MIN_MEMORY = 6 * 1024 * 1024
#: Spark's name of the GPU task resource.
GPU = "gpu"
LOCAL = "local master"  # where the executor cores of a local master come from
#: The Spark settings the driver reads (:func:`~lofn.dataframe.pipe_for` copies them from a
#: Spark Connect session).
SETTINGS = ("spark.executor.cores", "spark.executor.memory", "spark.driver.memory",
            "spark.executor.pyspark.memory", "spark.task.cpus", f"spark.task.resource.{GPU}.amount")
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])i?b?|(b))?\s*", re.IGNORECASE)


def parse_size(name: str, value: Any, *, bare: str = "b") -> int:
    """Bytes of a size: a whole number of bytes, or text such as ``'512m'``, ``'8g'``, ``'1.5GiB'``.

    ``bare`` is the unit of a number without one in text (``'b'``, or
    ``'m'`` for Spark's settings, which count MiB).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        number, unit, byte = match.groups()
        size = math.floor(float(number) * _UNITS[(unit or byte or bare).lower()])
    else:
        raise InvalidArgument(f"{name} must be a size such as '512m' or '8g' (or a whole "
                              f"number of bytes), got {value!r}")
    if size <= 0:
        raise InvalidArgument(f"{name} must be a positive size, got {value!r}")
    return size


def format_size(size: int) -> str:
    """``268435456`` -> ``'256 MiB'``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} B"


@dataclass(frozen=True, kw_only=True)
class Resources:
    """How containers are sized from their Spark tasks (see :mod:`lofn.resources`).

    Args:
        memory: the executor's memory budget for its containers, e.g.
            ``'8g'`` (or bytes); each container gets its task's share.
            ``None``: ``spark.executor.pyspark.memory``, else the executor
            host's memory minus the executor's heap.
        growth: how much more memory each attempt at a task gets than the
            one before (a retry after its container was killed for memory),
            ``>= 1`` (``1``: no growth).
        max_memory: the most memory one container gets, however many
            attempts (default: the budget).
        gpus: give each container the GPUs Spark assigned its task
            (``spark.task.resource.gpu.amount`` or the stage's profile).

    Raises:
        InvalidArgument: a size that cannot be read, is not positive or is
            below :data:`MIN_MEMORY`; ``growth`` below 1.
    """

    memory: int | None = None
    growth: float = 1.0
    max_memory: int | None = None
    gpus: bool = False

    def __post_init__(self) -> None:
        for name in ("memory", "max_memory"):
            value = getattr(self, name)
            if value is not None:
                what = f"resources {'memory budget' if name == 'memory' else name}"
                size = parse_size(what, value)
                if size < MIN_MEMORY:
                    raise InvalidArgument(
                        f"{what} {value!r} is {format_size(size)}; it must be at least "
                        f"{format_size(MIN_MEMORY)}, the least memory a container engine "
                        "accepts")
                object.__setattr__(self, name, size)
        growth = self.growth
        if (isinstance(growth, bool) or not isinstance(growth, (int, float))
                or not math.isfinite(growth) or growth < 1):
            raise InvalidArgument(f"resources growth must be a number >= 1 (1: the same "
                                  f"memory on every attempt), got {growth!r}")
        object.__setattr__(self, "growth", float(growth))
        if not isinstance(self.gpus, bool):
            raise InvalidArgumentType(f"resources gpus must be True or False, got {self.gpus!r}")

    @classmethod
    def parse(cls, text: str) -> Resources:
        """The command line's form: ``auto``, or ``memory=8g,growth=2,max_memory=16g,gpus``."""
        if text.strip() == "auto":
            return cls()
        settings: dict[str, Any] = {}
        names = [declared.name for declared in fields(cls)]
        for item in text.split(","):
            key, sep, value = (part.strip() for part in item.partition("="))
            if key not in names or (key == "gpus") == bool(sep):
                raise InvalidArgument(
                    f"resources {text!r}: {item.strip()!r} is not one of memory=SIZE, "
                    "growth=FACTOR, max_memory=SIZE, gpus (or give 'auto')")
            settings[key] = True if key == "gpus" else value
        if "growth" in settings:
            try:
                settings["growth"] = float(settings["growth"])
            except ValueError:
                raise InvalidArgument(f"resources growth must be a number >= 1, got "
                                      f"{settings['growth']!r}") from None
        return cls(**settings)


def check(name: str, value: Any) -> Resources | None:
    """``DockerPipe(resources=...)``: ``None``/``False`` (off), ``True``, a
    :class:`Resources`, or its command-line text."""
    if value is None or value is False:
        return None
    if value is True:
        return Resources()
    if isinstance(value, str):
        return Resources.parse(value)
    if not isinstance(value, Resources):
        raise InvalidArgumentType(f"{name} must be True or a lofn.Resources, got {value!r}")
    return value


def _share(budget: int, task_cpus: int, cores: int, how: str) -> int:
    """A task's share of the budget; ``how`` says how it was found, for the error.

    Raises:
        InvalidArgument: the share is below :data:`MIN_MEMORY`.
    """
    share = budget * task_cpus // cores
    if share < MIN_MEMORY:
        raise InvalidArgument(
            f"resources: a container's memory, {how} = {format_size(share)}, is below "
            f"{format_size(MIN_MEMORY)}, the least a container engine accepts: raise the "
            "budget (Resources(memory=...)) or the task's CPUs")
    return share


# ---------------------------------------------------------------------------
# on the driver: what the configuration says, checked before any task

@dataclass(frozen=True)
class Sizing:
    """:class:`Resources` with what the driver's configuration says; pickled to the tasks.

    ``heap``: the executor JVM's heap in bytes; ``pyspark_memory``:
    ``spark.executor.pyspark.memory`` in bytes, if set; ``executor_cores``:
    ``spark.executor.cores``, or ``N`` of a ``local[N]`` master, if known;
    ``explicit``: which of ``cpus``, ``memory``, ``gpus`` the user's
    ``docker_options`` set. A stage's resource profile, which the task's
    local properties carry, comes first.
    """

    resources: Resources
    heap: int
    pyspark_memory: int | None = None
    executor_cores: tuple[int, str] | None = None  # (cores, where they come from)
    explicit: frozenset[str] = field(default_factory=frozenset)

    def limits(self, context: Any) -> Limits:
        """The limits of the running task's container; ``context`` is its ``TaskContext``.

        Raises:
            InvalidArgument: the task's memory share is below
                :data:`MIN_MEMORY`, or GPUs were asked for and the task has none.
        """
        resources = self.resources
        attempt = context.attemptNumber()
        task_cpus = context.cpus()
        # the engine refuses more CPUs than the host has (an oversubscribed worker)
        cpus = None if "cpus" in self.explicit else min(task_cpus, os.cpu_count() or task_cpus)
        gpus = None
        if resources.gpus and "gpus" not in self.explicit:
            assigned = context.resources().get(GPU)
            if assigned is None or not assigned.addresses:
                raise InvalidArgument(
                    f"resources gpus=True, but Spark assigned task {context.partitionId()} "
                    f"(stage {context.stageId()}) no {GPU!r} resource: set "
                    f"spark.task.resource.{GPU}.amount, or run the stage with a resource "
                    "profile that asks for GPUs")
            gpus = tuple(assigned.addresses)
        if "memory" in self.explicit:
            return Limits(cpus=cpus, gpus=gpus)
        budget, source = self._budget(context)
        cores, cores_source = self._executor_cores(context)
        how = (f"budget {format_size(budget)} ({source}) * {task_cpus} task CPU"
               f"{'s' if task_cpus != 1 else ''} / {cores} executor cores ({cores_source})")
        share = _share(budget, task_cpus, cores, how)
        cap = resources.max_memory or max(budget, share)
        by_attempt = tuple(min(math.floor(share * resources.growth ** number), cap)
                           for number in range(attempt + 1))
        if resources.growth > 1:
            how += f"; * {resources.growth:g} per attempt, at most {format_size(cap)}"
        elif cap < share:
            how += f"; at most {format_size(cap)} (max_memory)"
        return Limits(cpus=cpus, memory=by_attempt[-1], gpus=gpus, by_attempt=by_attempt,
                      how=how)

    def _budget(self, context: Any) -> tuple[int, str]:
        if self.resources.memory is not None:
            return self.resources.memory, "stated"
        profile = context.getLocalProperty("resource.pyspark.memory")  # MiB
        pyspark = int(profile) << 20 if profile else self.pyspark_memory
        if pyspark:
            return pyspark, "spark.executor.pyspark.memory"
        host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return host - self.heap, (f"host memory {format_size(host)} - executor heap "
                                  f"{format_size(self.heap)}")

    def _executor_cores(self, context: Any) -> tuple[int, str]:
        if self.executor_cores is not None and self.executor_cores[1] == LOCAL:
            return self.executor_cores  # Spark sets the property there too, and ignores it
        profile = context.getLocalProperty("resource.executor.cores")
        if profile:
            return int(profile), "spark.executor.cores"
        return self.executor_cores or (os.cpu_count() or 1, "the host's CPUs")


def sizing(resources: Resources | None, conf: Any, master: str, profile: Any,
           create_options: dict, *, profile_known: bool = True,
           local_cores: int | None = None) -> Sizing | None:
    """The :class:`Sizing` of a job, checked on the driver (``None`` when not asked for).

    ``conf`` is the job's ``SparkConf`` (or ``None``); ``profile`` the
    ``ResourceProfile`` of the RDD the containers run on (``None``: the
    default one; ``profile_known=False``: it cannot be told, and the task
    checks what the driver cannot); ``create_options`` the call's translated
    ``docker_options``; ``local_cores`` the threads of a ``local[*]`` master
    (default: the CPUs this process may run on).

    Raises:
        InvalidArgument: GPUs asked for where the tasks have none, or a
            memory share the driver can compute below :data:`MIN_MEMORY`.
    """
    if resources is None:
        return None
    explicit = frozenset(name for name, key in (("cpus", "nano_cpus"), ("memory", "mem_limit"),
                                                ("gpus", "device_requests"))
                         if key in create_options)
    setting = (conf.get if conf is not None else lambda key, default=None: default)
    local = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\s*\d+)?\])?", master)
    executor_cores = None
    if local:  # Spark ignores spark.executor.cores on a local master
        count = local.group(1)
        executor_cores = (1 if count is None else int(count) if count != "*"
                          else local_cores or len(os.sched_getaffinity(0))), LOCAL
    elif setting("spark.executor.cores"):
        executor_cores = int(setting("spark.executor.cores")), "spark.executor.cores"
    elif master.startswith("yarn"):
        executor_cores = 1, "spark.executor.cores, YARN's default"
    heap_key = "spark.driver.memory" if local else "spark.executor.memory"
    heap = parse_size(heap_key, setting(heap_key, "1g"), bare="m")
    pyspark = setting("spark.executor.pyspark.memory")
    pyspark_memory = parse_size("spark.executor.pyspark.memory", pyspark, bare="m") if (
        pyspark) else None
    task = getattr(profile, "taskResources", None) or {}
    executor = getattr(profile, "executorResources", None) or {}
    if resources.gpus and "gpus" not in explicit and profile_known:
        # a profile's task resources replace the configuration's
        amount = (task[GPU].amount if GPU in task else 0) if profile is not None else float(
            setting(f"spark.task.resource.{GPU}.amount", "0"))
        if not amount > 0:
            raise InvalidArgument(
                f"resources gpus=True, but the tasks get no GPUs: set "
                f"spark.task.resource.{GPU}.amount (with spark.executor.resource.{GPU}.amount "
                "and a discovery script), or give the RDD you pass to lofn a resource profile "
                "that asks for them (withResources on that RDD); or leave gpus off")
    budget = resources.memory or (executor["pyspark.memory"].amount << 20
                                  if "pyspark.memory" in executor else pyspark_memory)
    cores = executor["cores"].amount if "cores" in executor else (
        executor_cores[0] if executor_cores else None)
    task_cpus = int(task["cpus"].amount) if "cpus" in task else int(setting("spark.task.cpus", "1"))
    if "memory" not in explicit and budget is not None and cores and profile_known:
        _share(budget, task_cpus, cores, f"budget {format_size(budget)} * {task_cpus} task "
                                         f"CPUs / {cores} executor cores")
    return Sizing(resources, heap, pyspark_memory, executor_cores, explicit)


# ---------------------------------------------------------------------------
# in the task: one container's limits

@dataclass(frozen=True, kw_only=True)
class Limits:
    """One container's derived limits (``None``: not derived) and how the memory was found."""

    cpus: float | None = None
    memory: int | None = None
    gpus: tuple[str, ...] | None = None
    by_attempt: tuple[int, ...] = ()
    how: str = ""

    def create_options(self) -> dict:
        """``containers.create`` arguments for these limits: ``--cpus`` and ``--gpus``
        translated as a user's ``docker_options`` are; the memory with no swap besides."""
        flags = []
        if self.cpus is not None:
            flags += ["--cpus", str(self.cpus)]
        if self.gpus is not None:
            flags += ["--gpus", f"device={','.join(self.gpus)}"]
        options = _options.parse_docker_options(flags)
        if self.memory is not None:
            options.update(mem_limit=self.memory, memswap_limit=self.memory)
        return options

    def record(self) -> dict:
        """The trace's ``limits`` field."""
        return {"cpus": self.cpus, "memory_bytes": self.memory,
                "gpus": list(self.gpus) if self.gpus is not None else None}

    def memory_text(self) -> str:
        """The memory limit, how it was derived and every attempt's, for an OOM error."""
        if self.memory is None:
            return "set by docker_options"
        attempts = ", ".join(f"attempt {number}: {format_size(size)}"
                             for number, size in enumerate(self.by_attempt))
        return f"{format_size(self.memory)}: {self.how}; {attempts}"
