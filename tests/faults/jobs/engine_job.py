"""Map one partition on local Spark and report how it failed, as one JSON line."""

import json
import sys

from pyspark import SparkConf, SparkContext

from lofn import from_spark_error
from lofn.api import DockerPipe

sc = SparkContext(conf=SparkConf().setMaster("local[1]").setAppName("lofn-engine-fault")
                  .set("spark.ui.enabled", "false"))
try:
    pipe = DockerPipe(SparkConf())
    pipe.map(sc.parallelize(["x"], 1), sys.argv[1], "cat /shared/input.txt > /shared/output.txt"
             ).collect()
    report = {"error": None}
except Exception as exc:  # noqa: BLE001 - reported to the test
    error = from_spark_error(exc) or exc
    report = {"error": type(error).__name__, "message": str(error),
              "is_oserror": isinstance(error, OSError)}
finally:
    sc.stop()
print(json.dumps(report))
