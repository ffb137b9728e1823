"""Run as a non-root user: map and map_binary, then report who owns what.

Usage: ownership_job.py TEMP_PARENT IMAGE  (prints one JSON line)
"""

import json
import os
import sys

from pyspark import SparkConf, SparkContext

from lofn.api import DockerPipe

parent, image = sys.argv[1], sys.argv[2]
sc = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("lofn-ownership")
                  .set("spark.ui.enabled", "false"))
pipe = DockerPipe(SparkConf(), temporary_directory_parent=parent)
rdd = sc.parallelize(["a", "b", "c", "d"], 2)
ids = pipe.map(rdd, image, "id -u > /shared/output.txt; id -g >> /shared/output.txt").collect()
with pipe.map_binary(rdd, image, "mkdir /shared/sub && cp /shared/input.txt /shared/sub/x &&"
                     " cat /shared/sub/x > /shared/output.bin") as directory:
    owners = sorted({(os.stat(os.path.join(directory, name)).st_uid,
                      os.stat(os.path.join(directory, name)).st_gid)
                     for name in os.listdir(directory)})
sc.stop()
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "container_ids": ids,
                  "binary_owners": owners, "left_in_parent": sorted(os.listdir(parent))}))
