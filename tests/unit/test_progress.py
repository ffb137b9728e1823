"""lofn.progress's pure parts, with a stand-in status tracker and engine (no Spark, no daemon)."""

from __future__ import annotations

import io
import queue
import threading
from collections import namedtuple

import pytest

from lofn import progress
from lofn.cli._progress import PlainLines, stage_label
from lofn.progress import Bars, ContainerCounter, Snapshot, StageProgress, Tracker, _read_stages

# the fields PySpark's SparkJobInfo and SparkStageInfo have
JobInfo = namedtuple("JobInfo", "jobId stageIds status")
StageInfo = namedtuple("StageInfo", "stageId currentAttemptId name numTasks numActiveTasks "
                                    "numCompletedTasks numFailedTasks")


class FakeStatusTracker:
    """Answers like PySpark's StatusTracker from dicts the test changes; counts the calls."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobInfo] = {}
        self.stages: dict[int, StageInfo] = {}
        self.active: set[int] = set()
        self.job_calls: list[int] = []

    def job(self, job_id, stage_ids, status="RUNNING"):
        self.jobs[job_id] = JobInfo(job_id, stage_ids, status)

    def stage(self, stage_id, tasks, running=0, done=0, failed=0, name="collect at /a/b.py:7"):
        self.stages[stage_id] = StageInfo(stage_id, 0, name, tasks, running, done, failed)
        if running:
            self.active.add(stage_id)
        else:
            self.active.discard(stage_id)

    def getActiveStageIds(self):
        return sorted(self.active)

    def getJobInfo(self, job_id):
        self.job_calls.append(job_id)
        return self.jobs.get(job_id)

    def getStageInfo(self, stage_id):
        return self.stages.get(stage_id)


def stage(stage_id=3, tasks=4, done=0, running=0, failed=0, ended=False, containers=None,
          position=0, job_stages=1, name="collect at /x/job.py:12"):
    return StageProgress(stage_id=stage_id, job_id=0, position=position, job_stages=job_stages,
                         name=name, tasks=tasks, done=done, running=running, failed=failed,
                         ended=ended, containers=containers)


# ---------------------------------------------------------------------------
# reading Spark's status tracker

def test_stages_show_up_once_started_with_their_numbers():
    tracker, state = FakeStatusTracker(), progress._State()
    tracker.job(0, [5, 4])  # stage ids in any order: the job's first is the lowest
    tracker.stage(4, tasks=3, running=2, done=1)
    tracker.stage(5, tasks=2)  # waits for stage 4's output
    _read_stages(tracker, [0], state)
    assert list(state.stages) == [4]
    assert state.stages[4] == StageProgress(
        stage_id=4, job_id=0, position=0, job_stages=2, name="collect at /a/b.py:7", tasks=3,
        done=1, running=2, failed=0, ended=False, containers=None)

    tracker.stage(4, tasks=3, done=3)
    tracker.stage(5, tasks=2, running=1, failed=1)
    _read_stages(tracker, [0], state)
    assert state.stages[4].ended and state.stages[4].done == 3
    assert state.stages[5].position == 1 and state.stages[5].failed == 1
    assert not state.stages[5].ended


def test_an_ended_job_ends_its_stages_and_is_not_asked_again():
    tracker, state = FakeStatusTracker(), progress._State()
    tracker.job(0, [0, 1], status="FAILED")
    tracker.stage(0, tasks=4, done=1, failed=1)
    tracker.stage(1, tasks=2)  # skipped: never started, never shown
    _read_stages(tracker, [0], state)
    assert list(state.stages) == [0] and state.stages[0].ended
    calls = len(tracker.job_calls)
    _read_stages(tracker, [0], state)
    assert len(tracker.job_calls) == calls


def test_a_job_spark_forgot_is_left_out():
    tracker, state = FakeStatusTracker(), progress._State()
    _read_stages(tracker, [7], state)
    assert state.stages == {} and state.jobs == {}


@pytest.mark.parametrize(("name", "label"), [
    ("collect at /home/me/job.py:12", "stage 3: collect at job.py:12"),
    ("runJob at PythonRDD.scala:181", "stage 3: runJob at PythonRDD.scala:181"),
    ("collect at <ipython-input-4-1d2e>:1", "stage 3: collect at <ipython-input-4-1d2e>:1"),
    ("my stage", "stage 3: my stage"),
    ("", "stage 3"),
])
def test_stage_label_shortens_the_call_site(name, label):
    assert stage(name=name).label == label


# ---------------------------------------------------------------------------
# the tqdm bars

def test_bars_draw_each_stage_and_close_it_when_it_ends():
    out = io.StringIO()
    bars = Bars(out)
    bars(Snapshot((stage(done=1, running=2, containers=3),), containers=3))
    bars(Snapshot((stage(done=4, ended=True, containers=4),
                   stage(stage_id=4, tasks=2, running=1, containers=1)), containers=5))
    bars(Snapshot((stage(done=4, ended=True, containers=4),
                   stage(stage_id=4, tasks=2, done=1, failed=1)), containers=5, final=True))
    lines = out.getvalue().replace("\r", "\n").splitlines()
    ours = [line for line in lines if line.startswith("stage 3: collect at job.py:12:")]
    assert "1/4" in ours[0] and "running=2, failed=0, containers=3" in ours[0]
    assert "4/4" in ours[-1] and "running=0, failed=0, containers=4" in ours[-1]
    last = [line for line in lines if line.startswith("stage 4")][-1]
    assert "1/2" in last and "failed=1" in last and "containers" not in last
    drawn = len(out.getvalue())
    bars(Snapshot((stage(done=4, ended=True),), containers=5, final=True))
    assert len(out.getvalue()) == drawn  # a closed bar is not drawn again


def test_bars_take_a_new_total():
    out = io.StringIO()
    bars = Bars(out, describe=lambda s: "custom", unit=lambda s: "merge")
    bars(Snapshot((stage(tasks=4, done=2),), containers=None))
    bars(Snapshot((stage(tasks=6, done=5),), containers=None))
    last = out.getvalue().replace("\r", "\n").splitlines()[-1]
    assert last.startswith("custom:") and "5/6" in last and "merge" in last


# ---------------------------------------------------------------------------
# the tracker's block, on stand-ins for SparkContext and the JVM's tracker

class FakeContext:
    applicationId = "app-test"

    def __init__(self, tracker: FakeStatusTracker, job_ids: list[int]) -> None:
        self.tags: set[str] = {"the-users-own"}
        self._tracker = tracker
        self._job_ids = job_ids
        self.asked: list[str] = []
        jvm_tracker = type("T", (), {"getJobIdsForTag": lambda _, tag: self._ids(tag)})()
        scala_context = type("S", (), {"statusTracker": lambda _: jvm_tracker})()
        self._jsc = type("J", (), {"sc": lambda _: scala_context})()

    def _ids(self, tag):
        self.asked.append(tag)
        return list(self._job_ids)

    def addJobTag(self, tag):
        self.tags.add(tag)

    def removeJobTag(self, tag):
        self.tags.discard(tag)

    def statusTracker(self):
        return self._tracker


def test_tracker_tags_the_block_and_reports_the_end():
    tracker = FakeStatusTracker()
    tracker.job(0, [0], status="SUCCEEDED")
    tracker.stage(0, tasks=2, done=2)
    sc = FakeContext(tracker, [0])
    snapshots = []
    with Tracker(sc, containers=False, on_update=snapshots.append) as follow:
        assert follow.tag in sc.tags and follow.tag.startswith("lofn-progress-")
        assert "," not in follow.tag  # Spark refuses a tag with a comma
    assert sc.tags == {"the-users-own"}
    assert set(sc.asked) == {follow.tag}
    assert snapshots[-1].final and snapshots[-1].containers is None
    assert [(s.stage_id, s.done, s.ended) for s in snapshots[-1].stages] == [(0, 2, True)]


def test_tracker_removes_its_tag_when_the_block_fails():
    sc = FakeContext(FakeStatusTracker(), [])
    with pytest.raises(ZeroDivisionError), Tracker(sc, containers=False):
        1 / 0  # noqa: B018
    assert sc.tags == {"the-users-own"}


def test_tracker_refuses_a_bad_interval():
    with pytest.raises(ValueError, match="interval"):
        Tracker(FakeContext(FakeStatusTracker(), []), interval=0)


# ---------------------------------------------------------------------------
# the container counter, on a stand-in engine

class FakeEvents:
    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.closed = threading.Event()

    def __iter__(self):
        while not self.closed.is_set():
            try:
                event = self.queue.get(timeout=0.05)
            except queue.Empty:
                continue
            yield event

    def close(self):
        self.closed.set()


class FakeClient:
    def __init__(self, events: FakeEvents) -> None:
        self._events = events
        self.filters = None

    def events(self, decode, since, filters):
        self.filters = filters
        return self._events

    def close(self):
        pass


def event(action, container, time_ns, **labels):
    return {"Action": action, "id": container, "timeNano": time_ns,
            "Actor": {"ID": container, "Attributes": labels}}


def test_counter_counts_starts_per_stage_from_its_own_start(monkeypatch):
    events = FakeEvents()
    client = FakeClient(events)
    monkeypatch.setattr(progress._engine, "connect", lambda: client)
    counter = ContainerCounter("app-1")
    assert client.filters == {"type": "container", "label": ["lofn.app=app-1"]}
    now = counter._since_ns
    for item in [event("start", "old", now - 1, **{"lofn.stage": "0"}),  # before the counter
                 event("start", "a", now, **{"lofn.stage": "1"}),
                 event("start", "b", now + 1, **{"lofn.stage": "1"}),
                 event("start", "c", now + 2, **{"lofn.stage": "2"}),
                 event("start", "w", now + 3, **{"lofn.mode": "reuse"}),
                 event("die", "a", now + 4),
                 *(event("destroy", name, now + 5) for name in "abc")]:
        events.queue.put(item)
    counter.close(settle=10)  # returns once every fresh container was seen removed
    assert counter.count == 4 and counter.warm == {"w"}
    assert (counter.count_for(0), counter.count_for(1), counter.count_for(2)) == (0, 2, 1)
    assert counter.removed == {"a", "b", "c"}
    assert events.closed.is_set()


def test_no_engine_no_counter(monkeypatch):
    def refuse():
        raise progress._engine.DockerUnavailable("no engine")

    monkeypatch.setattr(progress._engine, "connect", refuse)
    assert ContainerCounter.connect("app-1") is None


# ---------------------------------------------------------------------------
# the command line's plain lines

def test_cli_labels_map_then_reduce_rounds():
    assert stage_label(stage(position=0, job_stages=3)) == ("map", "partitions")
    assert stage_label(stage(position=2, job_stages=3)) == ("reduce round 2/2", "merges")


def test_plain_lines_show_the_first_unfinished_stage_and_each_end():
    out = io.StringIO()
    lines = PlainLines(out, start=0.0)
    lines(Snapshot((stage(stage_id=0, done=1, running=2),), containers=3))
    lines(Snapshot((stage(stage_id=0, done=4, ended=True),
                    stage(stage_id=1, tasks=2, position=1, job_stages=2, running=2)),
                   containers=4))
    lines(Snapshot((stage(stage_id=0, done=4, ended=True),
                    stage(stage_id=1, tasks=2, position=1, job_stages=2, done=2)),
                   containers=6, final=True))
    text = out.getvalue().splitlines()
    assert text[0].startswith("lofn: map: 1/4 partitions done, 2 running, 0 failed; "
                              "3 containers started; ")
    assert text[1].startswith("lofn: map: 4/4 partitions done, 0 running, 0 failed; "
                              "4 containers started; ")
    # stage 1 changed within PLAIN_INTERVAL of the line before: only its end is shown
    assert text[2].startswith("lofn: reduce round 1/1: 2/2 merges done, 0 running, 0 failed; "
                              "6 containers started; ")
    assert len(text) == 3


def test_plain_line_without_a_counter():
    line = PlainLines.line(stage(done=2), None, 1.0)
    assert line.startswith("lofn: map: 2/4 partitions done, 0 running, 0 failed; ")
    assert "container" not in line
