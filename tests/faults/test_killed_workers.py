"""Nothing is left behind when a worker is killed with SIGKILL mid-container."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import lofn_containers, wait_until_clean

HOLDER = textwrap.dedent("""
    import os, sys
    from lofn._reaper import temp_prefix, watch
    from lofn.docker_handler import ContainerSpec, run_container
    parent, image = sys.argv[1], sys.argv[2]
    watch(parent)
    shared = os.path.join(parent, temp_prefix() + "work", "shared")
    os.makedirs(shared)
    run_container(ContainerSpec(image, "sleep 600",
                                volumes={shared: {"bind": "/shared", "mode": "rw"}}))
""")


@contextlib.contextmanager
def container_holder(image: str, docker_client, parent: str):
    """A process running a lofn container, with its watchdog; SIGKILLed on exit."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, parent, image])
    try:
        deadline = time.monotonic() + 60
        while not [c for c in lofn_containers(docker_client)
                   if c["Labels"].get("lofn.pid") == str(holder.pid) and c["State"] == "running"]:
            assert time.monotonic() < deadline, "the container never started"
            assert holder.poll() is None, "the holder process died early"
            time.sleep(0.1)
        yield holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_sigkilled_process_leaves_no_container_or_temp_dir(busybox, docker_client, session_tmp):
    with container_holder(busybox, docker_client, session_tmp) as holder:
        assert any(name.startswith(f"lofn-{holder.pid}-") for name in os.listdir(session_tmp))
    containers, entries = wait_until_clean(docker_client, seconds=30)
    assert containers == [] and entries == []


def test_aborted_job_kills_the_other_task_and_its_container_goes(sc, pipe, busybox,
                                                                 docker_client):
    # partition 0 fails once partition 1's container is surely running; Spark then
    # kills partition 1's worker with SIGKILL, mid-container.
    command = "if grep -q fail /shared/input.txt; then sleep 3; exit 1; fi; sleep 600"
    with pytest.raises(Exception, match="exited with code 1"):
        pipe.map(sc.parallelize(["fail", "slow"], 2), busybox, command).collect()
    containers, entries = wait_until_clean(docker_client, seconds=30)
    assert containers == [] and entries == []


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read()


def test_worker_killed_with_its_watchdog_is_swept_by_the_next_watchdog(busybox, docker_client,
                                                                       session_tmp):
    with container_holder(busybox, docker_client, session_tmp) as holder:
        watchdogs = [child for child in _children(holder.pid)
                     if b"lofn._reaper" in _cmdline(child)]
        assert len(watchdogs) == 1, watchdogs
        os.kill(watchdogs[0], signal.SIGKILL)  # both at once, as the OOM killer might

    def left():  # the holder is gone, so lofn_containers no longer counts its container as ours
        return docker_client.api.containers(all=True, filters={"label": f"lofn.pid={holder.pid}"})

    def left_dirs():
        return [name for name in os.listdir(session_tmp) if name.startswith(f"lofn-{holder.pid}-")]

    time.sleep(2)
    assert len(left()) == 1 and len(left_dirs()) == 1, \
        "with its watchdog gone, nothing should have removed the container or its directory yet"

    # the next lofn task on this host starts a watchdog, which removes the stray container
    # and the temp directory it had mounted
    subprocess.run([sys.executable, "-c", "import sys; from lofn._reaper import watch; "
                    "watch(sys.argv[1])", session_tmp], check=True, timeout=60)
    deadline = time.monotonic() + 30
    while left() or left_dirs():
        assert time.monotonic() < deadline, f"not removed: {left()} {left_dirs()}"
        time.sleep(0.2)
