"""Kill the Python worker of each partition's first attempt mid-container; Spark retries.

local[2,4] lets a task fail up to 4 times. A driver thread finds the running
containers of attempt 0 (by label) and SIGKILLs the Python worker that owns them,
which is how an executor loss looks to the task. Prints one JSON line.
"""

import json
import os
import signal
import sys
import threading
import time

import docker
from pyspark import SparkConf, SparkContext

from lofn.api import DockerPipe

image, partitions = sys.argv[1], 3
sc = SparkContext(conf=SparkConf().setMaster("local[2,4]").setAppName("lofn-retry")
                  .set("spark.ui.enabled", "false"))
client = docker.from_env()
killed = set()
stop = threading.Event()


def killer():
    while not stop.is_set():
        mine = ["lofn.attempt=0", f"lofn.app={sc.applicationId}"]  # never another job's
        for c in client.api.containers(filters={"label": mine}):
            labels = c["Labels"]
            key = (labels["lofn.stage"], labels["lofn.partition"])
            if key not in killed:
                killed.add(key)
                os.kill(int(labels["lofn.pid"]), signal.SIGKILL)
        time.sleep(0.05)


thread = threading.Thread(target=killer, daemon=True)
thread.start()
pipe = DockerPipe(SparkConf())
rdd = sc.parallelize([f"line {i}" for i in range(30)], partitions)
# attempt 0 sleeps long enough to be killed; a retry (attempt > 0) finishes at once
command = ('if [ "$LOFN_FIRST" = 1 ] && [ ! -e /shared/.retry ]; then sleep 600; fi;'
           " cat /shared/input.txt > /shared/output.txt")


def mark_retry(partition):
    from pyspark import TaskContext
    files = {"input.txt": partition}
    if TaskContext.get().attemptNumber() > 0:
        files[".retry"] = ""
    return files


lines = pipe.map(rdd, image, command, map_udf=mark_retry,
                 docker_options=["-e", "LOFN_FIRST=1"]).collect()
with pipe.map_binary(rdd, image, command.replace("output.txt", "output.bin"),
                     map_udf=mark_retry, docker_options=["-e", "LOFN_FIRST=1"]) as directory:
    listing = sorted(os.listdir(directory))
    contents = sorted(sc.binaryFiles(directory).values().flatMap(
        lambda data: data.decode().splitlines()).collect())
stop.set()
thread.join()
sc.stop()
print(json.dumps({"lines": lines, "listing": listing, "binary_lines": contents,
                  "killed": len(killed)}))
