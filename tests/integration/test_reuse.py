"""Reuse mode: partitions run by exec in one long-lived container per Python worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

JOB = Path(__file__).parent / "jobs" / "reuse_job.py"


def test_reuse_mode_same_results_isolated_partitions_nothing_left(busybox, session_tmp):
    result = subprocess.run([sys.executable, str(JOB), busybox], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TMPDIR": session_tmp})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["same_results"] and report["reduce_lines"] == 37  # w0 .. w36
    # never a file of another partition (output.txt is the listing's own redirection)
    assert report["listings"] == [["input.txt", "output.txt"]]
    # 16 partitions x 4 calls (+ merges) ran in a handful of containers: one per worker
    # and image/mounts, plus one new one after each discarded (failed) container
    assert 1 <= report["warm_containers"] <= 8
    assert report["failed"] == 1 and report["after_failure"] == 4000
    assert report["left_after_stop"] == 0 and report["left_dirs"] == []
