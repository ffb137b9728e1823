"""Containers sized by Spark on a standalone cluster: one worker, 2 cores, 2 fake GPUs.

The executor's Docker engine has a stand-in for NVIDIA's hook, so the
engine's own GPU driver handles the device request and puts the device IDs
it was given in the container's ``NVIDIA_VISIBLE_DEVICES``. Each container
writes the GPUs Spark assigned its task (from the map_udf, in the task), the
devices the engine gave it, and its cgroup memory limit and CPU quota.
Prints one JSON line. Arguments: IMAGE.
"""

import json
import os
import sys

from pyspark import SparkConf, SparkContext, TaskContext
from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn import DockerPipe, Resources
from tests.limits import READ_LIMITS, parse_limits

image = sys.argv[1]
sc = SparkContext(conf=SparkConf().setAppName("lofn-resources"))

COMMAND = (f"{READ_LIMITS}; echo \"$(cat /shared/input.txt)"
           " ${NVIDIA_VISIBLE_DEVICES:-none} $m $c\" > /shared/output.txt")
NO_NETWORK = ["--network", "none"]  # the executor's engine has no bridge


def assigned(partition):
    """The task's GPU addresses, as Spark assigned them, for the container to echo."""
    list(partition)
    gpus = TaskContext.get().resources().get("gpu")
    return {"input.txt": ",".join(gpus.addresses) if gpus else "none"}


def seen(lines):
    """(task's GPUs, container's GPUs, memory bytes, CPUs) of each container."""
    rows = []
    for line in lines:
        task, devices, *limits = line.split()
        rows.append([task, devices, *parse_limits(*limits)])
    return rows


rdd = sc.parallelize(range(8), 8)
pipe = DockerPipe(SparkConf(), resources=Resources(gpus=True))
two = ResourceProfileBuilder().require(TaskResourceRequests().cpus(2).resource("gpu", 2)).build
result = {
    "default": seen(pipe.map(rdd, image, COMMAND, map_udf=assigned,
                             docker_options=NO_NETWORK).collect()),
    # withResources sets the profile on the RDD itself: a new RDD for it
    "profile": seen(pipe.map(sc.parallelize(range(8), 8).withResources(two), image, COMMAND,
                             map_udf=assigned, docker_options=NO_NETWORK).collect()),
    "explicit": seen(pipe.map(rdd, image, COMMAND, map_udf=assigned,
                              docker_options=[*NO_NETWORK, "--gpus", "device=7"]).collect()),
    "unsized": seen(DockerPipe(SparkConf()).map(rdd, image, COMMAND, map_udf=assigned,
                                                docker_options=NO_NETWORK).collect()),
}
print(json.dumps(result))
sc.stop()
