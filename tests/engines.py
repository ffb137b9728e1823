"""A private Docker engine for one test: its own dockerd, stopped, restarted and removed.

The engine runs in a network namespace of its own (``unshare --net``), with
its own socket, data root, exec root (its managed containerd's state and
socket live there) and pid file, and no bridge network: ``--bridge=none``
makes dockerd delete any ``docker0`` interface it sees, which in the host's
namespace is the main engine's bridge. Containers on it need
``--network none``. Nothing of the main engine, which the rest of the suite
uses, is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import require

#: Seconds a private engine may take to start or to stop.
ENGINE_TIMEOUT = 60
#: What containers on a private engine need: it has no bridge network.
NO_NETWORK = ["--network", "none"]


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


def _main_bridges() -> set[str]:
    """The host's ``docker0`` (the main engine's bridge), which must survive a private engine."""
    return {name for name in os.listdir("/sys/class/net") if name == "docker0"}


class PrivateEngine:
    """A dockerd of this test's own; ``host`` is its ``DOCKER_HOST``."""

    def __init__(self, base: Path, env: dict | None = None) -> None:
        self.base = base
        self.env = {**os.environ, **(env or {})}
        self.host = f"unix://{base}/docker.sock"
        self.log = base / "dockerd.log"
        self.process: subprocess.Popen | None = None
        (base / "daemon.json").write_text("{}")  # not the host's /etc/docker/daemon.json

    def client(self, timeout: int = 120):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start dockerd (again, with the same data), and wait until it answers."""
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                [shutil.which("unshare") or "unshare", "--net", "--",
                 shutil.which("dockerd") or "dockerd",
                 "--config-file", str(self.base / "daemon.json"),
                 "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
                 "--pidfile", str(self.base / "docker.pid"), "-H", self.host,
                 "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
                 "--shutdown-timeout=1"],
                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True)
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the private dockerd exited with {self.process.returncode}:\n"
                            f"{self.log_tail()}", pytrace=False)
            try:
                self.client(timeout=5).ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    pytest.fail(f"the private dockerd did not answer within {ENGINE_TIMEOUT} s:"
                                f"\n{self.log_tail()}", pytrace=False)
                time.sleep(0.3)

    def stop(self) -> None:
        """Stop dockerd as an operator would (SIGTERM: it stops its containers and unmounts)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(ENGINE_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for point in sorted(_mounts_under(self.base), key=len, reverse=True):
            subprocess.run(["umount", point], check=False)
            if point in _mounts_under(self.base):
                subprocess.run(["umount", "-l", point], check=False)


@contextmanager
def private_engine(parent: str, env: dict | None = None):
    """A started :class:`PrivateEngine` under ``parent``; stopped and deleted afterwards.

    ``env`` is added to dockerd's environment.

    ``parent`` should not be the session's TMPDIR (whose entries are checked
    for lofn leftovers), and should be short: a socket path must fit in 108 bytes.
    """
    if shutil.which("dockerd") is None or shutil.which("unshare") is None:
        require("dockerd and unshare", "both are needed to start a private engine")
    if os.geteuid() != 0:
        require("root", "starting a private dockerd needs root")
    base = Path(tempfile.mkdtemp(prefix="docker-engine-", dir=parent))
    bridges = _main_bridges()
    engine = PrivateEngine(base, env)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
        left = _mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"mounts left under {base}: {left}"
        assert not base.exists(), f"{base} could not be removed"
        assert _main_bridges() >= bridges, "the host lost a Docker bridge interface"


def load_image(source, target, image: str) -> str:
    """Copy ``image`` from the engine ``source`` into the engine ``target``; return its ID."""
    found = source.images.get(image)
    named = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
    target.images.load(b"".join(found.save(named=named)))
    return found.id
