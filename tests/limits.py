"""What a container's own cgroup says its limits are (cgroup v2 or v1), for the resources tests.

:data:`READ_LIMITS` is shell that sets ``$m`` (the memory limit) and ``$c``
(the CPU quota and period); :func:`parse_limits` reads the three words back.
"""

from __future__ import annotations

READ_LIMITS = (
    "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then"
    "  m=$(cat /sys/fs/cgroup/memory.max); c=$(cat /sys/fs/cgroup/cpu.max);"
    " else"
    "  m=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes);"
    "  c=\"$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
    " $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)\";"
    " fi")


def parse_limits(memory: str, quota: str, period: str) -> tuple[int | None, float | None]:
    """(memory bytes, CPUs); ``None`` for no limit (v2 says ``max``; v1 ``-1`` or a huge number)."""
    unlimited = memory == "max" or int(memory) >= 1 << 62
    return (None if unlimited else int(memory),
            None if quota in ("max", "-1") else int(quota) / int(period))
