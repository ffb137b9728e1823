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
