"""lofn on YARN, end to end: spark-submit --master yarn with lofn shipped in a packed env.

The job mounts an HDFS directory in every container, runs a map, a tree reduce, and
map_binary with its outputs on HDFS; the volume must be downloaded once for the host.
Then a hostile image's map_binary, its output a link to a host file: refused, nothing uploaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_until_clean

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "tests" / "cluster" / "jobs" / "yarn_job.py"
PARTITIONS = 8


@pytest.fixture(scope="module")
def packed_env(tmp_path_factory):
    """lofn and its dependencies packed as users are told to (scripts/pack_env.sh)."""
    archive = tmp_path_factory.mktemp("pack") / "lofn-env.tar.gz"
    subprocess.run(["bash", str(ROOT / "scripts" / "pack_env.sh"), str(archive)], check=True,
                   capture_output=True, timeout=600)
    return archive


def test_end_to_end_job_on_yarn(hadoop, packed_env, busybox, docker_client, session_tmp, host,
                                tmp_path):
    client = hadoop.client()
    client.delete("/e2e/trace", recursive=True)
    client.write("/e2e/ref/marker.txt", b"REF-OK\n", overwrite=True)
    client.write("/e2e/ref/index/big.idx", os.urandom(1 << 20), overwrite=True)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    command = [
        str(spark_submit), "--master", "yarn", "--deploy-mode", "client",
        "--properties-file", hadoop.spark_conf,
        "--archives", f"{packed_env}#lofn-env",
        "--conf", "spark.pyspark.python=./lofn-env/bin/python",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", f"spark.executorEnv.TMPDIR={session_tmp}",
        "--conf", "spark.log.level=ERROR",
        str(JOB), "--image", busybox, "--volume", "/e2e/ref", "--partitions", str(PARTITIONS),
        "--secret", str(host.secret),
    ]
    env = {**os.environ, **hadoop.env, "PYSPARK_PYTHON": sys.executable}
    job = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600, stdin=subprocess.DEVNULL)
    where = f"exit {job.returncode}\n{job.stderr[-4000:]}\n--- cluster log:\n{hadoop.log_tail()}"
    assert job.returncode == 0, where
    report = json.loads(job.stdout.strip().splitlines()[-1])

    # lofn ran on YARN executors, imported from the shipped environment
    assert report["executor_containers"], report
    assert all("/lofn-env/" in path for path in report["lofn_files"]), report["lofn_files"]
    # every container saw the HDFS volume, downloaded once for this (single) host
    assert report["volume_seen"] == ["REF-OK"] * PARTITIONS
    assert hadoop.webhdfs_opens("/e2e/ref/marker.txt") == 1
    assert hadoop.webhdfs_opens("/e2e/ref/index/big.idx") == 1
    # map + tree reduce give the pure-Python counts
    assert report["counts_match"]
    # map_binary wrote one file per partition to HDFS, removed after the with block
    assert report["binary_listing"] == [f"part-{i:05d}.bin" for i in range(PARTITIONS)]
    assert report["binary_lines_match"] and report["binary_dir_removed"]
    assert client.status(report["binary_dir"], strict=False) is None
    # a hostile map_binary: refused on the executor, nothing of the host file on HDFS
    hostile = report["hostile"]
    assert hostile.get("error") == "UnsafeOutputError", hostile
    assert "the host refused" in hostile["message"]
    host.assert_untouched(hostile["message"], *hostile["hdfs_files"].values())

    # the trace: a record on HDFS of every container, each in a file of its own
    records = []
    for name in client.list("/e2e/trace"):
        if name.startswith(".") and name.endswith(".tmp"):
            continue  # a record a killed task was writing (the aborted stage's): never read
        assert name.endswith(".jsonl"), name
        with client.read(f"/e2e/trace/{name}") as handle:
            lines = handle.read().decode().splitlines()
        assert len(lines) == 1
        records.append(json.loads(lines[0]))
    assert {r["app"] for r in records} == {report["application"]}
    assert {r["method"] for r in records} >= {"map", "reduce", "map_binary"}
    assert sum(r["method"] == "map" and r["status"] == "ok" for r in records) >= PARTITIONS
    assert all(r["host"] and r["image_id"].startswith("sha256:") for r in records)
    # ... and lofn report reads it there, through WebHDFS (HADOOP_CONF_DIR names the namenode)
    page = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "lofn", "report", "hdfs:///e2e/trace", "-o",
                           str(page)], capture_output=True, text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    assert made.stderr == (f"lofn: report of {len(records)} trace records written to "
                           f"{page}\n")
    assert page.read_text().count('<g class="bar') == len(records)

    rm = hadoop.env["LOFN_YARN_RM_URL"]
    with urllib.request.urlopen(f"{rm}/ws/v1/cluster/apps/{report['application']}") as answer:
        app = json.load(answer)["app"]
    assert (app["state"], app["finalStatus"]) == ("FINISHED", "SUCCEEDED"), app
    # an executor killed at the end may have had a creation under way: its watchdog waits
    # for that container to remove it (wait_until_clean gives watchdogs the time they take)
    containers, entries = wait_until_clean(docker_client)
    assert containers == [] and entries == []
