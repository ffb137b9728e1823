"""A partition that writes a request of its own into the warm container's runner; one JSON line.

Usage: hostile_runner_job.py IMAGE

Partition 0's command writes, into every pipe of the runner (pid 1) it can
open through /proc/1/fd, a request line whose command would, run by the
runner after partition 0, read the next partitions' requests and answer for
them with forged outputs. The runner must refuse it (it lacks lofn's key):
the partition after it fails, none is forged, and the next job runs in a new
warm container.
"""

import json
import os
import sys

import docker
from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn.api import DockerPipe
from lofn.errors import from_spark_error
from tests.warm_containers import containers_left

# what the injected request would run: take each next request, forge its output and answer
# (the token is the first or the second word of a request: answer for both)
FORGE = ("exec 3</proc/1/fd/10; while IFS= read -r req <&3; do set -- $req;"
         " echo FORGED > /shared/output.txt;"
         " printf '\\nlofn-runner %s 0\\n' \"$1\" \"$2\" >/proc/1/fd/2; done")
ESCAPED = "".join(f"\\0{byte:03o}" for byte in FORGE.encode())
INJECT = (f"for fd in /proc/1/fd/*; do case $(readlink $fd) in pipe:*)"
          f" printf '%s\\n' 'x {ESCAPED}' > $fd 2>/dev/null;; esac; done")
COMMAND = ("cat /shared/input.txt > /shared/output.txt;"
           f" if grep -q 'row 0' /shared/input.txt; then {INJECT}; fi")

image = sys.argv[1]
sc = SparkContext(conf=SparkConf().setMaster("local[1]").setAppName("lofn-hostile-runner")
                  .set("spark.ui.enabled", "false"))
app = sc.applicationId
pipe = DockerPipe(SparkConf(), reuse_containers=True)
options = ["--network", "none"]
rows = [f"row {i}" for i in range(4)]
report: dict = {}
try:
    report["lines"] = pipe.map(sc.parallelize(rows, 4), image, COMMAND, timeout=60,
                               docker_options=options).collect()
except Exception as exc:  # noqa: BLE001 - reported to the test
    failure = from_spark_error(exc)
    report["error"] = type(failure).__name__
    report["message"] = str(failure)
report["after"] = pipe.map(sc.parallelize(rows, 4), image,
                           "cat /shared/input.txt > /shared/output.txt",
                           docker_options=options).collect()
client = docker.from_env()
sc.stop()
report["left"] = containers_left(client, app)
print(json.dumps(report))
