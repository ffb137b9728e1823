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

A worker may die after the engine took a create request and before it
answered: the container appears after the watchdog has looked. So the
worker tells its watchdog of every creation it starts and of its outcome,
and a watchdog whose worker died with a creation under way waits for that
container (up to :data:`CREATION_SECONDS`) to remove it too.

A worker and its watchdog killed at once (the OOM killer, ``kill -9`` of a
process group) leave their containers behind; so every new watchdog, that
is the first lofn task of every worker, first removes this host's lofn
containers whose worker is no longer running (:func:`sweep_strays`).

Started by :func:`watch`, never by hand; it reads the parents to sweep,
one per line, on stdin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import IO, cast

from docker.errors import APIError

from lofn import _engine, _safefs

_watchdog: tuple[int, subprocess.Popen, set[str]] | None = None


def temp_prefix(pid: int | None = None) -> str:
    """Prefix of the temp directories owned by worker ``pid`` (default: this process)."""
    return f"lofn-{os.getpid() if pid is None else pid}-"


#: What a worker tells its watchdog, a line each: a parent of its temp directories
#: (``parent <path>``), a container creation it starts (``creating``) and its
#: outcome (``created <id>``, or ``created`` when the engine made none).
PARENT, CREATING, CREATED = "parent ", "creating", "created"
#: Seconds a watchdog waits for a container whose creation was under way when its
#: worker died: the Docker SDK's API timeout, the longest the worker would have waited.
CREATION_SECONDS = 60.0
#: Seconds between two looks for such a container (or two tries at a removal).
CREATION_POLL = 0.2
#: Seconds a removal the engine refuses is tried again.
REMOVAL_SECONDS = 15.0


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
    if parent not in _watchdog[2]:
        _tell(PARENT + parent)
        _watchdog[2].add(parent)


def creating() -> None:
    """Tell this worker's watchdog, if it has one, that a container creation starts.

    If the worker dies before :func:`created`, the watchdog waits for the
    container to remove it. A worker that made containers also has its
    watchdog wait for an engine that does not answer (one that restarts).
    """
    _tell(CREATING)


def created(container_id: str = "") -> None:
    """Tell this worker's watchdog the engine answered: it made ``container_id``, or none."""
    _tell(f"{CREATED} {container_id}".rstrip())


def _tell(line: str) -> None:
    if _watchdog is None or _watchdog[0] != os.getpid():
        return
    stdin = cast(IO[bytes], _watchdog[1].stdin)  # stdin=PIPE above
    try:
        stdin.write(line.encode() + b"\n")
        stdin.flush()
    except OSError:  # a killed watchdog; the next watch() starts another
        pass


def pid_namespace() -> str:
    """This process's pid namespace (``pid:[4026531836]``), or ``""`` if unknown."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def owner_labels(pid: int | None = None) -> dict[str, str]:
    """The labels tying a container to worker ``pid`` (default: this process) on this host.

    Every lofn container carries them, and the watchdogs find containers by
    them; the pid namespace is there so that a worker pid is only ever
    looked up in the namespace it belongs to.
    """
    return {"lofn.pid": str(os.getpid() if pid is None else pid),
            "lofn.pidns": pid_namespace(), "lofn.host": os.uname().nodename}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        pass
    return True


def sweep_strays() -> list[str]:
    """Remove this host's lofn containers whose worker is no longer running.

    Only containers labelled with this host and this pid namespace are
    looked at; a reused pid keeps its container (never removed by mistake).
    The ``lofn-<pid>-*`` directories such a container had mounted go with it.
    """
    here = owner_labels()
    del here["lofn.pid"]  # any worker's
    if not here["lofn.pidns"]:
        return []
    removed = []
    for container in _remove_containers(
            here, lambda labels: labels.get("lofn.pid", "").isdigit()
            and not _running(int(labels["lofn.pid"]))):
        removed.append(container["Id"][:12])
        prefix = temp_prefix(int(container["Labels"]["lofn.pid"]))
        for mount in container.get("Mounts") or []:
            source = mount.get("Source", "")
            for path in (source, os.path.dirname(source)):  # the shared dir, or its task dir
                if os.path.basename(path).startswith(prefix) and os.path.isdir(path):
                    _safefs.remove_tree(path, ignore_errors=True)
                    removed.append(path)
                    break
    return removed


def _remove_containers(labels: dict[str, str], which=lambda labels: True) -> list[dict]:
    """Remove the containers with all of ``labels`` for which ``which(their labels)``.

    Returns the removed containers as the engine lists them (``Id``,
    ``Labels``, ``Mounts``...).
    """
    client = _engine.client()
    removed = []
    filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
    failure: APIError | None = None
    for container in client.api.containers(all=True, filters=filters):
        if which(container["Labels"]):
            try:
                if _remove(client, container["Id"]):
                    removed.append(container)
            except APIError as exc:  # the next container still goes
                failure = failure or exc
    if failure is not None:
        raise failure
    return removed


def _remove(client, container_id: str) -> bool:
    """Force-remove a container; ``False`` if it was gone already.

    An engine's refusal is tried again for :data:`REMOVAL_SECONDS`: another
    watchdog may be removing it (409, then it is soon gone), or the engine
    may be stopping it (Podman 4.3 answers 500 "container state improper"
    to a forced removal of a container that is stopping by itself, as a
    warm one does once its worker's connection has closed).
    """
    deadline = time.monotonic() + REMOVAL_SECONDS
    while True:
        try:
            client.api.remove_container(container_id, force=True)
            return True
        except APIError as exc:
            if exc.status_code == 404:
                return False
            if time.monotonic() >= deadline:
                raise
        time.sleep(CREATION_POLL)


def remove_temp_directories(pid: int, parents: set[str]) -> list[str]:
    """Remove worker ``pid``'s temp directories (``lofn-<pid>-*``) in ``parents``."""
    removed = []
    prefix = temp_prefix(pid)
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix):
                _safefs.remove_tree(os.path.join(parent, name), ignore_errors=True)
                removed.append(os.path.join(parent, name))
    return removed


def _attempt(what: str, action) -> Exception | None:
    """Run one cleanup ``action``; report what it removed, or why it failed, on stderr.

    Neither a failure nor a closed stderr (the worker's, which may be gone by
    now) stops the watchdog's other cleanups. Returns the failure, if any.
    """
    failure = None
    try:
        removed = action()
        message = f"{what}: {', '.join(removed)}" if removed else ""
    except Exception as exc:  # noqa: BLE001 - the next cleanup must still run
        failure, message = exc, f"could not finish ({what}): {exc}"
    if message:
        try:
            print(f"lofn reaper: {message}", file=sys.stderr, flush=True)
        except OSError:
            pass
    return failure


def _when_engine_answers(action):
    """``action()``, tried again while the engine does not answer, for a bounded time."""
    deadline = time.monotonic() + _engine.RETRY_SECONDS
    while True:
        try:
            return action()
        except _engine.NOT_ANSWERING:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_engine.RETRY_INTERVAL)


def _await_creations(unanswered: int, made: set[str], removed: list[str],
                     containers) -> list[str]:
    """Remove the worker's containers until ``unanswered`` ones it was not told of are gone.

    Those are creations the engine had not answered when the worker died;
    they are waited for :data:`CREATION_SECONDS` at most (the engine may
    also never have received the request).
    """
    deadline = time.monotonic() + CREATION_SECONDS
    found: list[str] = []
    while len([i for i in removed if i not in made]) < unanswered:
        if time.monotonic() >= deadline:
            break
        time.sleep(CREATION_POLL)
        try:
            found += containers()
        except _engine.NOT_ANSWERING:
            pass
    return found


def main() -> None:
    pid = int(sys.argv[1])
    _attempt("removed stray containers of workers no longer running", sweep_strays)
    said = [line.rstrip("\n") for line in sys.stdin]  # until the worker is gone
    parents = {line[len(PARENT):] for line in said if line.startswith(PARENT)}
    answers = [line.split(" ")[1:] for line in said if line.split(" ")[0] == CREATED]
    made = {words[0] for words in answers if words}
    unanswered = said.count(CREATING) - len(answers)
    removed: list[str] = []

    def containers() -> list[str]:
        ids = [container["Id"] for container in _remove_containers(owner_labels(pid))]
        removed.extend(ids)
        return [container_id[:12] for container_id in ids]

    ended = f"worker {pid} has ended; removed its containers"
    failure = _attempt(ended, containers)
    _attempt(f"worker {pid} has ended; removed its temp directories",
             lambda: remove_temp_directories(pid, parents))
    # An engine that went away (stopped, restarting) may come back with the worker's
    # containers; a worker that made none has nothing to wait for.
    if CREATING in said and isinstance(failure, _engine.NOT_ANSWERING):
        _attempt(f"{ended} once the Docker engine answered again",
                 lambda: _when_engine_answers(containers))
    if unanswered > 0:
        _attempt(f"{ended} whose creation was under way",
                 lambda: _await_creations(unanswered, made, removed, containers))

if __name__ == "__main__":
    main()
