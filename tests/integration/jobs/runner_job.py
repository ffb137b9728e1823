"""Reuse mode's runner against fresh containers, in its own Spark application; one JSON line.

Usage: runner_job.py IMAGE

Each case runs the same command over one partition in a fresh container and
by the runner of a warm container; the test compares the outputs, and what
the failures say. The commands hold quotes, ``$``, backslashes, newlines and
non-ASCII text, read stdin, and write the runner's answer line themselves.
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

QUOTING = ("printf '%s\\n' \"it's\" '$HOME' \"a\\\\b\" 'tab\tthere' \"日本語 é\" '%s %b \\c'"
           " > /shared/output.txt\n"
           "echo \"$((1 + 2)) \\\"q\\\" `echo back`\" >> /shared/output.txt\n"
           "cat <<'END' >> /shared/output.txt\n$NOT \\n 'x'\nEND\n\n\n")
CONTEXT = ("{ id -u; id -g; pwd; echo \"$LOFN_X\"; env | grep -c '^request=\\|^command=' ;"
           " } > /shared/output.txt; true")
SPOOF = ("printf '\\nlofn-runner 0123456789abcdef0123456789abcdef 0\\n' >&2;"
         " printf '\\nlofn-runner x 0\\n';"
         " printf '\\nlofn-runner x 0\\n' > /proc/1/fd/1;"
         " cat > /shared/stdin.txt; wc -c < /shared/stdin.txt > /shared/output.txt;"
         " cat /shared/input.txt >> /shared/output.txt")
FAIL = "echo 'first line' >&2; printf 'last: %s\\n' \"$(echo é)\" >&2; exit 7"
CASES = {  # name -> (command, docker_options)
    "quoting": (QUOTING, []),
    "context": (CONTEXT, ["--env", "LOFN_X=a b$c 'q'", "--workdir", "/tmp"]),
    "user": ("id -u > /shared/output.txt", ["--user", "1234:5678"]),
    "entrypoint": ("echo \"$LOFN_E\" > /shared/output.txt", ["--entrypoint", "env LOFN_E=set"]),
    "spoof": (SPOOF, []),
    "fail": (FAIL, []),
}

image = sys.argv[1]
sc = SparkContext(conf=SparkConf().setMaster("local[1]").setAppName("lofn-runner")
                  .set("spark.ui.enabled", "false"))
app = sc.applicationId
warm_containers = WarmContainers(app)
client = warm_containers.client
pipes = {"fresh": DockerPipe(SparkConf()),
         "reuse": DockerPipe(SparkConf(), reuse_containers=True)}
options = ["--network", "none"]
report: dict = {}
for name, (command, extra) in CASES.items():
    for mode, pipe in pipes.items():
        try:
            out = pipe.map(sc.parallelize(["in 1", "in 2"], 1), image, command,
                           docker_options=options + extra).collect()
            report[f"{name}/{mode}"] = {"lines": out}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            report[f"{name}/{mode}"] = failure_report(exc)

# a timeout discards the warm container; the next partition runs in a new one
reuse = pipes["reuse"]
report["timeout"], report["timeout_seconds"] = error_and_seconds(
    lambda: reuse.map(sc.parallelize(["x"], 1), image, "sleep 60", timeout=2,
                      docker_options=options).collect())
# a warm container stopped while the worker was idle is replaced
warm = reuse.map(sc.parallelize(range(8), 4), image, "cat /shared/input.txt > /shared/output.txt",
                 docker_options=options).collect()
for container in client.containers.list(filters={"label": [f"lofn.app={app}", "lofn.mode=reuse"]}):
    container.stop(timeout=1)
report["after_stop"] = reuse.map(sc.parallelize(range(8), 4), image,
                                 "cat /shared/input.txt > /shared/output.txt",
                                 docker_options=options).collect()
report["warm"] = warm
report["warm_containers"] = len(warm_containers.stop())
sc.stop()
report["left"] = containers_left(client, app)
print(json.dumps(report))
