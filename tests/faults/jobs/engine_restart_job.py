"""A map whose Docker engine the test stops and starts again (tests/faults/test_engine_restart.py).

Usage::

    DOCKER_HOST=unix://PRIVATE.sock python engine_restart_job.py IMAGE MASTER MODE

Runs 4 partitions through a command that sleeps, so that the test can stop
the engine while containers run: MODE ``map`` (a container a partition),
``reuse`` (``map`` in warm containers, by exec) or ``pipe`` (streaming).
The last stdout line is a JSON summary: the lines the map gave (or the
lofn error it raised), how many task attempts failed, and the job's
containers still in the engine a while after it answers again, before Spark
stops (its Python workers, and their watchdogs, still live then).
"""

from __future__ import annotations

import json
import os
import sys
import time

import docker
from pyspark import SparkConf, SparkContext

from lofn.api import DockerPipe
from lofn.errors import from_spark_error

COMMANDS = {"map": "sleep 12; cat /shared/input.txt > /shared/output.txt",
            "reuse": "sleep 12; cat /shared/input.txt > /shared/output.txt",
            "pipe": "sleep 12; cat"}
DOCKER_OPTIONS = ["--network", "none"]  # a private engine has no bridge
PARTITIONS = 4
#: Seconds the job waits for what the lost engine left to be removed.
CLEANUP_TIMEOUT = 60


def failed_tasks(sc) -> int:
    tracker = sc.statusTracker()
    stages = [stage for job in tracker.getJobIdsForGroup("restart")
              for stage in tracker.getJobInfo(job).stageIds]
    return sum(tracker.getStageInfo(stage).numFailedTasks for stage in stages)


def left_behind(app: str) -> list[str]:
    """The app's containers, once the engine answers and lofn had time to remove them."""
    deadline = time.monotonic() + CLEANUP_TIMEOUT
    while True:
        try:
            engine = docker.from_env()
            left = [f"{container.name} pid={container.labels.get('lofn.pid')} "
                    f"alive={os.path.exists('/proc/' + container.labels.get('lofn.pid', 'x'))} "
                    f"{container.status}" for container in engine.containers.list(
                        all=True, filters={"label": f"lofn.app={app}"})]
            engine.close()
        except Exception as exc:  # noqa: BLE001 - not back yet
            left = [f"<the engine does not answer: {exc}>"]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def main() -> None:
    image, master, mode = sys.argv[1:4]
    conf = SparkConf().setMaster(master).setAppName("lofn engine restart test")
    sc = SparkContext(conf=conf.set("spark.log.level", "ERROR"))
    summary: dict = {"application": sc.applicationId}
    try:
        sc.setJobGroup("restart", "a map while the engine restarts")
        lines = [f"line {number}" for number in range(PARTITIONS * 3)]
        pipe = DockerPipe(conf, reuse_containers=mode == "reuse")
        run = pipe.pipe if mode == "pipe" else pipe.map
        started = time.monotonic()
        try:
            out = run(sc.parallelize(lines, PARTITIONS), image, COMMANDS[mode],
                      docker_options=DOCKER_OPTIONS).collect()
            summary.update(error=None, lines=out, expected=lines)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            failure = from_spark_error(exc)
            summary.update(error=type(failure or exc).__name__,
                           message=str(failure or exc).splitlines()[0][:2000])
        summary["seconds"] = time.monotonic() - started
        summary["failed_tasks"] = failed_tasks(sc)
        summary["left_while_workers_live"] = left_behind(sc.applicationId)
    finally:
        sc.stop()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
