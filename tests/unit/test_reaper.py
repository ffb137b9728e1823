"""The watchdog's cleanup steps run on, whatever one of them meets."""

from __future__ import annotations

import sys

from lofn import _reaper


class ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_failed_step_or_a_closed_stderr_does_not_stop_the_next_step(tmp_path, monkeypatch):
    owned = tmp_path / f"{_reaper.temp_prefix(123)}task"
    (owned / "shared").mkdir(parents=True)
    other = tmp_path / f"{_reaper.temp_prefix(1234)}task"
    other.mkdir()

    def engine_gone():
        raise ConnectionError("engine not reachable")

    monkeypatch.setattr(sys, "stderr", ClosedPipe())  # a dead worker's stderr
    _reaper._attempt("removed stray containers", engine_gone)
    _reaper._attempt("removed its temp directories",
                     lambda: _reaper.remove_temp_directories(123, {str(tmp_path)}))
    assert not owned.exists() and other.exists()  # only pid 123's, not pid 1234's


def _watchdog(monkeypatch, sweep, removals, told="creating\ncreated abc\n"):
    """Run the watchdog's main() for worker 123, which has ended; return the removal calls."""
    import io

    from lofn import _engine

    calls = []

    def remove(labels, which=None):
        calls.append(labels)
        outcome = removals.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(_engine, "RETRY_INTERVAL", 0.01)
    monkeypatch.setattr(_reaper, "CREATION_POLL", 0.01)
    monkeypatch.setattr(_reaper, "sweep_strays", sweep)
    monkeypatch.setattr(_reaper, "_remove_containers", remove)
    monkeypatch.setattr(sys, "argv", ["reaper", "123"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(told))  # what it said; it has ended
    _reaper.main()
    return calls


def test_the_watchdog_retries_while_a_lost_engine_restarts(monkeypatch):
    import requests

    from lofn.errors import DockerUnavailable

    lost = requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")
    calls = _watchdog(monkeypatch, lambda: [], [lost, DockerUnavailable("restarting"),
                                                [{"Id": "abc"}]])
    assert len(calls) == 3  # lost, still down, then removed


def test_the_watchdog_does_not_wait_when_its_worker_made_no_container(monkeypatch):
    from lofn.errors import DockerUnavailable

    def down():
        raise DockerUnavailable("cannot reach the Docker engine")

    calls = _watchdog(monkeypatch, down, [DockerUnavailable("cannot reach the Docker engine")],
                      told="parent /tmp\n")
    assert len(calls) == 1


def test_the_watchdog_waits_for_a_container_whose_creation_was_under_way(monkeypatch):
    # the worker died between asking for a container and the engine's answer: the
    # container appears after the first look, and is removed then
    calls = _watchdog(monkeypatch, lambda: [], [[{"Id": "made"}], [], [{"Id": "late"}]],
                      told="creating\ncreated made\ncreating\n")
    assert len(calls) == 3


def test_the_watchdog_does_not_wait_for_a_creation_the_engine_answered(monkeypatch):
    calls = _watchdog(monkeypatch, lambda: [], [[]], told="creating\ncreated\n")
    assert len(calls) == 1


class Engine:
    """A client whose removals answer from a script: an error code, or None for removed."""

    def __init__(self, answers: dict[str, list]):
        self.answers = answers
        self.api = self
        self.tries: dict[str, int] = {}

    def containers(self, all, filters):
        return [{"Id": name, "Labels": {}} for name in self.answers]

    def remove_container(self, name, force):
        from docker.errors import APIError

        self.tries[name] = self.tries.get(name, 0) + 1
        script = self.answers[name]
        code = script.pop(0) if len(script) > 1 else script[0]
        if code is not None:
            response = type("Response", (), {"status_code": code, "reason": "x",
                                              "url": "u"})()
            raise APIError(f"{code}", response=response)


def test_a_removal_the_engine_refuses_is_tried_again_and_the_others_still_go(monkeypatch):
    """Podman 4.3 answers 500 'container state improper' while a container stops by itself."""
    from docker.errors import APIError

    from lofn import _engine

    monkeypatch.setattr(_reaper, "CREATION_POLL", 0.01)
    monkeypatch.setattr(_reaper, "REMOVAL_SECONDS", 0.3)
    engine = Engine({"stopping": [500, 500, None], "gone": [404], "busy": [409, 404],
                     "stuck": [500], "fine": [None]})
    monkeypatch.setattr(_engine, "client", lambda: engine)
    try:
        _reaper._remove_containers({"lofn.pid": "1"})
    except APIError as exc:  # "stuck" never goes: its error, after every other removal
        assert exc.status_code == 500
    else:
        raise AssertionError("a container that could not be removed was not reported")
    assert engine.tries["stopping"] == 3 and engine.tries["fine"] == 1
    assert engine.tries["gone"] == 1 and engine.tries["busy"] == 2
    assert engine.tries["stuck"] > 3  # tried again until the deadline
    monkeypatch.setattr(engine, "answers", {"stopping": [500, None], "gone": [404]})
    assert [c["Id"] for c in _reaper._remove_containers({"lofn.pid": "1"})] == ["stopping"]
