"""A lofn job against Podman's Docker-compatible API; run by tests/cluster/test_podman.py.

Usage (``DOCKER_HOST`` pointing at ``podman system service``)::

    DOCKER_HOST=unix:///path/podman.sock podman_job.py --image lofn/busybox
        [--partitions N] [--docker-option=--network=none ...]

On its own ``local[2]`` SparkContext: word count (the commands of
``example/word_count.py``) with ``DockerPipe.map`` and ``DockerPipe.reduce``;
a gzip ``map_binary`` / ``binaryFiles`` / ``reduce_binary`` round trip; a
failing command (``DockerFailure`` with its exit code and stderr); and the
word count again with ``reuse_containers=True`` (``exec`` in long-lived
containers), with a failure there too; pipes, fresh and warm; and a map
with ``resources=`` whose containers read their limits from their cgroup.
The last stdout line is a JSON object with the results, the values expected
(computed in plain Python), the engine that answered, and what was left
behind.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker  # noqa: E402
from pyspark import SparkConf, SparkContext  # noqa: E402
from standalone_job import expected_counts, make_lines, word_counts  # noqa: E402

from example.word_count import MAP_COMMAND, REDUCE_COMMAND  # noqa: E402
from lofn import Resources  # noqa: E402
from lofn.api import DockerPipe  # noqa: E402
from lofn.errors import DockerFailure  # noqa: E402
from tests.limits import READ_LIMITS, parse_limits  # noqa: E402

VOCABULARY = ["Podman", "docker", "lofn", "container", "partition", "rootless", "socket",
              "exec", "reduce", "map", "awk", "busybox", "gzip", "x1"]
GZIP_COMMAND = "gzip -c /shared/input.txt > /shared/output.bin"
CAT_COMMAND = "cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin"
FAILING_COMMAND = "echo 'lofn-on-podman: to stdout'; echo 'lofn-on-podman: to stderr' >&2; exit 7"
LEFTOVER_WAIT = 60.0


def failure(pipe: DockerPipe, sc: SparkContext, image: str, options: list[str]) -> dict:
    """Run a failing command through ``reduce`` (re-raised on the driver as lofn's own error)."""
    try:
        pipe.reduce(sc.parallelize(["a", "b"], 2), image, FAILING_COMMAND,
                    docker_options=options)
    except DockerFailure as exc:
        return {"type": type(exc).__name__, "exit_code": exc.exit_code, "stderr": exc.stderr,
                "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported, the test says what was wrong
        return {"type": type(exc).__name__, "message": str(exc)[-2000:]}
    return {"type": None}


def _is_watchdog(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"lofn._reaper" in handle.read()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--docker-option", action="append", default=[], dest="options",
                        help="a docker run flag for every container (repeat for more), "
                             "e.g. --docker-option=--network=none")
    arguments = parser.parse_args()

    client = docker.from_env()
    version = client.version()
    engine = {"host": os.environ.get("DOCKER_HOST"),
              "components": [c.get("Name") for c in version.get("Components", [])],
              "version": version.get("Version"), "api": version.get("ApiVersion")}

    lines = make_lines(arguments.lines, VOCABULARY)
    expected = expected_counts(lines)
    expected_order = [f"{w}\t{c}" for w, c in sorted(expected.items(),
                                                     key=lambda item: (-item[1], item[0]))]
    image, options = arguments.image, arguments.options
    sc = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("lofn on podman")
                      .set("spark.ui.enabled", "false")
                      .set("spark.ui.showConsoleProgress", "false"))
    sc.setLogLevel("ERROR")
    app = sc.applicationId
    seen, stop = set(), threading.Event()

    def watch():  # the reusable containers, as Podman lists them by label
        while not stop.is_set():
            for c in client.api.containers(filters={"label": [f"lofn.app={app}",
                                                              "lofn.mode=reuse"]}):
                seen.add(c["Id"])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    summary: dict = {"engine": engine, "application": app, "options": options,
                     "lines": len(lines), "expected_counts": expected}
    try:
        rdd = sc.parallelize(lines, arguments.partitions)
        pipe = DockerPipe(SparkConf())
        started = time.monotonic()
        mapped = pipe.map(rdd, image, MAP_COMMAND, docker_options=options)
        result = pipe.reduce(mapped, image, REDUCE_COMMAND, docker_options=options)
        summary["word_count"] = {"counts": word_counts(result),
                                 "sorted_as_expected": result == expected_order,
                                 "seconds": round(time.monotonic() - started, 1)}

        started = time.monotonic()
        with pipe.map_binary(rdd, image, GZIP_COMMAND, docker_options=options) as directory:
            files = sorted(os.listdir(directory))
            merged = pipe.reduce_binary(sc.binaryFiles(directory), image, CAT_COMMAND,
                                        docker_options=options)
        binary_lines = gzip.decompress(merged).decode("utf-8").splitlines()
        summary["binary"] = {"files": files, "directory_removed": not os.path.exists(directory),
                             "same_lines": Counter(binary_lines) == Counter(lines),
                             "seconds": round(time.monotonic() - started, 1)}

        summary["failure"] = failure(pipe, sc, image, options)

        # reuse mode: exec in one long-lived container per Python worker
        watcher.start()
        warm = DockerPipe(SparkConf(), reuse_containers=True)
        started = time.monotonic()
        warm_result = warm.reduce(warm.map(rdd, image, MAP_COMMAND, docker_options=options),
                                  image, REDUCE_COMMAND, docker_options=options)
        summary["reuse"] = {"same_result": warm_result == result,
                            "seconds": round(time.monotonic() - started, 1),
                            "failure": failure(warm, sc, image, options),
                            "after_failure": warm.map(sc.parallelize(lines, 2), image,
                                                      "cat /shared/input.txt > /shared/output.txt",
                                                      docker_options=options).count()}
        # streaming: fresh containers, and an exec in the warm ones
        summary["pipe"] = {mode: tool.pipe(rdd, image, "sort", docker_options=options).collect()
                           for mode, tool in (("fresh", pipe), ("reuse", warm))}
        summary["pipe"]["expected"] = [line for part in rdd.glom().collect()
                                       for line in sorted(part)]
        # containers sized by Spark (local[2]: 2 cores), read back from their cgroup
        sized = DockerPipe(SparkConf(), resources=Resources(memory="600m"))
        summary["limits"] = sorted({parse_limits(*line.split()) for line in sized.map(
            rdd, image, f'{READ_LIMITS}; echo "$m $c" > /shared/output.txt',
            docker_options=options).collect()})
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        sc.stop()
    summary["reuse"]["warm_containers"] = len(seen)

    # Python workers end with the context; each worker's watchdog then removes its
    # reusable container and directory, moments later.
    tmp = os.environ.get("TMPDIR", "/tmp")
    deadline = time.monotonic() + LEFTOVER_WAIT
    while True:
        left = client.containers.list(all=True, filters={"label": f"lofn.app={app}"})
        entries = sorted(n for n in os.listdir(tmp) if n.startswith("lofn-"))
        if not (left or entries) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    summary["left_containers"] = [c.name for c in left]
    # if any: what they are and which watchdogs still run (a flake seen twice in CI)
    summary["left_details"] = [{"name": c.name, "labels": c.labels,
                                "state": c.attrs.get("State", {}).get("Status")} for c in left]
    summary["watchdogs"] = sorted(
        pid for pid in os.listdir("/proc") if pid.isdigit() and _is_watchdog(pid)) if left else []
    summary["left_temp_entries"] = entries
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
