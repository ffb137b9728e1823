"""What a container may do by default, read from inside it."""

from __future__ import annotations

import os

import pytest

from lofn.api import DockerPipe

STATUS = "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status > /shared/output.txt"


def status_of(pipe, sc, image, **kwargs) -> dict[str, str]:
    lines = pipe.map(sc.parallelize(["-"], 1), image, STATUS, **kwargs).collect()
    return dict(line.split(":\t") for line in lines)


def test_no_capabilities_and_no_new_privileges_by_default(sc, pipe, busybox):
    status = status_of(pipe, sc, busybox)
    assert status == {"CapEff": "0000000000000000", "NoNewPrivs": "1"}


def test_capabilities_come_back_only_when_asked(sc, pipe, busybox):
    status = status_of(pipe, sc, busybox, docker_options=["--cap-add", "NET_RAW", "-u", "0"])
    assert int(status["CapEff"], 16) == 1 << 13  # CAP_NET_RAW alone


@pytest.mark.parametrize("options, privileged", [([], False), (["--privileged"], True)])
def test_privileged_only_when_asked(docker_client, busybox, options, privileged):
    """What the engine is asked for, inspected on a created (never started) container.

    Starting one is not possible on every host (this VM's own capability set is
    too small for --privileged), so the request itself is checked.
    """
    from lofn._options import parse_docker_options
    from lofn.docker_handler import ContainerSpec

    spec = ContainerSpec(busybox, "true", options=parse_docker_options(options))
    container = docker_client.containers.create(busybox, **spec.create_kwargs())
    try:
        host = container.attrs["HostConfig"]
    finally:
        container.remove(force=True)
    assert host["Privileged"] is privileged
    assert (host["CapDrop"] or []) == ([] if privileged else ["ALL"])
    assert ("no-new-privileges:true" in (host["SecurityOpt"] or [])) is not privileged


def test_runs_as_the_executor_user(sc, pipe, busybox):
    out = pipe.map(sc.parallelize(["-"], 1), busybox, "id -u > /shared/output.txt; id -g >>"
                   " /shared/output.txt").collect()
    assert out == [str(os.getuid()), str(os.getgid())]


def test_only_the_task_directory_is_writable(sc, busybox, tmp_path):
    from pyspark import SparkConf

    reference = tmp_path / "ref"
    reference.mkdir()
    pipe = DockerPipe(SparkConf(), volumes={str(reference): {"bind": "/ref"}})
    out = pipe.map(sc.parallelize(["-"], 1), busybox,
                   "awk '$2 == \"/shared\" || $2 == \"/ref\" { print $2, substr($4, 1, 2) }'"
                   " /proc/mounts | sort > /shared/output.txt").collect()
    assert out == ["/ref ro", "/shared rw"]


def test_network_isolation_when_asked(sc, pipe, busybox):
    out = pipe.map(sc.parallelize(["-"], 1), busybox,
                   "ls /sys/class/net > /shared/output.txt",
                   docker_options=["--network", "none"]).collect()
    assert out == ["lo"]


# The container's memory limit and CPU quota as "BYTES QUOTA PERIOD", read from
# cgroup v2 files where the container has them (a pure v2 host), else from v1 ones
# (pure v1, and hybrid hosts, where Docker puts the memory and cpu controllers on v1).
READ_LIMITS = (
    "if [ -f /sys/fs/cgroup/memory.max ]; then"
    " echo $(cat /sys/fs/cgroup/memory.max) $(cat /sys/fs/cgroup/cpu.max);"
    " elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then"
    " echo $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
    " $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us);"
    " else echo no cgroup limit files under /sys/fs/cgroup: $(ls /sys/fs/cgroup) >&2; exit 3; fi"
)


def test_memory_and_cpu_limits_when_asked(sc, pipe, busybox):
    out = pipe.map(sc.parallelize(["-"], 1), busybox, READ_LIMITS + " > /shared/output.txt",
                   docker_options=["--memory", "64m", "--cpus", "1.5"]).collect()
    memory, quota, period = map(int, out[0].split())
    assert memory == 64 << 20 and quota / period == 1.5


# The limit, read from its cgroup file (v2, or v1's pids controller); then a subshell
# starts 20 background sleeps (it exits at the first fork that fails: busybox sh stops
# there) and the shell counts the processes with its own glob, which needs no fork
FORK_20 = ("if [ -f /sys/fs/cgroup/pids.max ]; then read limit < /sys/fs/cgroup/pids.max;"
           " else read limit < /sys/fs/cgroup/pids/pids.max; fi;"
           " (i=0; while [ $i -lt 20 ]; do sleep 5 & i=$((i + 1)); done) 2>/dev/null;"
           " set -- /proc/[0-9]*; echo \"$limit $#\" > /shared/output.txt")


@pytest.mark.parametrize(("options", "limit"), [([], "4096"), (["--pids-limit", "8"], "8")])
def test_a_container_may_start_only_so_many_processes(sc, pipe, busybox, options, limit):
    out = pipe.map(sc.parallelize(["-"], 1), busybox, FORK_20, docker_options=options).collect()
    found, processes = out[0].split()
    assert found == limit
    if limit == "8":
        assert int(processes) <= 8  # the fork bomb stopped at the limit
    else:
        assert int(processes) >= 21  # the shell and its 20 sleeps
