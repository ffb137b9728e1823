"""Which warm (reuse-mode) containers a Spark application starts; for the reuse-mode jobs."""

import threading
import time

import docker


class WarmContainers:
    """Collects the ids of every running reuse-mode container of ``app`` until :meth:`stop`.

    Polls the engine every 50 ms from a daemon thread, so a job that fails
    before it calls :meth:`stop` still exits.
    """

    def __init__(self, app: str) -> None:
        self.app, self.seen = app, set()
        self.client = docker.from_env()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        labels = [f"lofn.app={self.app}", "lofn.mode=reuse"]
        while not self._stop.is_set():
            for container in self.client.api.containers(filters={"label": labels}):
                self.seen.add(container["Id"])
            time.sleep(0.05)

    def stop(self) -> set:
        self._stop.set()
        self._thread.join()
        return self.seen


def containers_left(client, app: str, wait: float = 30.0) -> int:
    """How many containers of ``app`` the engine still has after up to ``wait`` seconds.

    A stopped Spark application's workers, and their watchdogs, remove the
    warm containers a moment after ``sc.stop()``.
    """
    deadline = time.monotonic() + wait
    while client.api.containers(all=True, filters={"label": f"lofn.app={app}"}) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    return len(client.api.containers(all=True, filters={"label": f"lofn.app={app}"}))


def failure_report(exc: BaseException) -> dict:
    """What a job reports of a failed Spark job: lofn's error class, exit code and stderr."""
    from lofn.errors import from_spark_error

    failure = from_spark_error(exc)
    return {"error": type(failure).__name__, "exit_code": getattr(failure, "exit_code", None),
            "stderr": getattr(failure, "stderr", None)}


def error_and_seconds(call) -> tuple[str | None, float]:
    """Run ``call``: the class name of the lofn error it raised (``None``), and its seconds."""
    started = time.monotonic()
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - reported to the test
        error = failure_report(exc)["error"]
    return error, time.monotonic() - started
