"""Faults around the container: the engine, the temp directory, a lost executor."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from lofn.api import DockerPipe
from lofn.errors import TemporaryDirectoryError, from_spark_error

JOBS = Path(__file__).parent / "jobs"
NO_DOCKER_USER = "lofn-nodocker"


def run_job(script, *args, env=None, user=None, timeout=300):
    command = [sys.executable, str(JOBS / script), *args]
    if user:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, cwd="/tmp")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_engine_down_is_an_actionable_error(busybox):
    report = run_job("engine_job.py", busybox,
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert report["error"] == "DockerUnavailable" and report["is_oserror"]
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in report["message"]
    assert "start the engine" in report["message"]


def test_socket_permission_denied_is_an_actionable_error(busybox, root_only, session_tmp):
    try:
        pwd.getpwnam(NO_DOCKER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", NO_DOCKER_USER], check=True)
    home = Path("/tmp") / f"{NO_DOCKER_USER}-home"
    home.mkdir(exist_ok=True)
    os.chown(home, pwd.getpwnam(NO_DOCKER_USER).pw_uid, -1)
    try:
        report = run_job("engine_job.py", busybox, user=NO_DOCKER_USER,
                         env={"HOME": str(home), "TMPDIR": str(home),
                              "JAVA_TOOL_OPTIONS": "-XX:-UsePerfData"})
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=True)
    assert report["error"] == "DockerUnavailable"
    assert "Permission denied" in report["message"]
    assert "add it to the 'docker' group" in report["message"]


def test_missing_temp_parent_is_created(sc, busybox, tmp_path):
    from pyspark import SparkConf

    parent = tmp_path / "not" / "yet"
    pipe = DockerPipe(SparkConf(), temporary_directory_parent=str(parent))
    assert pipe.map(sc.parallelize(["x"], 1), busybox,
                    "cat /shared/input.txt > /shared/output.txt").collect() == ["x"]
    assert os.listdir(parent) == []


def test_unwritable_temp_parent_fails_on_the_driver(sc, read_only_dir):
    from pyspark import SparkConf

    with pytest.raises(TemporaryDirectoryError) as info:
        DockerPipe(SparkConf(), temporary_directory_parent=read_only_dir)
    assert read_only_dir in str(info.value) and "read-only" in str(info.value)
    assert isinstance(info.value, OSError) and info.value.errno == 30


def test_full_disk_is_named_and_partial_files_removed(sc, busybox, tiny_tmpfs):
    from pyspark import SparkConf

    pipe = DockerPipe(SparkConf(), temporary_directory_parent=tiny_tmpfs)
    big = sc.parallelize(["x" * 1000] * 3000, 1)  # 3 MB into a 1 MiB filesystem
    with pytest.raises(Exception) as info:
        pipe.map(big, busybox, "cat /shared/input.txt > /shared/output.txt").collect()
    error = from_spark_error(info.value)
    assert type(error) is TemporaryDirectoryError
    assert tiny_tmpfs in str(error) and "the disk is full" in str(error)
    assert os.listdir(tiny_tmpfs) == []


def test_lost_executor_retry_neither_duplicates_nor_clashes(busybox):
    report = run_job("retry_job.py", busybox)
    assert report["killed"] >= 3  # every first attempt was killed mid-container
    expected = [f"line {i}" for i in range(30)]
    assert report["lines"] == expected  # each line once, in order
    assert report["listing"] == ["part-00000.bin", "part-00001.bin", "part-00002.bin"]
    assert report["binary_lines"] == sorted(expected)
