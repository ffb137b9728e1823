"""The engine plumbing: the deadline, the stderr tail, the client's error (no daemon needed)."""

from __future__ import annotations

import os
import socket
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


class Attached:
    """docker-py's file object of an attach connection: one end of a socket pair."""

    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


def runner_pair(container=None):
    """A warm container's runner over a socket pair, and the runner's end of it."""
    ours, theirs = socket.socketpair()
    connection = socket.socket(fileno=os.dup(ours.fileno()))
    return docker_handler._Runner(container or Container(), Attached(ours), connection), theirs


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def answer_with(theirs, frames) -> threading.Thread:
    """Read one request on ``theirs`` and answer with ``frames(token)``, one send each."""
    def serve():
        request = b""
        while not request.endswith(b"\n"):
            request += theirs.recv(4096)
        token = request.split(b" ")[1]  # after the runner's key
        for data in frames(token):
            theirs.sendall(data)
            time.sleep(0.01)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_runner_requests_are_one_line_of_safe_bytes():
    command = "printf '%s' \"$HOME\" 'a\\b' \\\n日本 é\n\n"
    request = docker_handler.runner_request("k3y", "t0k", command)
    assert request.startswith(b"k3y t0k ") and request.endswith(b"\n")
    assert request.count(b"\n") == 1
    body = request[8:-1]
    assert all(byte in docker_handler._SAFE or byte == ord("\\") for byte in body)
    parts = body.split(b"\\0")
    rebuilt = parts[0] + b"".join(bytes([int(part[:3], 8)]) + part[3:] for part in parts[1:])
    assert rebuilt == command.encode()


def test_runner_answer_split_across_frames_stderr_before_it_kept():
    runner, theirs = runner_pair()
    answer_with(theirs, lambda token: [
        frame(2, b"runner's own stderr\n"),
        frame(1, b"tool: first\n\nlofn-runner " + token[:5]),  # a spoof needs the token
        frame(1, token[5:] + b" 4"),
        frame(1, b"2\n")])
    stderr = StderrTail()
    assert runner.run("true", stderr) == 42
    assert stderr.text() == "runner's own stderr\ntool: first"
    runner.close()


def test_runner_answer_with_another_token_is_stderr():
    runner, theirs = runner_pair()
    answer_with(theirs, lambda token: [
        frame(1, b"\nlofn-runner 00000000000000000000000000000000 0\n"),
        frame(1, b"\nlofn-runner " + token + b" 3\n")])
    stderr = StderrTail()
    assert runner.run("true", stderr) == 3
    assert "lofn-runner 0000" in stderr.text()
    runner.close()


@pytest.mark.parametrize("answer", [b"x\n", b"123456789012\n", b"-1\n"])
def test_runner_answer_that_no_runner_gives_is_a_failure(answer):
    runner, theirs = runner_pair()
    answer_with(theirs, lambda token: [frame(1, b"\nlofn-runner " + token + b" " + answer)])
    with pytest.raises(docker_handler.DockerFailure, match="runner answered"):
        runner.run("true", StderrTail())
    runner.close()


def test_runner_connection_closed_before_the_answer_is_runner_gone():
    runner, theirs = runner_pair()
    assert not runner.closed()
    def dying(token):
        yield frame(2, b"dying\n")
        theirs.shutdown(socket.SHUT_RDWR)  # the runner's container stopped
    answer_with(theirs, dying)
    stderr = StderrTail()
    with pytest.raises(docker_handler.RunnerGone):
        runner.run("true", stderr)
    assert stderr.text() == "dying" and runner.closed()
    runner.close()
    theirs.close()


def test_reuse_mode_forgets_its_warm_containers_when_the_engine_is_lost(pending):
    runner, theirs = runner_pair()
    docker_handler._warm[(os.getpid(), "img", "{}", "{}")] = runner
    try:
        with pytest.raises(DockerUnavailable), _engine.in_flight(0):
            raise ConnectionResetError("reset by peer")
        assert docker_handler._warm == {} and pending == ["c0ffee"]
        assert theirs.recv(1) == b""  # the connection was closed: the runner exits
    finally:
        docker_handler._warm.clear()
        theirs.close()


def test_a_warm_container_found_stopped_is_replaced(pending):
    """After an engine restart while the worker was idle, the kept container is not running."""
    from lofn.docker_handler import ContainerSpec, _warm_key, warm_runner

    class Warm:
        def __init__(self, name):
            self.id = self.short_id = name
            self.removed = False

        def start(self):
            pass

        def reload(self):
            self.attrs = {"State": {"Running": False, "ExitCode": 0}}

        def remove(self, force=False):
            self.removed = True

    class Client:
        def __init__(self):
            self.containers = self.api = self.images = self
            self.made = []
            self.ends = []

        def get(self, image):  # the image is there
            pass

        def create(self, image, **kwargs):
            assert kwargs["stdin_open"] and kwargs["command"] == [docker_handler.RUNNER]
            self.made.append(Warm(f"new{len(self.made)}"))
            return self.made[-1]

        def attach_socket(self, container, params):
            ours, theirs = socket.socketpair()
            self.ends.append(theirs)
            return Attached(ours)

    spec = ContainerSpec("img", "true", labels={"lofn.app": "a"})
    old = Warm("old")
    stopped, theirs = runner_pair(old)
    theirs.close()  # the runner exited with its container
    docker_handler._warm[_warm_key(spec)] = stopped
    client = Client()
    try:
        flight = _engine.Flight("checking the image")
        _, runner = warm_runner(client, spec, flight)
        assert old.removed and runner.container is client.made[0] and not runner.closed()
        assert docker_handler._warm[_warm_key(spec)] is runner and len(client.made) == 1
        assert warm_runner(client, spec, flight)[1] is runner  # kept while it runs
        assert client.ends[0].recv(64) == runner._key.encode() + b"\n"  # its key first
    finally:
        for runner in docker_handler._warm.values():
            runner.close()
        docker_handler._warm.clear()
        for end in client.ends:
            end.close()
