"""What the job is doing, shown while it runs: Spark's stages and the containers started.

The numbers come from :mod:`lofn.progress`, which scripts and notebooks use
too: its :class:`~lofn.progress.Tracker` polls Spark's status tracker and its
:class:`~lofn.progress.ContainerCounter` follows this host's Docker engine.
:class:`Progress` shows them on stderr: tqdm bars on a terminal, plain
lines otherwise (a log, a pipe, the tests).
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from lofn.cli._render import PROG, elapsed, plural
from lofn.progress import POLL_INTERVAL, Bars, ContainerCounter, Snapshot, StageProgress, Tracker

__all__ = ["JOB_GROUP", "POLL_INTERVAL", "PLAIN_INTERVAL", "ContainerCounter", "Progress",
           "PlainLines", "stage_label"]

#: The Spark job group of the jobs the ``lofn`` command runs (and cancels on Ctrl-C).
JOB_GROUP = "lofn-cli"
#: Seconds between two progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 2.0


def stage_label(stage: StageProgress) -> tuple[str, str]:
    """What the command calls a stage and its tasks: the map, then the reduce rounds."""
    if stage.position == 0:
        return "map", "partitions"
    return f"reduce round {stage.position}/{stage.job_stages - 1}", "merges"


class PlainLines:
    """Shows snapshots as plain lines: for a stage that changes, at most one every
    ``PLAIN_INTERVAL`` seconds, and one when it ends.

    Stages run one after the other, so only the first unfinished one is shown.
    """

    def __init__(self, stream: TextIO, start: float) -> None:
        self.stream = stream
        self.start = start
        self._printed: dict[int, tuple[int, int, int]] = {}
        self._finished: set[int] = set()
        self._last = 0.0

    def __call__(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        for stage in snapshot.stages:
            if stage.stage_id in self._finished:
                continue
            ended = stage.ended or snapshot.final
            state = (stage.done, stage.running, stage.failed)
            if ended or (state != self._printed.get(stage.stage_id)
                         and now - self._last >= PLAIN_INTERVAL):
                self.stream.write(self.line(stage, snapshot.containers, now - self.start) + "\n")
                self.stream.flush()
                self._printed[stage.stage_id] = state
                self._last = now
            if not ended:
                break
            self._finished.add(stage.stage_id)

    @staticmethod
    def line(stage: StageProgress, containers: int | None, seconds: float) -> str:
        """``lofn: map: 3/4 partitions done, 1 running, 0 failed; 3 containers started; 2.1 s``"""
        label, unit = stage_label(stage)
        text = (f"{PROG}: {label}: {stage.done}/{stage.tasks} {unit} done, "
                f"{stage.running} running, {stage.failed} failed")
        if containers is not None:
            text += f"; {plural(containers, 'container')} started"
        return text + f"; {elapsed(seconds)}"


class Progress:
    """Follows the job's stages while its ``with`` block runs, and shows them on ``stream``.

    On a terminal, a tqdm bar per stage; otherwise :class:`PlainLines`; with
    ``enabled=False``, nothing (the numbers are still kept, for :meth:`totals`).
    The containers are those ``counter`` counts, for the whole application.
    """

    def __init__(self, sc: Any, stream: TextIO, start: float,
                 counter: ContainerCounter | None, enabled: bool = True) -> None:
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        view: Any = None
        if self.tty:
            view = Bars(stream, describe=lambda stage: f"{PROG}: {stage_label(stage)[0]}",
                        unit=lambda stage: stage_label(stage)[1][:-1])
        elif enabled:
            view = PlainLines(stream, start)
        self.tracker = Tracker(sc, containers=counter if counter is not None else False,
                               on_update=view)

    def __enter__(self) -> Progress:
        self.tracker.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.tracker.__exit__(*exc_info)

    def totals(self) -> dict:
        """Reduce rounds and failed tasks, over the stages that ran."""
        stages = self.tracker.stages
        return {"rounds": sum(1 for stage in stages if stage.position > 0),
                "failed": sum(stage.failed for stage in stages)}
