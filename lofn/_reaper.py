"""Remove what a Spark Python worker leaves behind when it is killed.

Spark kills a Python worker with SIGKILL when its task is cancelled or its
job aborts, so no ``finally`` block runs and a container or temp directory
would be left behind. Each worker that runs a container therefore starts
one watchdog process (this module's ``main``) and keeps the write end of a
pipe to it. The kernel closes that pipe when the worker dies, however it
dies; the watchdog then reads end-of-file and removes the worker's
containers (label ``lofn.pid=<pid>``) and its temp directories
(``lofn-<pid>-*`` in every parent the worker registered). When the worker
ends normally there is nothing left to remove and the watchdog just exits.

Started by :func:`watch`, never by hand; it reads the parents to sweep,
one per line, on stdin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

_watchdog: tuple[int, subprocess.Popen, set[str]] | None = None


def temp_prefix(pid: int | None = None) -> str:
    """Prefix of the temp directories owned by worker ``pid`` (default: this process)."""
    return f"lofn-{os.getpid() if pid is None else pid}-"


def watch(parent: str) -> None:
    """Make sure this process has a watchdog, and that it knows about ``parent``."""
    global _watchdog
    if _watchdog is None or _watchdog[0] != os.getpid() or _watchdog[1].poll() is not None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        process = subprocess.Popen(
            [sys.executable, "-c", "from lofn._reaper import main; main()", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
            start_new_session=True, close_fds=True)
        _watchdog = (os.getpid(), process, set())
    _, process, parents = _watchdog
    if parent not in parents:
        process.stdin.write(parent.encode() + b"\n")
        process.stdin.flush()
        parents.add(parent)


def sweep(pid: int, parents: set[str]) -> list[str]:
    """Remove worker ``pid``'s containers on this host and its temp directories."""
    import docker
    from docker.errors import NotFound

    removed = []
    client = docker.from_env()
    filters = {"label": [f"lofn.pid={pid}", f"lofn.host={os.uname().nodename}"]}
    for container in client.api.containers(all=True, filters=filters):
        try:
            client.api.remove_container(container["Id"], force=True)
            removed.append(container["Id"][:12])
        except NotFound:
            pass
    prefix = temp_prefix(pid)
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                removed.append(os.path.join(parent, name))
    return removed


def main() -> None:
    pid = int(sys.argv[1])
    parents = {line.strip() for line in sys.stdin if line.strip()}  # until the worker is gone
    removed = sweep(pid, parents)
    if removed:
        print(f"lofn reaper: worker {pid} has ended; removed its " + ", ".join(removed),
              file=sys.stderr)


if __name__ == "__main__":
    main()
