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
