"""Nothing is left behind when a worker is killed with SIGKILL mid-container."""

from __future__ import annotations

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
    os.mkdir(os.path.join(parent, temp_prefix() + "work"))
    run_container(ContainerSpec(image, "sleep 600"))
""")


def test_sigkilled_process_leaves_no_container_or_temp_dir(busybox, docker_client, session_tmp):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, session_tmp, busybox])
    try:
        deadline = time.monotonic() + 60
        while not [c for c in lofn_containers(docker_client)
                   if c["Labels"].get("lofn.pid") == str(holder.pid) and c["State"] == "running"]:
            assert time.monotonic() < deadline, "the container never started"
            assert holder.poll() is None, "the holder process died early"
            time.sleep(0.1)
        assert any(name.startswith(f"lofn-{holder.pid}-") for name in os.listdir(session_tmp))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
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
