"""ContainerSpec -> SDK arguments, master detection, and seed-compatible helpers."""

import os

import pytest
from pyspark import SparkConf

from lofn.api import DockerPipe, _master_type, plan_fan_ins
from lofn.docker_handler import ContainerSpec, _split_run_arguments, execute


def test_defaults_run_sh_c_as_the_callers_user_with_labels():
    kwargs = ContainerSpec("img", "echo \"$X\" | wc -c", labels={"lofn.app": "a"}).create_kwargs()
    assert kwargs["entrypoint"] == ["sh", "-c"]
    assert kwargs["command"] == ["echo \"$X\" | wc -c"]
    assert kwargs["user"] == f"{os.getuid()}:{os.getgid()}"
    assert kwargs["labels"]["lofn"] == "1" and kwargs["labels"]["lofn.app"] == "a"
    assert kwargs["labels"]["lofn.pid"] == str(os.getpid())
    assert kwargs["labels"]["lofn.pidns"] == os.readlink("/proc/self/ns/pid")
    assert kwargs["pids_limit"] == 4096


def test_user_entrypoint_and_user_override_the_defaults():
    kwargs = ContainerSpec("img", "cmd", options={"entrypoint": "/bin/tini", "user": "7",
                                                  "pids_limit": -1}).create_kwargs()
    assert kwargs["pids_limit"] == -1
    assert kwargs["entrypoint"] == "/bin/tini"
    assert kwargs["command"] == ["sh", "-c", "cmd"]
    assert kwargs["user"] == "7"


def test_option_volumes_join_the_task_mounts(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "1")
    spec = ContainerSpec("img", "cmd", volumes={"/t": {"bind": "/shared", "mode": "rw"}},
                         options={"volumes": {"/d": {"bind": "/d", "mode": "ro"}},
                                  "environment": ["FROM_HOST", "A=b"]})
    kwargs = spec.create_kwargs()
    assert kwargs["volumes"] == {"/t": {"bind": "/shared", "mode": "rw"},
                                 "/d": {"bind": "/d", "mode": "ro"}}
    assert kwargs["environment"] == ["FROM_HOST=1", "A=b"]


@pytest.mark.parametrize("master, kind", [
    ("local[2]", "standalone"), ("local", "standalone"), ("spark://h:7077", "standalone"),
    ("yarn", "yarn"),
])
def test_master_types(master, kind):
    assert _master_type(SparkConf(loadDefaults=False).setMaster(master)) == (master, kind)


def test_unsupported_master_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"k8s://h:443.*local.*spark://.*yarn"):
        DockerPipe(SparkConf(loadDefaults=False).setMaster("k8s://h:443"))


@pytest.mark.parametrize("kwargs, error", [
    ({"volume": {}}, TypeError),
    ({"volumes": ["/x"]}, TypeError),
    ({"shared_mountpoint": "shared"}, ValueError),
    ({"temporary_directory_parent": "tmp"}, ValueError),
])
def test_constructor_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        DockerPipe(SparkConf(loadDefaults=False).setMaster("local"), **kwargs)


def test_docker_run_lines_split_into_flags_and_image():
    assert _split_run_arguments(["--rm", "-v", "/a:/b", "-e=X=1", "img", "sh", "-c", "x"]) == (
        ["--rm", "-v", "/a:/b", "-e=X=1"], ["img", "sh", "-c", "x"])


def test_execute_rejects_what_is_not_docker_run():
    with pytest.raises(ValueError, match="docker run"):
        execute("rm -rf /tmp/x")


@pytest.mark.parametrize("blocks, cores, max_fan_in, plan", [
    (128, 2, 32, [32, 4]),        # one merge per core, then one merge of what is left
    (1000, 2, 32, [32, 32]),      # max_fan_in bounds every merge
    (128, 2, 2, [2] * 7),         # the pairwise tree: log2(P) rounds
    (16, 4, 4, [4, 4]),
    (5, 2, 32, [3, 2]),
    (3, 8, 32, [2, 2]),           # more cores than blocks: pairs, in parallel
    (1, 2, 32, [2]),              # a lone block still goes through the command
])
def test_reduce_rounds_follow_the_cores_then_finish_at_once(blocks, cores, max_fan_in, plan):
    assert plan_fan_ins(blocks, cores, max_fan_in) == plan
    left = blocks
    for fan_in in plan:
        left = -(-left // fan_in)
    assert left == 1
