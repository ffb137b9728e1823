"""An end-to-end lofn job for YARN: an HDFS volume, map, reduce, map_binary to HDFS, and a
hostile image's map_binary (its output a link to a host file), refused.

Run with spark-submit --master yarn; prints one JSON line. lofn reaches the
executors in a packed environment (--archives), as docs/yarn.rst tells users.
"""

import argparse
import collections
import gzip
import json
import os
import random
import re
import sys

from pyspark import SparkConf, SparkContext, TaskContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from example.word_count import MAP_COMMAND, REDUCE_COMMAND
from lofn.api import DockerPipe
from lofn.errors import from_spark_error

parser = argparse.ArgumentParser()
parser.add_argument("--image", required=True)
parser.add_argument("--volume", required=True, help="HDFS directory mounted at /ref")
parser.add_argument("--partitions", type=int, default=8)
parser.add_argument("--secret", help="a host file a hostile map_binary links its output to")
args = parser.parse_args()

rng = random.Random(3)
words = ["genome", "read", "align", "merge", "sort", "index", "bam", "sam", "fastq", "reference"]
text = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(1500)]

sc = SparkContext(conf=SparkConf().setAppName("lofn-yarn-e2e"))
pipe = DockerPipe(SparkConf(), volumes={args.volume: {"bind": "/ref"}},
                  trace="hdfs:///e2e/trace")
rdd = sc.parallelize(text, args.partitions)


def where(_):
    context = TaskContext.get()
    import lofn
    yield (context.partitionId(), os.environ.get("CONTAINER_ID"), lofn.__file__)


placement = rdd.mapPartitions(where).collect()
seen = pipe.map(rdd, args.image, "cat /ref/marker.txt > /shared/output.txt").collect()
counts = pipe.reduce(pipe.map(rdd, args.image, MAP_COMMAND), args.image, REDUCE_COMMAND)
expected = collections.Counter(w for line in text for w in re.sub("[^a-z0-9]+", " ", line).split())

with pipe.map_binary(rdd, args.image, "gzip -c /shared/input.txt > /shared/output.bin") as out:
    listing = sorted(pipe.hdfs.client().list(out))
    merged = pipe.reduce_binary(
        sc.binaryFiles(out), args.image,
        "cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin")
removed = pipe.hdfs.client().status(out, strict=False) is None

# a hostile image: map_binary's output is a link to a host file the container cannot see
hostile = {}
if args.secret:
    parent = "/e2e/hostile"
    try:
        with pipe.map_binary(rdd, args.image, f"ln -s {args.secret} /shared/output.bin",
                             hdfs_tempdir=parent):
            hostile["ran"] = True
    except Exception as exc:  # noqa: BLE001 - reported to the test
        failure = from_spark_error(exc) or exc  # map_binary re-raises it as itself
        hostile["error"] = type(failure).__name__
        hostile["message"] = str(failure)
    client = pipe.hdfs.client()
    hostile["hdfs_files"] = {}
    for top, _, files in client.walk(parent) if client.status(parent, strict=False) else ():
        for name in files:
            with client.read(f"{top}/{name}") as reader:
                hostile["hdfs_files"][f"{top}/{name}"] = reader.read().decode("latin-1")
application = sc.applicationId
sc.stop()

print(json.dumps({
    "application": application,
    "executor_containers": sorted({c for _, c, _ in placement if c}),
    "lofn_files": sorted({f for _, _, f in placement}),
    "volume_seen": seen,
    "counts_match": {line.split("\t")[0]: int(line.split("\t")[1]) for line in counts}
    == dict(expected),
    "binary_dir": out,
    "binary_listing": listing,
    "binary_lines_match": sorted(gzip.decompress(merged).decode().splitlines()) == sorted(text),
    "binary_dir_removed": removed,
    "hostile": hostile,
}))
