"""The trace's cgroup meter on each layout Docker uses, in fake cgroup trees (real: test_trace)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from lofn import _trace

ID = "c0ffee" * 10 + "abcd"


def _write(path, text: str) -> None:
    """Write ``text`` whole (renamed into place): the meter's thread never reads a file
    half-written, which a real cgroup file never is (an empty read there means it is gone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(_trace, "_CGROUP", str(tmp_path))
    monkeypatch.setattr(_trace, "POLL_SECONDS", 0.01)
    return tmp_path


@pytest.mark.parametrize("scope", [f"docker/{ID}", f"system.slice/docker-{ID}.scope"])
def test_cgroup_v2_numbers_are_read_when_the_container_has_ended(root, scope):
    _write(root / "cgroup.controllers", "cpu memory pids\n")
    _write(root / scope / "memory.peak", "73400320\n")
    _write(root / scope / "cpu.stat", "usage_usec 1250000\nuser_usec 1000000\n")
    _write(root / scope / "cgroup.events", "populated 0\nfrozen 0\n")
    assert _trace.Meter(ID).result() == {"peak_memory_bytes": 73400320, "cpu_seconds": 1.25,
                                         "meter": "cgroup v2"}


def test_cgroup_v2_without_memory_peak_still_gives_cpu_time(root):
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "docker" / ID / "cpu.stat", "usage_usec 500\n")
    _write(root / "docker" / ID / "cgroup.events", "populated 0\n")
    assert _trace.Meter(ID).result() == {"peak_memory_bytes": None, "cpu_seconds": 0.0005,
                                         "meter": "cgroup v2"}


@pytest.mark.parametrize("cpu", ["cpuacct", "cpu,cpuacct"])
def test_pure_cgroup_v1_is_sampled_until_the_cgroup_goes(root, cpu):
    memory = root / "memory" / "docker" / ID / "memory.max_usage_in_bytes"
    usage = root / cpu / "docker" / ID / "cpuacct.usage"
    _write(memory, "1000\n")
    _write(usage, "2000000000\n")
    meter = _trace.Meter(ID)
    _write(memory, "5000\n")
    _write(usage, "3500000000\n")
    deadline = time.monotonic() + 60  # a loaded machine may be slow to run the thread
    while (meter._peak, meter._cpu) != (5000, 3.5) and time.monotonic() < deadline:
        time.sleep(0.01)
    shutil.rmtree(root / "memory")  # the container ended: runc removed its cgroup
    shutil.rmtree(root / cpu)
    assert meter.result() == {"peak_memory_bytes": 5000, "cpu_seconds": 3.5,
                              "meter": "cgroup v1, sampled"}


def test_pure_cgroup_v1_is_read_once_more_when_the_meter_stops(root):
    memory = root / "memory" / "docker" / ID / "memory.max_usage_in_bytes"
    usage = root / "cpuacct" / "docker" / ID / "cpuacct.usage"
    _write(memory, "1000\n")
    _write(usage, "2000000000\n")
    meter = _trace.Meter(ID)
    _write(memory, "7000\n")
    _write(usage, "4000000000\n")
    assert meter.result() == {"peak_memory_bytes": 7000, "cpu_seconds": 4.0,
                              "meter": "cgroup v1, sampled"}


def test_cgroup_v1_next_to_a_unified_tree_is_exact(root):
    _write(root / "memory" / "docker" / ID / "memory.max_usage_in_bytes", "4096\n")
    _write(root / "cpuacct" / "docker" / ID / "cpuacct.usage", "1000\n")
    _write(root / "unified" / "docker" / ID / "cgroup.events", "populated 0\n")
    assert _trace.Meter(ID).result() == {"peak_memory_bytes": 4096, "cpu_seconds": 1e-06,
                                         "meter": "cgroup v1"}


def test_no_cgroup_found_says_so(root):
    result = _trace.Meter(ID).result()
    assert result["peak_memory_bytes"] is None and result["cpu_seconds"] is None
    assert result["meter"].startswith("no cgroup of the container found on this host")


def test_a_warm_container_partition_gets_its_cpu_and_a_peak_only_if_it_rose(root):
    memory = root / "memory" / "docker" / ID / "memory.max_usage_in_bytes"
    usage = root / "cpuacct" / "docker" / ID / "cpuacct.usage"
    _write(memory, "9000\n")
    _write(usage, "1000000000\n")
    before = _trace.warm_reading(ID)
    _write(usage, "1500000000\n")
    quiet = _trace.warm_usage(ID, before)
    assert (quiet["peak_memory_bytes"], quiet["cpu_seconds"]) == (None, 0.5)
    before = _trace.warm_reading(ID)
    _write(memory, "12000\n")
    risen = _trace.warm_usage(ID, before)
    assert (risen["peak_memory_bytes"], risen["cpu_seconds"]) == (12000, 0.0)
    assert "reuse mode" in risen["meter"]
