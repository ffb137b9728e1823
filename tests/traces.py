"""Synthetic lofn traces (schema ``lofn-trace/1``) for the report tests.

:func:`sample_trace` is a small job as a real one traces it: two hosts with
two Python workers each, three stages (map, map_binary, reduce), one
attempt that fails and is retried, one killed for memory and retried, a
result from the cache and a reused container whose memory was not measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

APP = "app-20261203210000-0007"
T0 = 1_796_331_600.0  # 2026-12-03 21:00:00 UTC
SCRIPT_TAIL = "bwa: fatal: <script>alert('tail')</script> & \"quotes\"\n"


def record(**fields: Any) -> dict[str, Any]:
    """One valid record: a fresh map container that succeeded, with ``fields`` changed."""
    base: dict[str, Any] = {
        "schema": "lofn-trace/1", "app": APP, "stage": 0, "partition": 0, "attempt": 0,
        "host": "node-a", "worker": 4101, "method": "map", "mode": "fresh",
        "image": "lofn/busybox:latest", "image_id": "sha256:8224599036840b6f",
        "command": "sort /shared/input.txt > /shared/output.txt", "lofn_version": "1.0.0",
        "start": T0, "end": T0 + 1.0, "status": "ok", "error": None, "exit_code": 0,
        "oom": False, "timeout": False, "peak_memory_bytes": 12 * 2**20, "cpu_seconds": 0.8,
        "meter": "cgroup v2", "bytes_in": 40_000, "bytes_out": 38_000, "stderr_tail": None,
        "limits": None,
    }
    unknown = set(fields) - set(base)
    assert not unknown, f"not trace fields: {unknown}"
    base.update(fields)
    return base


def failed(**fields: Any) -> dict[str, Any]:
    """A failed attempt: exit code 3 with a hostile stderr tail, unless ``fields`` say otherwise."""
    settings: dict[str, Any] = {
        "status": "failed", "exit_code": 3, "stderr_tail": SCRIPT_TAIL,
        "error": "DockerFailure: container exited with code 3 (<b>partition</b>)",
        "bytes_out": None}
    settings.update(fields)
    return record(**settings)


WORKERS = [("node-a", 4101), ("node-a", 4102), ("node-b", 5201), ("node-b", 5202)]


def sample_trace() -> list[dict[str, Any]]:
    """The records of a three-stage job (unsorted, as files in a directory are)."""
    records = []
    # stage 0: map over 8 partitions, two rounds of four workers; partition 5 fails, then passes
    for partition in range(8):
        host, worker = WORKERS[partition % 4]
        start = T0 + (partition // 4) * 3.2 + partition * 0.05
        took = 2.4 + partition * 0.2
        if partition == 5:
            records.append(failed(partition=5, host=host, worker=worker, start=start,
                                  end=start + 1.1))
            start += 1.2
            records.append(record(partition=5, attempt=1, host=host, worker=worker,
                                  start=start, end=start + took))
        elif partition == 6:  # a warm container: no memory figure for one exec
            records.append(record(partition=6, host=host, worker=worker, mode="reuse",
                                  start=start, end=start + took, peak_memory_bytes=None,
                                  cpu_seconds=None, meter="not measured: reused container"))
        else:
            records.append(record(partition=partition, host=host, worker=worker,
                                  start=start, end=start + took,
                                  peak_memory_bytes=(10 + partition) * 2**20))
    # stage 1: map_binary over 4 partitions; partition 2 is killed for memory, then passes
    begin = T0 + 9.0
    for partition in range(4):
        host, worker = WORKERS[partition]
        start, common = begin + partition * 0.1, {
            "stage": 1, "method": "map_binary", "image": "lofn/bwa:0.7.17",
            "command": "bwa mem /ref/genome.fa /shared/input.txt > /shared/output.txt",
            "host": host, "worker": worker, "partition": partition}
        if partition == 2:
            records.append(failed(**common, start=start, end=start + 4.0, exit_code=137,
                                  oom=True, peak_memory_bytes=512 * 2**20,
                                  error="OutOfMemory: container killed for exceeding its "
                                        "memory limit (512 MiB)",
                                  stderr_tail="[M::bwa_idx_load] read 0 ALT contigs\n"))
            start += 4.1
            records.append(record(**common, attempt=1, start=start, end=start + 5.0,
                                  peak_memory_bytes=700 * 2**20))
        else:
            records.append(record(**common, start=start, end=start + 3.0 + partition,
                                  peak_memory_bytes=(600 + partition) * 2**20))
    # stage 2: reduce in two merges, one restored from the result cache
    begin = T0 + 19.0
    merge = {"stage": 2, "method": "reduce", "command": "sort -m /shared/input.txt > "
                                                       "/shared/output.txt"}
    records.append(record(**merge, partition=0, host="node-b", worker=5201, mode="cache",
                          start=begin, end=begin + 0.02, exit_code=None,
                          peak_memory_bytes=None, cpu_seconds=None, meter="cache: no container",
                          bytes_in=None))
    records.append(record(**merge, partition=1, host="node-a", worker=4101,
                          start=begin + 0.1, end=begin + 1.6))
    return records


def write_trace(directory: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as a trace directory: one file per record, named as lofn names them."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, rec in enumerate(records):
        name = (f"{rec['app']}-s{rec['stage']}-p{rec['partition']}-a{rec['attempt']}-"
                f"{rec['worker']}-{n}.jsonl")
        (directory / name).write_text(json.dumps(rec) + "\n")
    return directory
