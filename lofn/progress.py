"""A live view of Spark jobs: partitions done, running and failed, containers started.

>>> import lofn.progress
>>> with lofn.progress.show(sc):
...     pipe.map(rdd, "busybox", "wc -l < /shared/input.txt > /shared/output.txt").collect()

- :func:`show` draws one ``tqdm.auto`` bar per Spark stage of the jobs run
  inside its block: a widget in Jupyter, text in a terminal or a file.
- :class:`Tracker` is what feeds it: a thread that polls Spark's status
  tracker for the jobs started inside its block and keeps their stages as
  :class:`StageProgress` records. The ``lofn`` command line draws its own
  lines from the same tracker.
- :class:`ContainerCounter` follows the driver host's Docker engine events
  for the containers of one Spark application.

The jobs inside a block are marked with a Spark job tag
(:meth:`SparkContext.addJobTag`), removed again when the block ends; the job
group and the other tags the caller set are left as they are. Importing this
module imports neither pyspark nor tqdm; :func:`show` imports tqdm.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from lofn import _engine

__all__ = ["show", "Tracker", "StageProgress", "Snapshot", "ContainerCounter", "Bars",
           "POLL_INTERVAL"]

logger = logging.getLogger(__name__)

#: Seconds between two polls of Spark's status tracker.
POLL_INTERVAL = 0.2
#: At most this many seconds, when a block ends, for Spark's status store and the
#: engine's events to catch up with the jobs that just finished.
SETTLE = 2.0
#: The states of a Spark job that has ended (``SparkJobInfo.status``).
_ENDED_JOB = ("SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class StageProgress:
    """One Spark stage's numbers, as the status tracker last gave them.

    Attributes:
        stage_id: Spark's stage id.
        job_id: the job the stage belongs to.
        position: the stage's place among its job's stages, from 0 (a
            ``DockerPipe.reduce`` job: the map, then one stage per round).
        job_stages: how many stages the job has.
        name: Spark's name for the stage, e.g. ``"collect at job.py:12"``.
        tasks: the stage's tasks, one per partition.
        done: tasks completed.
        running: tasks running now.
        failed: task attempts that failed (a retried task may count more than once).
        ended: the stage will change no more (its tasks are done, or its job ended).
        containers: containers started for the stage on the driver host's
            engine; ``None`` when they are not counted.
    """

    stage_id: int
    job_id: int
    position: int
    job_stages: int
    name: str
    tasks: int
    done: int
    running: int
    failed: int
    ended: bool
    containers: int | None = None

    @property
    def label(self) -> str:
        """``"stage 3: collect at job.py:12"``: the id and where the job was started."""
        name = self.name
        place, sep, line = name.rpartition(":")
        head, at, path = place.partition(" at ")
        if at and sep and line.isdigit():
            name = f"{head} at {os.path.basename(path)}:{line}"
        return f"stage {self.stage_id}: {name}" if name else f"stage {self.stage_id}"


@dataclass(frozen=True)
class Snapshot:
    """What a :class:`Tracker` knows after one poll.

    Attributes:
        stages: the stages that started, in stage id order.
        containers: containers started on the driver host's engine since the
            block began, or since the :class:`ContainerCounter` given to the
            :class:`Tracker` was made (``None``: not counted).
        final: the block has ended; these are the last numbers.
    """

    stages: tuple[StageProgress, ...]
    containers: int | None
    final: bool = False


class ContainerCounter:
    """Counts the containers lofn starts for one Spark application.

    Every container lofn starts carries the label ``lofn.app=<application
    id>``; this follows the driver host's Docker engine events for that label,
    from the moment it is made, and counts ``start`` events: in all, per Spark
    stage (label ``lofn.stage``), and among them the long-lived containers of
    ``reuse_containers=True`` (label ``lofn.mode=reuse``). Only this host's
    engine is seen: on a cluster, containers on other hosts are not counted.

    Args:
        app_id: the Spark application id (``sc.applicationId``).

    Raises:
        DockerUnavailable: no engine answers (:meth:`connect` returns ``None`` instead).
    """

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.started: set[str] = set()
        self.removed: set[str] = set()
        self.warm: set[str] = set()
        self.by_stage: dict[int, set[str]] = {}
        self._since_ns = time.time_ns()
        self._lock = threading.Lock()
        self._client = _engine.connect()  # its own: the event stream holds it
        # A second early, then events older than the counter are dropped (_take): the
        # engine may subscribe the stream after it has answered the request.
        self._stream = self._client.events(
            decode=True, since=self._since_ns // 1_000_000_000 - 1,
            filters={"type": "container", "label": [f"lofn.app={app_id}"]})
        self._last_event = time.monotonic()
        self._closed = False
        self._thread = threading.Thread(target=self._follow, name="lofn-progress-events",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def connect(cls, app_id: str) -> ContainerCounter | None:
        """A counter, or ``None`` when no Docker engine answers on this host."""
        try:
            return cls(app_id)
        except Exception:  # no engine here: containers are not counted
            logger.debug("containers are not counted", exc_info=True)
            return None

    def _follow(self) -> None:
        try:
            for event in self._stream:
                self._take(event)
        except Exception:  # noqa: BLE001 - the stream was closed
            pass

    def _take(self, event: dict[str, Any]) -> None:
        """Count one engine event (a dict as the engine's ``/events`` gives it)."""
        if event.get("timeNano", self._since_ns) < self._since_ns:
            return  # before the counter was made
        action = event.get("Action") or event.get("status") or ""
        actor = event.get("Actor") or {}
        container = event.get("id") or actor.get("ID", "")
        attributes = actor.get("Attributes") or {}
        with self._lock:
            self._last_event = time.monotonic()
            if action == "start":
                self.started.add(container)
                if attributes.get("lofn.mode") == "reuse":
                    self.warm.add(container)
                stage = attributes.get("lofn.stage", "")
                if stage.isdigit():
                    self.by_stage.setdefault(int(stage), set()).add(container)
            elif action == "destroy":
                self.removed.add(container)

    @property
    def count(self) -> int:
        """Containers started so far."""
        with self._lock:
            return len(self.started)

    def count_for(self, stage_id: int) -> int:
        """Containers started so far for one Spark stage (warm containers are not counted)."""
        with self._lock:
            return len(self.by_stage.get(stage_id, ()))

    def close(self, settle: float = SETTLE) -> None:
        """Stop following, once the events of the finished jobs have arrived.

        Every container of a finished job has been removed (lofn always
        removes its containers), so wait until each one seen starting was seen
        removed, and events have been quiet for a moment; at most ``settle``
        seconds. Reused containers live until Spark stops, so are not awaited.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            with self._lock:
                done = self.started - self.warm <= self.removed
                quiet = time.monotonic() - self._last_event > 0.3
            if done and quiet:
                break
            time.sleep(0.05)
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001
            pass
        self._thread.join(1.0)
        self._client.close()


@dataclass
class _Job:
    stage_ids: list[int]
    ended: bool = False


@dataclass
class _State:
    """What the polls found: jobs of the block, and the stages that started."""

    jobs: dict[int, _Job] = field(default_factory=dict)
    stages: dict[int, StageProgress] = field(default_factory=dict)


def _read_stages(tracker: Any, job_ids: list[int], state: _State) -> None:
    """Update ``state`` from Spark's status ``tracker`` for the jobs ``job_ids``.

    A stage shows up once it has started (a task ran, or is running); one
    that never starts (skipped: its shuffle output was there already, or its
    job failed first) never does. A job that has ended is not asked again.
    """
    active = set(tracker.getActiveStageIds())
    for job_id in sorted(job_ids):
        job = state.jobs.get(job_id)
        if job is not None and job.ended and all(
                s not in state.stages or state.stages[s].ended for s in job.stage_ids):
            continue
        info = tracker.getJobInfo(job_id)
        if info is None:
            continue  # forgotten by Spark (spark.ui.retainedJobs), or not there yet
        job = _Job(sorted(info.stageIds), ended=info.status in _ENDED_JOB)
        state.jobs[job_id] = job
        for position, stage_id in enumerate(job.stage_ids):
            known = state.stages.get(stage_id)
            if known is not None and known.ended:
                continue
            stage = tracker.getStageInfo(stage_id)
            if stage is None:
                continue
            if known is None and stage_id not in active and not (
                    stage.numActiveTasks or stage.numCompletedTasks or stage.numFailedTasks):
                continue  # not started (yet, or ever)
            state.stages[stage_id] = StageProgress(
                stage_id=stage_id, job_id=job_id, position=position,
                job_stages=len(job.stage_ids), name=stage.name or "",
                tasks=stage.numTasks, done=stage.numCompletedTasks,
                running=stage.numActiveTasks, failed=stage.numFailedTasks,
                ended=job.ended or stage.numCompletedTasks >= stage.numTasks)


class Tracker:
    """Follows the Spark jobs started inside its ``with`` block, in a daemon thread.

    On entering, the calling thread's jobs get a job tag of the tracker's own
    (see :meth:`SparkContext.addJobTag`: jobs started by this thread, and by
    threads it starts with :class:`pyspark.InheritableThread`); every
    ``interval`` seconds the thread asks Spark's status tracker about those
    jobs' stages and calls ``on_update`` with a :class:`Snapshot`. On leaving,
    the tag is removed, Spark's numbers are given a moment (at most 2 s) to
    catch up with the jobs that just ended, and ``on_update`` is called a
    last time with ``final=True``. The job group and tags the caller set are
    untouched, so ``cancelJobGroup`` and ``cancelJobsWithTag`` work as before.

    Args:
        sc: the SparkContext the jobs run on.
        containers: count the containers started on this host's Docker engine
            during the block (``True``), not count them (``False``), or use
            this :class:`ContainerCounter` (which the caller closes).
        interval: seconds between two polls.
        on_update: called with each :class:`Snapshot`, from the polling thread
            while the block runs and from the caller's thread at the end.

    Example::

        with Tracker(sc) as tracker:
            rdd.count()
        print(tracker.snapshot().stages)
    """

    def __init__(self, sc: Any, *, containers: bool | ContainerCounter = True,
                 interval: float = POLL_INTERVAL,
                 on_update: Callable[[Snapshot], None] | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.sc = sc
        self.interval = interval
        self.on_update = on_update
        self._count = containers
        self.counter: ContainerCounter | None = (
            containers if isinstance(containers, ContainerCounter) else None)
        self.tag = f"lofn-progress-{uuid.uuid4().hex}"
        self._state = _State()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def __enter__(self) -> Tracker:
        if self._thread is not None:
            raise RuntimeError("a Tracker follows one block only")
        self.sc.addJobTag(self.tag)
        if self._count is True:
            self.counter = ContainerCounter.connect(self.sc.applicationId)
        self._thread = threading.Thread(target=self._run, name="lofn-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        try:
            self.sc.removeJobTag(self.tag)
        except Exception:  # Spark may be gone after an interrupt
            logger.debug("could not remove the job tag %s", self.tag, exc_info=True)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        settle = 0.0 if interrupted else SETTLE
        if self._count is True and self.counter is not None:
            self.counter.close(settle)
        deadline = time.monotonic() + settle
        while True:
            try:
                self._poll()
            except Exception:  # Spark may be gone after an interrupt
                logger.debug("last poll of Spark's status tracker failed", exc_info=True)
                break
            with self._lock:
                ended = all(job.ended for job in self._state.jobs.values())
            if ended or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self._notify(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception:  # a poll racing the end of a job, or of Spark
                logger.debug("poll of Spark's status tracker failed", exc_info=True)
                continue
            self._notify(final=False)

    def _job_ids(self) -> list[int]:
        # PySpark's StatusTracker wraps JavaSparkStatusTracker, which has no
        # getJobIdsForTag (Spark 3.5 to 4.2); the Scala SparkStatusTracker has it since 3.5,
        # the oldest Spark lofn supports. sc._jsc is PySpark's own handle on the
        # JavaSparkContext.
        return list(self.sc._jsc.sc().statusTracker().getJobIdsForTag(self.tag))

    def _poll(self) -> None:
        try:
            job_ids = self._job_ids()
        except Exception:
            if not self._warned:
                self._warned = True
                logger.warning("Spark cannot list the jobs of tag %s: no progress is shown",
                               self.tag, exc_info=True)
            raise
        with self._lock:
            _read_stages(self.sc.statusTracker(), job_ids, self._state)

    def _notify(self, final: bool) -> None:
        if self.on_update is None:
            return
        try:
            self.on_update(self.snapshot(final))
        except Exception:  # a view that fails must not stop the job
            logger.warning("the progress view failed", exc_info=True)

    def snapshot(self, final: bool = False) -> Snapshot:
        """The stages seen so far, and the containers started (see :class:`Snapshot`)."""
        with self._lock:
            stages = tuple(self._state.stages[s] for s in sorted(self._state.stages))
        counter = self.counter
        if counter is None:
            return Snapshot(stages, None, final)
        # counted now, not when Spark's numbers were read: the engine's events may come later
        return Snapshot(tuple(replace(stage, containers=counter.count_for(stage.stage_id))
                              for stage in stages), counter.count, final)

    @property
    def stages(self) -> tuple[StageProgress, ...]:
        """The stages seen so far, in stage id order."""
        return self.snapshot().stages


class Bars:
    """Draws a :class:`Snapshot` as one tqdm bar per stage (the view :func:`show` uses).

    Args:
        file: where text bars go; ``None``: ``tqdm.auto`` chooses (a widget in
            Jupyter, else text on stderr).
        describe: the bar's description of a stage (default: :attr:`StageProgress.label`).
        unit: what a task is called on the bar, or a function of the stage that says it.
    """

    def __init__(self, file: TextIO | None = None, *,
                 describe: Callable[[StageProgress], str] | None = None,
                 unit: str | Callable[[StageProgress], str] = "partition") -> None:
        if file is None:
            from tqdm.auto import tqdm
        else:
            from tqdm.std import tqdm
        self._tqdm = tqdm
        self.file = file
        self.describe = describe or (lambda stage: stage.label)
        self.unit = unit
        self._bars: dict[int, Any] = {}
        self._shown: dict[int, tuple] = {}
        self._closed: set[int] = set()

    def __call__(self, snapshot: Snapshot) -> None:
        for stage in snapshot.stages:
            if stage.stage_id not in self._closed:
                self._draw(stage, closing=stage.ended or snapshot.final)

    def _draw(self, stage: StageProgress, closing: bool) -> None:
        postfix = f"running={stage.running}, failed={stage.failed}"
        if stage.containers is not None:
            postfix += f", containers={stage.containers}"
        shown = (stage.tasks, stage.done, stage.running, stage.failed, stage.containers)
        bar = self._bars.get(stage.stage_id)
        if bar is None:
            bar = self._bars[stage.stage_id] = self._tqdm(
                total=stage.tasks, initial=stage.done, postfix=postfix,
                desc=self.describe(stage),
                unit=self.unit if isinstance(self.unit, str) else self.unit(stage),
                file=self.file, leave=True, mininterval=0, miniters=1,
                **_width(self.file))
        elif shown != self._shown.get(stage.stage_id):
            if bar.total != stage.tasks:
                bar.reset(total=stage.tasks)  # the notebook widget takes a new total only so
            bar.set_postfix_str(postfix, refresh=False)
            if stage.done > bar.n:
                bar.update(stage.done - bar.n)  # draws, and keeps tqdm's rate and time left
            else:
                bar.n = stage.done
                bar.refresh()
        self._shown[stage.stage_id] = shown
        if closing:
            bar.close()
            self._closed.add(stage.stage_id)


def _width(file: TextIO | None) -> dict[str, Any]:
    """tqdm's width: the terminal's, followed as it changes; 80 columns on a terminal that
    says it has none (a new pseudo-terminal, as ``script`` or ``docker exec -t`` make), where
    tqdm would draw nothing."""
    try:
        columns = os.get_terminal_size(file.fileno()).columns if file is not None else None
    except (AttributeError, OSError, ValueError):  # not a terminal, or not a file at all
        columns = None
    if columns == 0:
        return {"ncols": 80, "nrows": 24}
    return {"dynamic_ncols": True}


@contextmanager
def show(sc: Any, *, file: TextIO | None = None, containers: bool = True,
         interval: float = POLL_INTERVAL) -> Iterator[Tracker]:
    """Show the progress of the Spark jobs run inside the ``with`` block.

    One ``tqdm`` bar per Spark stage: tasks (partitions) done out of the
    stage's total, with the tasks running, the task attempts failed and the
    containers started for the stage on this host's Docker engine. In Jupyter
    (with ``ipywidgets`` installed) the bars are widgets; elsewhere text on
    stderr, or on ``file``.

    Works for any job run on ``sc`` by the thread that enters the block, not
    only lofn's. The job group and tags the caller set are left as they are.

    Args:
        sc: the SparkContext.
        file: write text bars here (e.g. ``sys.stdout`` or a log file) instead
            of letting ``tqdm.auto`` choose.
        containers: count the containers started (needs this host's Docker
            engine; without one there is no count and no error).
        interval: seconds between two polls of Spark's status tracker.

    Yields:
        The :class:`Tracker`, whose :meth:`~Tracker.snapshot` gives the numbers
        shown, during and after the block.

    Example::

        import lofn.progress

        with lofn.progress.show(sc):
            counts = pipe.map(rdd, "busybox", command).collect()
    """
    bars = Bars(file)
    with Tracker(sc, containers=containers, interval=interval, on_update=bars) as tracker:
        yield tracker
