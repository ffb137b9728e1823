"""Reuse mode in its own Spark application: same results, isolated partitions, no leftovers.

Usage: reuse_job.py IMAGE  (prints one JSON line)
"""

import json
import os
import sys
import time

from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from example.word_count import MAP_COMMAND, REDUCE_COMMAND
from lofn.api import DockerPipe
from tests.warm_containers import WarmContainers

image = sys.argv[1]
sc = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("lofn-reuse")
                  .set("spark.ui.enabled", "false"))
app = sc.applicationId
warm_containers = WarmContainers(app)
client = warm_containers.client
text = [f"w{i % 37} w{i % 11} w{i % 5}" for i in range(4000)]
rdd = sc.parallelize(text, 16)
fresh, warm = DockerPipe(SparkConf()), DockerPipe(SparkConf(), reuse_containers=True)
results = {}
for name, pipe in (("fresh", fresh), ("reuse", warm)):
    counts = pipe.map(rdd, image, MAP_COMMAND)
    results[name] = {"map": sorted(counts.collect()),
                     "reduce": pipe.reduce(counts, image, REDUCE_COMMAND)}
# each partition must find only its own input in /shared, whatever ran before it
listing = warm.map(rdd, image, "ls -A /shared > /shared/output.txt;"
                   " touch /shared/left-behind; mkdir /shared/dir").glom().collect()
# a failed partition discards its container; the next partition gets a new one
failed = 0
try:
    warm.map(sc.parallelize(range(4), 4), image, "exit 3").collect()
except Exception:  # noqa: BLE001 - expected
    failed = 1
after_failure = warm.map(rdd, image, "cat /shared/input.txt > /shared/output.txt").count()
seen = warm_containers.stop()
sc.stop()


def left_dirs():
    return [n for n in os.listdir(os.environ.get("TMPDIR", "/tmp")) if n.startswith("lofn-")]


# the workers' watchdogs remove their containers, then their directories
deadline = time.monotonic() + 30
while (client.api.containers(all=True, filters={"label": f"lofn.app={app}"}) or left_dirs()) \
        and time.monotonic() < deadline:
    time.sleep(0.2)
print(json.dumps({
    "same_results": results["fresh"] == results["reuse"],
    "reduce_lines": len(results["reuse"]["reduce"]),
    "listings": sorted({tuple(p) for p in listing}),
    "warm_containers": len(seen),
    "failed": failed, "after_failure": after_failure,
    "left_after_stop": len(client.api.containers(all=True, filters={"label": f"lofn.app={app}"})),
    "left_dirs": left_dirs(),
}))
