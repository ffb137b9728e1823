"""Peak RSS of the Python worker while lofn maps one 1 GiB partition with ``cat``.

Usage: memory.py --reps R --bytes 1073741824 --out RESULT.json

One SparkContext on ``local[1]`` with ``spark.python.worker.reuse=false``,
so every task runs in a newly forked Python worker whose high-water mark
(``VmHWM``) is its own. The partition is generated lazily inside the task
(``sc.parallelize([0], 1).flatMap(lines)``: 100-byte lines, 1 GiB in all),
mapped with ``cat /shared/input.txt > /shared/output.txt`` and consumed with
``.count()``. A thread in this driver polls ``/proc`` every 50 ms for the
Python workers among its descendants (``pyspark.daemon`` / ``pyspark.worker``
processes; lofn's watchdog is not one) and keeps the highest ``VmHWM`` and
``VmRSS`` of each. The same generator with a plain ``.count()`` (no lofn)
is measured once as the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from common import (
    IMAGE,
    LINE_BYTES,
    LOFN_OPTIONS,
    TRIVIAL,
    big_lines,
    log,
    now,
    spark_context,
    write_json,
)

MIB = 1 << 20


def _field(pid: str, name: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler(threading.Thread):
    """Poll the Python workers below ``root`` and remember each one's peak RSS."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = str(root), interval
        self.stopped = threading.Event()
        self.peaks: dict[str, dict] = {}  # pid -> {"role", "hwm", "rss"}
        self.polls = 0

    def _python_workers(self) -> dict[str, str]:
        parents: dict[str, str] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        parents[entry] = handle.read().rsplit(")", 1)[1].split()[1]
                except (OSError, IndexError):
                    continue
        children: dict[str, list[str]] = {}
        for pid, parent in parents.items():
            children.setdefault(parent, []).append(pid)
        found, todo = {}, [self.root]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if b"pyspark.daemon" in cmdline or b"pyspark.worker" in cmdline:
                # the daemon's parent is the JVM; a forked worker's parent is the daemon
                found[pid] = "worker" if parents.get(pid) in found else "daemon"
        return found

    def run(self) -> None:
        while not self.stopped.is_set():
            for pid, role in self._python_workers().items():
                try:
                    hwm, rss = _field(pid, "VmHWM"), _field(pid, "VmRSS")
                except OSError:
                    continue
                peak = self.peaks.setdefault(pid, {"role": role, "hwm": 0, "rss": 0})
                peak["hwm"], peak["rss"] = max(peak["hwm"], hwm), max(peak["rss"], rss)
            self.polls += 1
            self.stopped.wait(self.interval)

    def measure(self, action):
        """Run ``action``; return (seconds, its result, peak worker RSS in bytes, peaks)."""
        self.peaks.clear()
        start = now()
        result = action()
        seconds = now() - start
        self.stopped.wait(3 * self.interval)  # one more poll
        workers = {pid: p for pid, p in self.peaks.items() if p["role"] == "worker"}
        peak = max((max(p["hwm"], p["rss"]) for p in workers.values()), default=0)
        return seconds, result, peak, dict(self.peaks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bytes", type=int, default=1 << 30)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from pyspark import SparkConf

    from lofn.api import DockerPipe

    lines = -(-args.bytes // LINE_BYTES)
    sc = spark_context("local[1]", "lofn-bench-memory", **{"spark.python.worker.reuse": "false"})
    app = sc.applicationId
    sampler = PeakSampler(os.getpid())
    sampler.start()
    samples: dict[str, list] = {"lofn_seconds": [], "lofn_peak_bytes": [],
                                "baseline_seconds": [], "baseline_peak_bytes": []}
    processes = []
    try:
        pipe = DockerPipe(SparkConf())
        source = sc.parallelize([0], 1).flatMap(big_lines(args.bytes))

        def check(count: int) -> int:
            if count != lines:
                raise RuntimeError(f"expected {lines} lines, got {count}")
            return count

        seconds, _, peak, peaks = sampler.measure(lambda: check(source.count()))
        samples["baseline_seconds"].append(seconds)
        samples["baseline_peak_bytes"].append(peak)
        processes.append({"what": "baseline", "peaks": peaks})
        log(f"memory baseline (generator + count, no lofn): {seconds:.1f}s, "
            f"worker peak {peak / MIB:.0f} MiB")
        for rep in range(args.reps):
            mapped = pipe.map(source, IMAGE, TRIVIAL, docker_options=LOFN_OPTIONS)
            seconds, _, peak, peaks = sampler.measure(lambda mapped=mapped: check(mapped.count()))
            samples["lofn_seconds"].append(seconds)
            samples["lofn_peak_bytes"].append(peak)
            processes.append({"what": f"lofn rep {rep + 1}", "peaks": peaks})
            log(f"memory rep {rep + 1}/{args.reps}: lofn map of {args.bytes / 2**30:.2f} GiB "
                f"with cat: {seconds:.1f}s, worker peak {peak / MIB:.0f} MiB")
    finally:
        sampler.stopped.set()
        sampler.join()
        sc.stop()
    write_json(args.out, {"apps": [app], "master": "local[1]", "bytes": args.bytes,
                          "lines": lines, "polls": sampler.polls, "samples": samples,
                          "processes": processes})


if __name__ == "__main__":
    sys.exit(main())
