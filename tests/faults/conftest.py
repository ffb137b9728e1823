"""The faults tier: each fault of docs/faults.rst, provoked for real on Docker and Spark.

These tests reuse the integration fixtures (a local Spark context, the busybox
image, the per-test leftover check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import require
from tests.integration.conftest import clean_after_each_test  # noqa: F401

pytestmark = pytest.mark.faults


@pytest.fixture
def root_only():
    if os.getuid() != 0:
        require("root", "this fault needs mount(2) or useradd")


@pytest.fixture
def tiny_tmpfs(root_only):
    """A 1 MiB tmpfs, so that writing more than that fails with ENOSPC."""
    path = tempfile.mkdtemp(prefix="tiny-tmpfs-", dir="/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)
        os.rmdir(path)


@pytest.fixture
def read_only_dir(root_only):
    """A directory even root cannot write in (a read-only mount)."""
    path = tempfile.mkdtemp(prefix="ro-mount-", dir="/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)
        os.rmdir(path)


@pytest.fixture(scope="session")
def local_registry(docker_client):
    """A real registry (Debian's docker-registry) on 127.0.0.1, for pull tests."""
    binary = shutil.which("docker-registry")
    if binary is None:
        require("docker-registry", "install Debian's docker-registry (scripts/dev.sh does)")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = tempfile.mkdtemp(prefix="registry-", dir="/tmp")
    config = os.path.join(storage, "config.yml")
    with open(config, "w") as handle:
        handle.write(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem:\n"
                     f"    rootdirectory: {storage}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([binary, "serve", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    import time
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"docker-registry did not start: {process.stderr.read()[-2000:]}")
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(storage, ignore_errors=True)
