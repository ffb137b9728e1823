"""A pipe() command that leaves a process to forge the next partition's output; one JSON line.

Usage: hostile_pipe_job.py IMAGE

With ``reuse_containers=True`` the partitions of one Python worker stream
through one warm container. Partition 0's command leaves a process behind
that, from half a second after, for a few seconds, writes ``FORGED`` into
the stdout of every other process of the container (``/proc/PID/fd/1``: the same user may open it).
Were the container used again, partition 1's output would hold it.
"""

import json
import os
import sys

from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn.api import DockerPipe
from tests.warm_containers import containers_left

FORGER = ("sleep 0.5; for i in $(seq 50); do for fd in /proc/[0-9]*/fd/1; do"
          " case $fd in /proc/1/fd/1|/proc/$$/fd/1) ;; *) echo FORGED > $fd ;; esac;"
          " done 2>/dev/null; sleep 0.1; done")
COMMAND = ("read first; echo \"$first\"; cat;"
           f" if [ \"$first\" = hostile ]; then sh -c '{FORGER}' > /dev/null 2>&1 &"
           " else sleep 2; fi")

image = sys.argv[1]
sc = SparkContext(conf=SparkConf().setMaster("local[1]").setAppName("lofn-hostile-pipe")
                  .set("spark.ui.enabled", "false"))
app = sc.applicationId
pipe = DockerPipe(SparkConf(), reuse_containers=True)
rows = ["hostile", "row 1", "next", "row 3"]
report = {"records": pipe.pipe(sc.parallelize(rows, 2), image, COMMAND,
                               docker_options=["--network", "none"]).collect()}
sc.stop()
report["left"] = containers_left(__import__("docker").from_env(), app)
print(json.dumps(report))
