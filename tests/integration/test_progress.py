"""lofn.progress on real Spark (local mode) and a real Docker engine.

The bars are written to a StringIO (``file=``) and the numbers read from the
tracker the block yields, once the block has ended: no timing is assumed.
"""

from __future__ import annotations

import io
import threading

import pytest

import lofn.progress

COPY = "cat /shared/input.txt > /shared/output.txt"


def bar_lines(text: str, stage_id: int) -> list[str]:
    """The states a text bar of ``stage_id`` was drawn in, in order."""
    return [line for line in text.replace("\r", "\n").splitlines()
            if line.startswith(f"stage {stage_id}: ")]


def lofn_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lofn-progress")]


def test_map_shows_every_partition_done_and_its_containers(sc, pipe, busybox):
    partitions = 5
    rdd = sc.parallelize([f"record {i}" for i in range(50)], partitions)
    out = io.StringIO()
    with lofn.progress.show(sc, file=out) as tracker:
        result = pipe.map(rdd, busybox, COPY).collect()
    assert len(result) == 50
    (stage,) = tracker.snapshot().stages
    assert (stage.tasks, stage.done, stage.running, stage.failed) == (partitions, partitions, 0, 0)
    assert stage.ended and stage.position == 0 and stage.job_stages == 1
    assert stage.containers == partitions  # fresh mode: one container per partition
    assert tracker.snapshot().containers >= partitions  # the application's, on this host
    assert stage.label.startswith(f"stage {stage.stage_id}: collect at test_progress.py:")
    last = bar_lines(out.getvalue(), stage.stage_id)[-1]
    assert f"{partitions}/{partitions}" in last, out.getvalue()
    assert f"running=0, failed=0, containers={partitions}" in last, out.getvalue()
    assert out.getvalue().endswith("\n")  # the bar was closed
    assert lofn_threads() == []


def test_failing_partition_is_counted_as_failed(sc, pipe, busybox):
    rdd = sc.parallelize([str(i) for i in range(30)], 3)
    out = io.StringIO()
    command = f"if grep -qx 15 /shared/input.txt; then exit 3; fi; {COPY}"
    with pytest.raises(Exception, match="exited with code 3"), \
            lofn.progress.show(sc, file=out) as tracker:
        pipe.map(rdd, busybox, command).collect()
    (stage,) = tracker.snapshot().stages
    assert stage.ended and stage.tasks == 3
    assert stage.failed == 1  # local mode tries a task once
    assert stage.done < 3
    last = bar_lines(out.getvalue(), stage.stage_id)[-1]
    assert f"{stage.done}/3" in last and "failed=1" in last, out.getvalue()


def test_reduce_shows_the_map_and_each_round(sc, pipe, busybox):
    rdd = sc.parallelize([str(i) for i in range(40)], 4)
    mapped = pipe.map(rdd, busybox, COPY)
    with lofn.progress.show(sc, file=io.StringIO()) as tracker:
        pipe.reduce(mapped, busybox, COPY)
    stages = tracker.snapshot().stages
    assert [s.position for s in stages] == list(range(len(stages))) and len(stages) >= 2
    assert all(s.ended and s.done == s.tasks and s.failed == 0 for s in stages)
    assert stages[0].tasks == 4 and stages[0].containers == 4
    assert stages[-1].tasks == 1 and stages[-1].containers == 1


def test_any_spark_job_in_the_block_and_only_those(sc):
    rdd = sc.parallelize(range(100), 4)
    rdd.count()  # before the block: not shown
    with lofn.progress.show(sc, file=io.StringIO()) as tracker:
        assert rdd.map(lambda x: x * 2).sum() == 9900
    (stage,) = tracker.snapshot().stages
    assert (stage.tasks, stage.done, stage.failed, stage.containers) == (4, 4, 0, 0)
    assert stage.name.startswith("sum at ")


def test_users_job_group_and_tags_are_kept(sc):
    sc.setJobGroup("users-group", "the user's own group")
    sc.addJobTag("users-tag")
    try:
        before = set(sc.statusTracker().getJobIdsForGroup("users-group"))
        with lofn.progress.show(sc, file=io.StringIO(), containers=False) as tracker:
            assert tracker.tag in sc.getJobTags()
            sc.parallelize(range(10), 2).count()
        assert sc.getLocalProperty("spark.jobGroup.id") == "users-group"
        assert set(sc.getJobTags()) == {"users-tag"}
        (stage,) = tracker.snapshot().stages
        # the job ran in the user's group, tag or not
        assert set(sc.statusTracker().getJobIdsForGroup("users-group")) - before == {
            stage.job_id}
        assert stage.containers is None and tracker.snapshot().containers is None
    finally:
        sc.clearJobTags()
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
        sc.setLocalProperty("spark.job.interruptOnCancel", None)


def test_default_output_is_stderr_and_nothing_without_the_block(sc, pipe, busybox, capsys):
    rdd = sc.parallelize([str(i) for i in range(20)], 2)
    pipe.map(rdd, busybox, COPY).collect()
    assert capsys.readouterr() == ("", "")  # no block, no progress
    assert lofn_threads() == []

    with lofn.progress.show(sc) as tracker:  # not a notebook: tqdm.auto writes text to stderr
        pipe.map(rdd, busybox, COPY).collect()
    out, err = capsys.readouterr()
    (stage,) = tracker.snapshot().stages
    assert out == ""
    assert "2/2" in bar_lines(err, stage.stage_id)[-1]
