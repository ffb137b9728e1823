"""Files containers write belong to the executor's user, not root.

A real Spark job runs as an unprivileged user in the ``docker`` group; the
containers it starts must run as that user, its outputs must be owned by it,
and nothing (root-owned or not) may remain in its temp parent.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import require

USER = "lofn-test"
JOB = Path(__file__).parent / "jobs" / "ownership_job.py"


@pytest.fixture(scope="module")
def unprivileged_user():
    if os.getuid() != 0:
        require("root", "creating an unprivileged test user needs root")
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        require("useradd and runuser", "not on this machine")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--groups", "docker", USER], check=True)
    subprocess.run(["usermod", "-aG", "docker", USER], check=True)
    return pwd.getpwnam(USER)


def test_outputs_are_owned_by_the_executor_user(unprivileged_user, busybox):
    home = tempfile.mkdtemp(prefix="owner-home-", dir="/tmp")  # the session tmp is root-only
    parent = os.path.join(home, "lofn-tmp")
    os.mkdir(parent)
    for path in (home, parent):
        os.chown(path, unprivileged_user.pw_uid, unprivileged_user.pw_gid)
    env = {"HOME": home, "TMPDIR": home, "PATH": os.environ["PATH"],
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           # no /tmp/hsperfdata_<user> left behind by the user's JVM
           "JAVA_TOOL_OPTIONS": "-XX:-UsePerfData"}
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    try:
        result = subprocess.run(
            ["runuser", "-u", USER, "--", sys.executable, str(JOB), parent, busybox],
            env=env, capture_output=True, text=True, timeout=300, cwd=home)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        uid, gid = unprivileged_user.pw_uid, unprivileged_user.pw_gid
        assert (report["uid"], report["gid"]) == (uid, gid)
        assert report["container_ids"] == [str(uid), str(gid)] * 2
        assert report["binary_owners"] == [[uid, gid]]
        assert report["left_in_parent"] == []
        root_owned = [str(p) for p in Path(home).rglob("*") if p.lstat().st_uid == 0]
        assert root_owned == []
    finally:
        shutil.rmtree(home, ignore_errors=True)
