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
