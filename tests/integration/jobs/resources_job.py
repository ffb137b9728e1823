"""Containers sized by Spark on a local master (local[3,2]: 3 cores, 2 attempts a task).

Each container reads its own cgroup limits (v2 or v1) and writes them as its
output; prints one JSON line with what each part of the job saw.
Arguments: IMAGE TRACE_DIR.
"""

import json
import os
import sys

from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn import DockerPipe, OutOfMemory, Resources, from_spark_error
from tests.limits import READ_LIMITS, parse_limits

image, trace = sys.argv[1], sys.argv[2]
sc = SparkContext(conf=SparkConf().setMaster("local[3,2]").setAppName("lofn-resources")
                  .set("spark.ui.enabled", "false").set("spark.log.level", "ERROR"))

LIMITS = f'{READ_LIMITS}; echo "$m $c"'
# 150 MB in one buffer, touched: more than attempt 0's 100 MiB, less than attempt 1's 300 MiB
HOG = "dd if=/dev/zero of=/dev/null bs=150M count=1 2>/dev/null"


def limits(lines):
    """Sorted distinct ``(memory bytes, CPUs)`` of the containers' outputs."""
    seen = set()
    for line in lines:
        seen.add(parse_limits(*line.split()))
    return sorted(seen, key=repr)


rdd = sc.parallelize(range(6), 6)
sized = DockerPipe(SparkConf(), resources=Resources(memory="600m"), trace=trace)
result = {
    "sized": limits(sized.map(rdd, image, f"{LIMITS} > /shared/output.txt").collect()),
    "explicit": limits(sized.map(rdd, image, f"{LIMITS} > /shared/output.txt",
                                 docker_options=["--memory", "64m", "--cpus", "0.5"]).collect()),
    "pipe": limits(sized.pipe(rdd, image, f"cat > /dev/null; {LIMITS}").collect()),
    "reuse": limits(DockerPipe(SparkConf(), resources="memory=600m", reuse_containers=True)
                    .map(rdd, image, f"{LIMITS} > /shared/output.txt").collect()),
    "unsized": limits(DockerPipe(SparkConf()).map(rdd, image, f"{LIMITS} > /shared/output.txt")
                      .collect()),
}
# binaryFiles gives a pair RDD, whose Java side cannot tell its resource profile
blocks = os.path.join(os.path.dirname(trace), "blocks")
os.makedirs(blocks)
for number in range(3):
    with open(os.path.join(blocks, f"{number}.bin"), "wb") as handle:
        handle.write(bytes([number]) * 3)
result["binary"] = sized.reduce_binary(
    sc.binaryFiles(blocks), image,
    f"{LIMITS} >&2; cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin").hex()
one = sc.parallelize(["x"], 1)
grown = DockerPipe(SparkConf(), resources=Resources(memory="300m", growth=3), trace=trace)
result["grown"] = grown.map(one, image, f"{HOG} && echo survived > /shared/output.txt").collect()
try:
    DockerPipe(SparkConf(), resources=Resources(memory="300m")).map(
        one, image, f"{HOG} && echo survived > /shared/output.txt").collect()
except Exception as exc:  # noqa: BLE001 - Spark's error, with lofn's inside
    failure = from_spark_error(exc)
    assert isinstance(failure, OutOfMemory), exc
    result["not_grown"] = failure.message
print(json.dumps(result))
sc.stop()
