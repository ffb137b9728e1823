"""Nothing is left behind when a worker is killed with SIGKILL mid-container."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse

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


class CreateHoldingRelay:
    """A relay to the Docker engine's socket that holds back container creations.

    Everything else passes at once. A ``POST .../containers/create`` is held
    until :attr:`release` is set, then sent on even if its client has died
    meanwhile, as a request the engine had already received would be.
    :attr:`held` is set when one arrives; :attr:`listed` when the engine has
    answered a container listing filtered on ``lofn.pid=<listed_pid>``.
    """

    def __init__(self, path: str, listed_pid: int | None = None) -> None:
        self.path = path
        self.listed_pid = listed_pid
        self.held, self.release, self.listed = (threading.Event(), threading.Event(),
                                                threading.Event())
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect("/var/run/docker.sock")
            listing = threading.Event()
            threading.Thread(target=self._requests, args=(client, engine, listing),
                             daemon=True).start()
            threading.Thread(target=self._answers, args=(engine, client, listing),
                             daemon=True).start()

    def _requests(self, client, engine, listing) -> None:
        while chunk := self._receive(client):
            line = urllib.parse.unquote(chunk.split(b"\r\n", 1)[0].decode("latin-1"))
            if line.startswith("POST ") and "/containers/create" in line:
                self.held.set()
                self.release.wait()
            if (line.startswith("GET ") and "/containers/json" in line
                    and f"lofn.pid={self.listed_pid}" in line):
                listing.set()
            engine.sendall(chunk)
        engine.shutdown(socket.SHUT_WR)  # the client is gone: the engine reads end-of-file

    def _answers(self, engine, client, listing) -> None:
        while chunk := self._receive(engine):
            if listing.is_set():
                self.listed.set()
            with contextlib.suppress(OSError):  # a dead client: the answer goes nowhere
                client.sendall(chunk)
        with contextlib.suppress(OSError):
            client.close()

    @staticmethod
    def _receive(sock) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def test_worker_killed_while_the_engine_creates_its_container_leaves_nothing(
        busybox, docker_client, session_tmp, tmp_path):
    # The engine takes the create request, the worker dies before the answer, the
    # watchdog lists the worker's containers and finds none yet; only then does the
    # engine make the container. The watchdog knows a creation was under way, so it
    # waits for that container and removes it.
    relay = CreateHoldingRelay(str(tmp_path / "docker.sock"))
    env = dict(os.environ, DOCKER_HOST=f"unix://{relay.path}")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, session_tmp, busybox], env=env)
    try:
        relay.listed_pid = holder.pid
        assert relay.held.wait(60), "the holder never asked for its container"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert relay.listed.wait(30), "the watchdog never listed the worker's containers"
        relay.release.set()

        def left():
            return docker_client.api.containers(all=True,
                                                filters={"label": f"lofn.pid={holder.pid}"})

        deadline = time.monotonic() + 30
        while not left() and time.monotonic() < deadline:  # the engine makes it now
            time.sleep(0.1)
        containers, entries = wait_until_clean(docker_client, seconds=30)
        assert left() == [] and containers == [] and entries == []
    finally:
        holder.kill()
        relay.close()
        for container in docker_client.api.containers(
                all=True, filters={"label": f"lofn.pid={holder.pid}"}):
            docker_client.api.remove_container(container["Id"], force=True)
