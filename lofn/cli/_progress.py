"""What the job is doing, shown while it runs: containers started and Spark's stages.

- :class:`ContainerCounter` follows this host's Docker engine events for the
  containers of one Spark application.
- :class:`Progress` polls Spark's status tracker and shows a line per stage
  on stderr: redrawn in place on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import Any, TextIO

from lofn import _engine
from lofn.cli._render import PROG, elapsed, plural

#: The Spark job group of the jobs the ``lofn`` command runs (and cancels on Ctrl-C).
JOB_GROUP = "lofn-cli"
#: Seconds between two polls of Spark's status tracker.
POLL_INTERVAL = 0.2
#: Seconds between two progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 2.0


class ContainerCounter:
    """Counts the containers lofn starts for one Spark application.

    Every container lofn starts carries the label ``lofn.app=<application
    id>``; this follows the driver host's Docker engine events for that label
    and counts ``start`` events, and among them the long-lived containers of
    ``--reuse-containers`` (label ``lofn.mode=reuse``). Only
    this host's engine is seen: on a cluster, containers on other hosts are
    not counted.
    """

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.started: set[str] = set()
        self.removed: set[str] = set()
        self.warm: set[str] = set()
        self._lock = threading.Lock()
        self._client = _engine.connect()  # its own: the event stream holds it
        self._stream = self._client.events(
            decode=True, since=int(time.time()) - 1,
            filters={"type": "container", "label": [f"lofn.app={app_id}"]})
        self._last_event = time.monotonic()
        self._closed = False
        self._thread = threading.Thread(target=self._follow, name="lofn-cli-events",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def connect(cls, app_id: str) -> ContainerCounter | None:
        try:
            return cls(app_id)
        except Exception:  # noqa: BLE001 - no engine here: containers are not counted
            return None

    def _follow(self) -> None:
        try:
            for event in self._stream:
                action = event.get("Action") or event.get("status") or ""
                container = event.get("id") or event.get("Actor", {}).get("ID", "")
                with self._lock:
                    self._last_event = time.monotonic()
                    if action == "start":
                        self.started.add(container)
                        if event.get("Actor", {}).get("Attributes", {}).get(
                                "lofn.mode") == "reuse":
                            self.warm.add(container)
                    elif action == "destroy":
                        self.removed.add(container)
        except Exception:  # noqa: BLE001 - the stream was closed
            pass

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.started)

    def close(self, settle: float = 2.0) -> None:
        """Stop following, once the events of the finished job have arrived.

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


class Progress:
    """A background thread that shows the job's stages from Spark's status tracker.

    On a terminal, one line per stage is redrawn in place (``\\r``); otherwise
    a plain line is printed at most every ``PLAIN_INTERVAL`` seconds while a
    stage changes, and once when it ends.
    """

    def __init__(self, sc: Any, stream: TextIO, start: float,
                 counter: ContainerCounter | None, enabled: bool = True) -> None:
        self.sc = sc
        self.stream = stream
        self.start = start
        self.counter = counter
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.stages: dict[int, dict] = {}  # stage id -> latest numbers and label
        self._printed: dict[int, tuple[int, int, int]] = {}
        self._finished: set[int] = set()
        self._last_plain = 0.0
        self._drawn = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lofn-cli-progress",
                                        daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._poll(final=True)
        except Exception:  # noqa: BLE001 - Spark may be gone after an interrupt
            pass
        if self._drawn:
            self._write("\n")

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - a poll racing the end of the job
                pass

    def _poll(self, final: bool = False) -> None:
        tracker = self.sc.statusTracker()
        for job in sorted(tracker.getJobIdsForGroup(JOB_GROUP)):
            info = tracker.getJobInfo(job)
            if info is not None:
                self._update(tracker, sorted(info.stageIds))
        if self.enabled:
            self._show(final)

    def _update(self, tracker: Any, stage_ids: list[int]) -> None:
        """Take the numbers of a job's stages: the first is the map, the others reduce rounds."""
        for index, stage_id in enumerate(stage_ids):
            stage = tracker.getStageInfo(stage_id)
            if stage is None or (stage_id not in self.stages and not (
                    stage.numActiveTasks or stage.numCompletedTasks or stage.numFailedTasks)):
                continue  # not started (yet, or ever: a stage after a failure)
            if index == 0:
                label, unit = "map", "partitions"
            else:
                label, unit = f"reduce round {index}/{len(stage_ids) - 1}", "merges"
            self.stages[stage_id] = {
                "label": label, "unit": unit, "tasks": stage.numTasks,
                "done": stage.numCompletedTasks, "running": stage.numActiveTasks,
                "failed": stage.numFailedTasks}

    def _show(self, final: bool) -> None:
        now = time.monotonic()
        for stage_id in sorted(self.stages):
            if stage_id in self._finished:
                continue
            numbers = self.stages[stage_id]
            ended = numbers["done"] >= numbers["tasks"] or final
            state = (numbers["done"], numbers["running"], numbers["failed"])
            if self.tty:
                self._draw(numbers, now)
                if ended:
                    self._write("\n")
                    self._drawn = False
            elif ended or (state != self._printed.get(stage_id)
                           and now - self._last_plain >= PLAIN_INTERVAL):
                self._write(self._plain(numbers, now) + "\n")
                self._printed[stage_id] = state
                self._last_plain = now
            if ended:
                self._finished.add(stage_id)
            else:
                break  # stages run one after the other: show the first unfinished one

    def _plain(self, numbers: dict, now: float) -> str:
        text = (f"{PROG}: {numbers['label']}: {numbers['done']}/{numbers['tasks']} "
                f"{numbers['unit']} done, {numbers['running']} running, "
                f"{numbers['failed']} failed")
        if self.counter is not None:
            text += f"; {plural(self.counter.count, 'container')} started"
        return text + f"; {elapsed(now - self.start)}"

    def _draw(self, numbers: dict, now: float) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        tasks = max(numbers["tasks"], 1)
        bar_width = 16
        full = bar_width * numbers["done"] // tasks
        running = min(bar_width - full, -(-bar_width * numbers["running"] // tasks))
        bar = "#" * full + ">" * running + "." * (bar_width - full - running)
        text = (f"{numbers['label']} [{bar}] {numbers['done']}/{numbers['tasks']} done, "
                f"{numbers['running']} running, {numbers['failed']} failed")
        if self.counter is not None:
            text += f", {plural(self.counter.count, 'container')}"
        text += f", {elapsed(now - self.start)}"
        self._write("\r\x1b[K" + text[:max(width - 1, 10)])
        self._drawn = True

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def totals(self) -> dict:
        """Partitions of the map stage, reduce rounds and failed tasks, over what ran."""
        stages = [self.stages[s] for s in sorted(self.stages)]
        return {"rounds": sum(1 for s in stages if s["label"].startswith("reduce")),
                "failed": sum(s["failed"] for s in stages)}
