"""pipe() in warm containers against fresh ones, in its own Spark application; one JSON line.

Usage: warm_pipe_job.py IMAGE

Each case streams the same partition through the same command in a fresh
container and in a warm one (``reuse_containers=True``); the test compares
the outputs, and what the failures say. Then: many partitions in one warm
container, a command that leaves a process (its container is replaced), a
timeout, and nothing left after ``sc.stop()``.
"""

import json
import os
import sys

from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn.api import DockerPipe
from tests.warm_containers import (
    WarmContainers,
    containers_left,
    error_and_seconds,
    failure_report,
)

QUOTING = ("printf '%s\\n' \"it's\" '$HOME' \"a\\\\b\" 'tab\tthere' \"日本語 é\" '%s %b \\c';"
           " cat <<'END'\n$NOT \\n 'x'\nEND\ncat\n\n")
CONTEXT = "id -u; id -g; pwd; echo \"$LOFN_X\"; wc -l"
FAIL = "cat > /dev/null; echo 'first line' >&2; printf 'last: %s\\n' \"$(echo é)\" >&2; exit 7"
TEXT = ["plain", "日本語 é", "tab\there", "", "it's \"q\" $HOME \\n"] * 3
BINARY = [bytes(range(256)) * 40, b"\0\n\r\xff", os.urandom(3 << 20)]
CASES = {  # name -> (elements, command, docker_options, pipe keywords)
    "quoting": (TEXT, QUOTING, [], {}),
    "context": (TEXT, CONTEXT, ["--env", "LOFN_X=a b$c 'q'", "--workdir", "/tmp"], {}),
    "user": (TEXT, "id -u; cat", ["--user", "1234:5678"], {}),
    "entrypoint": (TEXT, "echo \"$LOFN_E\"; cat", ["--entrypoint", "env LOFN_E=set"], {}),
    "binary": (BINARY, "cat", [], {"binary": True, "delimiter": None}),
    "sort": ([f"{i:05d}" for i in range(20000, 0, -1)], "sort", [], {}),
    "fail": (TEXT, FAIL, [], {}),
}

image = sys.argv[1]
sc = SparkContext(conf=SparkConf().setMaster("local[1]").setAppName("lofn-warm-pipe")
                  .set("spark.ui.enabled", "false"))
app = sc.applicationId
warm_containers = WarmContainers(app)
pipes = {"fresh": DockerPipe(SparkConf()),
         "reuse": DockerPipe(SparkConf(), reuse_containers=True)}
options = ["--network", "none"]
report: dict = {}
for name, (elements, command, extra, keywords) in CASES.items():
    for mode, pipe in pipes.items():
        try:
            out = pipe.pipe(sc.parallelize(elements, 1), image, command,
                            docker_options=options + extra, **keywords).collect()
            if keywords.get("binary"):
                out = [len(b"".join(out)), b"".join(out) == b"".join(BINARY)]
            report[f"{name}/{mode}"] = {"records": out}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            report[f"{name}/{mode}"] = failure_report(exc)
report["cases_containers"] = len(warm_containers.seen)
# a pipe of a pipe: both stream in one task; the inner one gets a fresh container
chained = {mode: pipe.pipe(pipe.pipe(sc.parallelize(TEXT, 2), image, "cat",
                                     docker_options=options), image, "sort",
                           docker_options=options).collect()
           for mode, pipe in pipes.items()}
report["chained"] = chained

reuse = pipes["reuse"]
# 12 partitions, one Python worker: one warm container streams them all (its hostname)
many = reuse.pipe(sc.parallelize(range(1200), 12), image, "sed 's/^/x/'; hostname",
                  docker_options=options).collect()
report["many"] = sum(record.startswith("x") for record in many)
report["many_containers"] = len({record for record in many if not record.startswith("x")})
# a command that leaves a process: its container is not used again
leftover = reuse.pipe(sc.parallelize(range(4), 4), image,
                      "cat; hostname; sleep 30 > /dev/null 2>&1 &",
                      docker_options=options).collect()
report["leftover"] = leftover[0::2]
report["leftover_containers"] = len(set(leftover[1::2]))
# a timeout discards the warm container
report["timeout"], report["timeout_seconds"] = error_and_seconds(
    lambda: reuse.pipe(sc.parallelize(["x"], 1), image, "sleep 60", timeout=2,
                       docker_options=options).collect())
report["after_timeout"] = reuse.pipe(sc.parallelize(["a", "b"], 1), image, "cat",
                                     docker_options=options).collect()
warm_containers.stop()
sc.stop()
report["left"] = containers_left(warm_containers.client, app)
print(json.dumps(report))
