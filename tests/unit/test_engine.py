"""The engine plumbing: the deadline, the stderr tail, the client's error (no daemon needed)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from lofn import _engine, docker_handler
from lofn._engine import LINE_BYTES, STDERR_TAIL_LINES, Deadline, StderrTail
from lofn.errors import DockerUnavailable


def test_deadline_kills_once_the_time_has_passed():
    killed = threading.Event()
    with Deadline(0.05, killed.set) as deadline:
        assert killed.wait(5)  # the work "hangs" until the kill ends it
    assert deadline.fired


def test_deadline_ended_in_time_never_kills():
    kills = []
    with Deadline(0.2, lambda: kills.append(1)) as deadline:
        pass
    time.sleep(0.4)
    assert not deadline.fired and kills == []


def test_no_deadline_without_a_timeout():
    with Deadline(None, lambda: pytest.fail("killed")) as deadline:
        time.sleep(0.05)
    assert not deadline.fired


def test_a_kill_that_fails_has_not_fired():
    """The container ended on its own just before the deadline: the kill meets nothing."""
    def gone():
        raise RuntimeError("container is not running")

    with Deadline(0.01, gone) as deadline:
        time.sleep(0.2)
    assert not deadline.fired


def test_exit_waits_for_a_kill_under_way():
    started = threading.Event()

    def slow_kill():
        started.set()
        time.sleep(0.2)

    with Deadline(0.01, slow_kill) as deadline:
        started.wait(5)
    assert deadline.fired  # not read before the kill went through


def test_stderr_tail_keeps_the_last_lines_across_pieces():
    tail = StderrTail()
    text = "".join(f"line {i}\n" for i in range(100)).encode()
    for start in range(0, len(text), 7):  # lines split anywhere
        tail.add(text[start:start + 7])
    assert tail.text().splitlines() == [f"line {i}" for i in range(100 - STDERR_TAIL_LINES, 100)]


def test_stderr_tail_keeps_an_unfinished_last_line_and_strips_blank_ends():
    tail = StderrTail(3)
    tail.add(b"\n\na\nb\nc\nno newline")
    assert tail.text() == "b\nc\nno newline"
    short = StderrTail(3)
    short.add(b"only\n\n\n")
    assert short.text() == "only"
    assert StderrTail().text() == ""


def test_stderr_tail_replaces_bad_utf8_even_when_split():
    tail = StderrTail()
    tail.add("caf\u00e9 ".encode()[:4])  # the é split between two pieces
    tail.add("caf\u00e9 ".encode()[4:] + b"\xff\n")
    assert tail.text() == "caf\u00e9 \ufffd"


def test_stderr_tail_is_bounded_by_a_line_without_end():
    tail = StderrTail()
    for _ in range(100):
        tail.add(b"x" * 10_000)
    tail.add(b"!\n")
    assert tail.text() == "x" * (LINE_BYTES - 1) + "!"


def test_unreachable_engine_names_its_address_and_host(monkeypatch, tmp_path):
    where = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", where)
    monkeypatch.setattr(_engine, "_clients", {})
    assert _engine.address() == where
    with pytest.raises(DockerUnavailable) as info:
        docker_handler.get_client()
    message = str(info.value)
    assert message.startswith(f"cannot reach the Docker engine at {where} from host "
                              f"{os.uname().nodename}: ")
    assert "start the engine" in message and isinstance(info.value, OSError)
    assert _engine._clients == {}  # nothing cached: the next call tries again


def test_default_address_is_the_local_socket(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert _engine.address() == "unix:///var/run/docker.sock"


# -- an engine lost in the middle of a task (the real engine: tests/faults/test_engine_restart.py)

class Container:
    """A container whose engine is gone: every call fails as docker-py fails then."""

    id = "c0ffee"

    def remove(self, force=False):
        import requests
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")


@pytest.fixture
def pending(monkeypatch):
    """What remove_when_back was asked to remove (no cleanup thread is started)."""
    asked: list[str] = []
    monkeypatch.setattr(_engine, "remove_when_back", lambda names: asked.extend(names))
    return asked


def test_a_lost_engine_is_engine_lost_naming_the_step_partition_and_address(
        monkeypatch, pending):
    import urllib3

    from lofn.errors import EngineLost

    monkeypatch.setenv("DOCKER_HOST", "unix:///run/private/docker.sock")
    with pytest.raises(EngineLost) as info, _engine.in_flight(7, "checking") as flight:
        flight.step = "waiting for the container"
        flight.containers.append("lofn-1-s0-p7-a0")
        raise urllib3.exceptions.ProtocolError("Connection aborted.")
    message = str(info.value)
    for fragment in ("lost the Docker engine at unix:///run/private/docker.sock",
                     f"on host {os.uname().nodename}", "while waiting for the container",
                     "(partition 7)", "Connection aborted."):
        assert fragment in message
    assert isinstance(info.value, DockerUnavailable)
    assert pending == ["lofn-1-s0-p7-a0"]


def test_other_errors_pass_through_in_flight(pending):
    with pytest.raises(ValueError), _engine.in_flight(1):
        raise ValueError("not the engine")
    assert pending == []


def test_removal_after_another_error_keeps_that_error(pending):
    flight = _engine.Flight("waiting for the container")
    with pytest.raises(RuntimeError, match="exit code 3"):
        try:
            raise RuntimeError("exit code 3")
        finally:
            _engine.remove(Container(), flight)
    assert pending == ["c0ffee"] and flight.step == "waiting for the container"


def test_removal_is_the_error_when_nothing_else_went_wrong(pending):
    from lofn.errors import EngineLost

    with pytest.raises(EngineLost, match="while removing the container"), \
            _engine.in_flight(3) as flight:
        flight.containers.append("c0ffee")
        _engine.remove(Container(), flight)
    assert set(pending) == {"c0ffee"}


def test_reuse_mode_forgets_its_warm_containers_when_the_engine_is_lost(pending):
    docker_handler._warm[(os.getpid(), "img", "{}", "{}")] = Container()
    try:
        with pytest.raises(DockerUnavailable), _engine.in_flight(0):
            raise ConnectionResetError("reset by peer")
        assert docker_handler._warm == {} and pending == ["c0ffee"]
    finally:
        docker_handler._warm.clear()


def test_a_warm_container_found_stopped_is_replaced_once(pending):
    """After an engine restart while the worker was idle, the kept container is not running."""
    import requests
    from docker.errors import APIError

    from lofn.docker_handler import ContainerSpec, _exec_in_warm_container, _warm_key

    class Warm:
        def __init__(self, name):
            self.id = self.short_id = name
            self.removed = False

        def start(self):
            pass

        def remove(self, force=False):
            self.removed = True

    class Client:
        def __init__(self):
            self.containers = self
            self.api = self
            self.made = []

        def create(self, image, **kwargs):
            self.made.append(Warm(f"new{len(self.made)}"))
            return self.made[-1]

        def exec_create(self, container, argv, **options):
            if container == "old":
                conflict = requests.Response()
                conflict.status_code = 409
                raise APIError("409 Conflict", response=conflict,
                               explanation="container old is not running")
            return {"Id": f"exec-in-{container}"}

    spec = ContainerSpec("img", "true", labels={"lofn.app": "a"})
    old = Warm("old")
    docker_handler._warm[_warm_key(spec)] = old
    client = Client()
    try:
        flight = _engine.Flight("checking the image")
        _, container, exec_id = _exec_in_warm_container(client, spec, flight, ["true"], {})
        assert old.removed and container is client.made[0] and exec_id == "exec-in-new0"
        assert docker_handler._warm[_warm_key(spec)] is container and len(client.made) == 1
    finally:
        docker_handler._warm.clear()
