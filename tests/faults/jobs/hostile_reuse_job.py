"""Reuse mode against a hostile image, in its own Spark application; prints one JSON line.

Usage: hostile_reuse_job.py IMAGE

Every partition's command counts the processes that earlier partitions left
running (``sleep 1001``), then starts two of its own in the background: a
sleeper, and a loop that keeps pointing ``/shared/input.txt`` and
``/shared/output.txt`` at a host file (the victim). With warm containers,
a process that survived its partition would make lofn write the next
partition's input into the victim. Then map_binary in reuse mode keeps
regular outputs, and a command whose output is a link to a host secret must
be refused (by map and by map_binary) without the secret reaching the driver.
"""

import gzip
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from pyspark import SparkConf, SparkContext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
from lofn.api import DockerPipe
from lofn.errors import from_spark_error
from tests.warm_containers import WarmContainers

PARTITIONS = 24
image = sys.argv[1]
temp = os.environ.get("TMPDIR", "/tmp")
victim = os.path.join(temp, f"hostile-victim-{uuid.uuid4().hex[:8]}")
secret = os.path.join(temp, f"hostile-secret-{uuid.uuid4().hex[:8]}")
with open(victim, "w") as handle:
    handle.write("victim: must never change\n")
with open(secret, "w") as handle:
    handle.write(f"secret {uuid.uuid4().hex}\n")
victim_before = Path(victim).read_text()
secret_text = Path(secret).read_text().strip()

COUNT_SURVIVORS = ("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
                   " | grep -c '^sleep 1001'")
RACE = (f"(while :; do ln -sfn {victim} /shared/input.txt; ln -sfn {victim} /shared/next.txt;"
        " done) </dev/null >/dev/null 2>&1 &")
COMMAND = (f"survivors=$({COUNT_SURVIVORS}); wc -l < /shared/input.txt > /shared/output.txt;"
           f" echo survivors $survivors >> /shared/output.txt; {RACE}"
           " sleep 1001 </dev/null >/dev/null 2>&1 & sleep 0.2")

sc = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("lofn-hostile-reuse")
                  .set("spark.ui.enabled", "false"))
app = sc.applicationId
warm_containers = WarmContainers(app)
client = warm_containers.client
warm = DockerPipe(SparkConf(), reuse_containers=True)
NETWORK = ["--network", "none"]
rows = [f"row {i}" for i in range(PARTITIONS * 10)]
out = warm.map(sc.parallelize(rows, PARTITIONS), image, COMMAND,
               docker_options=NETWORK).glom().collect()
counts = [int(lines[0]) for lines in out]
survivors = [int(lines[1].split()[1]) for lines in out]

# map_binary in reuse mode: regular outputs are kept, a linked one refused
with warm.map_binary(sc.parallelize(rows, 4), image,
                     "gzip -c /shared/input.txt > /shared/output.bin",
                     docker_options=NETWORK) as directory:
    parts = sorted(os.listdir(directory))
    binary_lines = sorted(line for part in parts for line in gzip.decompress(
        Path(directory, part).read_bytes()).decode().splitlines())
binary_refused = None
try:
    with warm.map_binary(sc.parallelize(rows, 2), image, f"ln -s {secret} /shared/output.bin",
                         docker_options=NETWORK):
        pass
except Exception as exc:  # noqa: BLE001 - expected
    binary_refused = type(exc).__name__
    secret_in_binary_error = secret_text in str(exc)

link_refused, secret_in_error = None, None
try:
    warm.map(sc.parallelize(["x"], 1), image, f"ln -s {secret} /shared/output.txt",
             docker_options=NETWORK).collect()
except Exception as exc:  # noqa: BLE001 - expected
    failure = from_spark_error(exc)
    link_refused = type(failure).__name__ if failure else type(exc).__name__
    secret_in_error = secret_text in str(exc)
seen = warm_containers.stop()
sc.stop()


def left_dirs():
    return [n for n in os.listdir(temp) if n.startswith("lofn-")]


deadline = time.monotonic() + 30
while (client.api.containers(all=True, filters={"label": f"lofn.app={app}"}) or left_dirs()) \
        and time.monotonic() < deadline:
    time.sleep(0.2)
victim_after = Path(victim).read_text()
os.unlink(victim)
os.unlink(secret)
print(json.dumps({
    "partitions": PARTITIONS,
    "victim_unchanged": victim_after == victim_before,
    "counts": counts, "expected_counts": [10] * PARTITIONS,
    "survivors": survivors,
    "partitions_per_container": PARTITIONS / max(len(seen), 1),
    "link_refused": link_refused, "secret_in_error": secret_in_error,
    "left_containers": len(client.api.containers(all=True,
                                                 filters={"label": f"lofn.app={app}"})),
    "left_dirs": left_dirs(),
    "binary_parts": parts, "binary_lines_match": binary_lines == sorted(rows),
    "binary_refused": binary_refused, "secret_in_binary_error": secret_in_binary_error,
    "warm_containers": len(seen),
    "by_count": dict(Counter(counts)),
}))
