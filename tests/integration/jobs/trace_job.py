"""Every way a container runs, traced, in a Spark application of its own; one JSON line.

Usage: trace_job.py IMAGE TRACE_DIR STATE_DIR CACHE_DIR

On ``local[2,2]`` (a failed task is tried twice): a map whose first container
fails (the first to make ``/state/once``) and is retried, one partition
holding 64 MiB and spinning the CPU; a reduce of its output; a pipe; a map
in warm containers; a map with a result cache, run twice (the second
restores); a map that writes no output. Prints the application id and the
image ID.
"""

import json
import os
import sys

from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn.api import DockerPipe
from lofn.docker_handler import get_client

image, trace, state, cache = sys.argv[1:5]
# the first container to run fails; partition 1 holds 64 MiB (tail keeps a line without a
# newline) and counts to 1000000 in the shell (about 0.5 s of CPU: 200000 measured
# 0.09 s on CI's machine, under the 0.1 s the test asked for)
MAP = ("if mkdir /state/once 2>/dev/null; then echo 'first try fails' >&2; exit 3; fi; "
       "if grep -qx big /shared/input.txt; then head -c 67108864 /dev/zero | tail >/dev/null;"
       " i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; fi; "
       "cat /shared/input.txt > /shared/output.txt")
COPY = "cat /shared/input.txt > /shared/output.txt"

sc = SparkContext(conf=SparkConf().setMaster("local[2,2]").setAppName("lofn-trace-test")
                  .set("spark.ui.enabled", "false").set("spark.log.level", "ERROR"))
state_volume = {state: {"bind": "/state", "mode": "rw"}}
pipe = DockerPipe(SparkConf(), trace=trace, volumes=state_volume)
words = sc.parallelize(["a", "big", "c", "d"], 4)
mapped = pipe.map(words, image, MAP).collect()
reduced = pipe.reduce(sc.parallelize(["x", "y", "z"], 3), image, COPY)
piped = pipe.pipe(sc.parallelize(["p", "q"], 2), image, "cat").collect()
warm = DockerPipe(SparkConf(), trace=trace, reuse_containers=True)
reused = warm.map(sc.parallelize(["r", "s"], 2), image, COPY).collect()
cached_pipe = DockerPipe(SparkConf(), trace=trace, result_cache=cache)
first = cached_pipe.map(sc.parallelize(["u", "v"], 2), image, COPY).collect()
again = cached_pipe.map(sc.parallelize(["u", "v"], 2), image, COPY).collect()
try:  # exits 0 without an output: tried twice
    pipe.map(sc.parallelize(["m"], 1), image, "true").collect()
    missing = "no error"
except Exception as exc:  # noqa: BLE001 - the test reads which error it was
    missing = "MissingOutputError" if "MissingOutputError" in str(exc) else str(exc)[-2000:]
print(json.dumps({"app": sc.applicationId, "image_id": get_client().images.get(image).id,
                  "outputs": [mapped, reduced, piped, reused, first, again, missing]}))
sc.stop()
