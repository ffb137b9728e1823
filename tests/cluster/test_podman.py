"""lofn against Podman's Docker-compatible API instead of a Docker engine.

A module fixture starts Debian's ``podman system service`` (rootful) on a
private socket, with its configuration, storage and run state in one temp
directory (``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF``; no global
configuration is read or changed), and builds ``lofn/busybox`` into it
through the Docker SDK. The job (``jobs/podman_job.py``) runs in its own Python process
with ``DOCKER_HOST`` pointing at that socket: word count, a binary round trip,
a failing command and reuse mode, on ``local[2]``. Afterwards nothing labelled
``lofn`` may be left in Podman and no ``lofn-*`` entry in the temp root; the
service is stopped and its storage removed. docs/podman.rst has the why of
each setting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.conftest import run_json_job, tail
from tests.conftest import BUSYBOX, lofn_temp_entries, require

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).resolve().parent / "jobs" / "podman_job.py"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
JOB_TIMEOUT = 300
PARTITIONS = 2  # one per local[2] core; the tree reduce itself is tested elsewhere
CAP_SYS_RESOURCE = 24
# The job's containers get no network: the default bridge would make netavark add
# iptables chains to the host that outlive the service.
JOB_OPTIONS = ["--network=none"]
# What rootful Podman writes outside its configured directories whatever the
# configuration: an empty /run/containers/networks, and Buildah's blob-info cache
# in /var/lib/containers/cache. Removed afterwards unless they were there before.
GLOBAL_TRACES = (Path("/run/containers"), Path("/var/lib/containers"))


def _may_raise_rlimits() -> bool:
    """Whether this process may raise hard rlimits (CAP_SYS_RESOURCE in its bounding set)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("CapBnd:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return True


def _default_ulimits() -> list[str]:
    """Container rlimits within this host's hard limits, when Podman's defaults are not.

    Rootful Podman gives every container ``nofile`` and ``nproc`` of 1048576 and
    more; raising a hard limit needs CAP_SYS_RESOURCE, and without it (some VMs
    and containers) every start fails with "error setting rlimit type 7:
    operation not permitted". Podman itself runs with ``nproc`` at most
    ``kernel.pid_max``.
    """
    if _may_raise_rlimits():
        return []
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


def hybrid_cgroup2_controllers(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """The controllers of the cgroup2 hierarchy on a hybrid host; ``[]`` on pure v1 or v2.

    A hybrid host mounts cgroup v1 controllers under ``/sys/fs/cgroup/*`` and a
    cgroup2 hierarchy beside them (``/sys/fs/cgroup/unified``). When that cgroup2
    hierarchy holds a controller (``hugetlb``, say), crun 1.8 (Debian 12's, the
    default runtime of its Podman 4.3) refuses every container: "cgroups in
    hybrid mode not supported, drop all controllers from cgroupv2".
    """
    v1, v2 = False, []
    with open(mountinfo, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            kind = fields[fields.index("-") + 1]
            v1 = v1 or kind == "cgroup"
            if kind == "cgroup2":
                v2.append(fields[4])
    controllers: list[str] = []
    for point in v2 if v1 else []:
        try:
            controllers += Path(point, "cgroup.controllers").read_text().split()
        except OSError:
            continue
    return controllers


def oci_runtime() -> str | None:
    """The OCI runtime Podman must use on this host, or ``None`` for its default (crun).

    On a hybrid host whose cgroup2 hierarchy holds controllers, runc (which
    Debian's docker.io brings) works where crun 1.8 refuses.
    """
    controllers = hybrid_cgroup2_controllers()
    if not controllers:
        return None
    if shutil.which("runc") is None:
        require("runc", f"this host's cgroups are hybrid with {controllers} on cgroup2, "
                        "which crun refuses; install runc ('apt-get install runc')")
    return "runc"


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def write_config(base: Path) -> dict[str, str]:
    """containers.conf and storage.conf under ``base``; return the environment that selects them."""
    ulimits = _default_ulimits()
    runtime = oci_runtime()
    containers = [
        "[containers]",
        *([f"default_ulimits = {_toml_list(ulimits)}"] if ulimits else []),
        "[engine]",
        'cgroup_manager = "cgroupfs"',  # no systemd needed (none runs here)
        'events_logger = "file"',  # no journald needed
        *([f"runtime = {json.dumps(runtime)}"] if runtime else []),
        f'tmp_dir = "{base}/tmp"',
        "[network]",
        f'network_config_dir = "{base}/networks"',
    ]
    storage = [
        "[storage]",
        'driver = "overlay"',
        f'graphroot = "{base}/root"',
        f'runroot = "{base}/runroot"',
    ]
    (base / "containers.conf").write_text("\n".join(containers) + "\n")
    (base / "storage.conf").write_text("\n".join(storage) + "\n")
    return {"CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(base / "storage.conf")}


@dataclass
class PodmanService:
    """A running ``podman system service`` on ``socket``, with everything under ``base``."""

    base: Path
    socket: Path
    env: dict
    process: subprocess.Popen
    log: Path

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=60)

    def podman(self, *arguments: str) -> subprocess.CompletedProcess:
        """The podman CLI on the same storage (for diagnostics)."""
        return subprocess.run(["podman", *arguments], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=60)

    def log_tail(self) -> str:
        try:
            return tail(self.log.read_text(errors="replace"), 30)
        except OSError as exc:
            return f"<cannot read {self.log}: {exc}>"


def _processes_using(base: Path) -> list[int]:
    """Processes whose command line names ``base``: the service's conmon monitors.

    conmon outlives an exec session by ``exit_command_delay`` (300 s), and would
    then run ``podman container cleanup`` against storage that is gone.
    """
    pids = []
    needle = str(base).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if needle in handle.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _mounts_under(base: Path) -> list[str]:
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == str(base) or point.startswith(f"{base}/"):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _stop(service: PodmanService) -> None:
    """Stop the service, the monitors it left, unmount and remove its storage."""
    process = service.process
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass
    for pid in _processes_using(service.base):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for point in _mounts_under(service.base):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(service.base, ignore_errors=True)


def _build_busybox(client) -> str:
    spec = importlib.util.spec_from_file_location("build_images",
                                                  ROOT / "scripts" / "build_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_busybox(client)


@pytest.fixture(scope="module")
def podman_service(session_tmp):
    """Rootful ``podman system service`` on a private socket, ``lofn/busybox`` built in it."""
    if shutil.which("podman") is None:
        require("podman", "install Debian's podman ('apt-get install podman'; "
                          "'bash scripts/dev.sh setup' does)")
    if os.geteuid() != 0:
        require("root", "this test starts a rootful Podman service (docs/podman.rst shows "
                        "rootless use)")
    if not os.path.exists("/bin/busybox"):
        require("busybox-static", "lofn/busybox is built from /bin/busybox")
    ours = [path for path in GLOBAL_TRACES if not path.exists()]
    # Outside the session TMPDIR: its entries are not lofn's to check. Short, for the socket.
    base = Path(tempfile.mkdtemp(prefix="podman-lofn-", dir=os.path.dirname(session_tmp)))
    env = write_config(base)
    socket = base / "podman.sock"
    log = base / "service.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            ["podman", "--log-level=info", "system", "service", "--time=0", f"unix://{socket}"],
            env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True)
    service = PodmanService(base=base, socket=socket, env=env, process=process, log=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no socket yet"
        while True:
            if process.poll() is not None:
                pytest.fail(f"podman system service exited with {process.returncode}:\n"
                            f"{service.log_tail()}", pytrace=False)
            if socket.exists():
                try:
                    service.client().ping()
                    break
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    last = str(exc)
            if time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer on {socket} within "
                            f"{START_TIMEOUT:.0f} s ({last}):\n{service.log_tail()}",
                            pytrace=False)
            time.sleep(0.2)
        started = time.monotonic()
        client = service.client()
        try:
            _build_busybox(client)
        except Exception as exc:  # noqa: BLE001 - the runtime's reason is in the service log
            pytest.fail(f"Podman could not build {BUSYBOX}: {exc}\n{service.log_tail()}",
                        pytrace=False)
        print(f"\nPodman {client.version().get('Version')} on {service.docker_host}; "
              f"{BUSYBOX} built in {time.monotonic() - started:.1f} s")
        yield service
    finally:
        try:
            for container in service.client().containers.list(all=True):
                container.remove(force=True)
        except Exception:  # noqa: BLE001 - the service may be gone; its storage goes anyway
            pass
        _stop(service)
        for path in ours:
            shutil.rmtree(path, ignore_errors=True)


def test_word_count_binary_failure_and_reuse_on_podman(podman_service, session_tmp):
    service = podman_service
    python = os.environ.get("PYSPARK_PYTHON") or sys.executable
    env = {**os.environ, "DOCKER_HOST": service.docker_host, "TMPDIR": session_tmp,
           "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    command = [python, str(JOB), "--image", BUSYBOX, "--partitions", str(PARTITIONS),
               *(f"--docker-option={option}" for option in JOB_OPTIONS)]
    summary, where, elapsed = run_json_job(
        command, what="the job", timeout=JOB_TIMEOUT, env=env, cwd=ROOT,
        logs=lambda: f"--- podman service log:\n{service.log_tail()}")
    print(f"\njob on Podman took {elapsed:.1f} s (word count "
          f"{summary['word_count']['seconds']} s, binary {summary['binary']['seconds']} s, "
          f"reuse {summary['reuse']['seconds']} s)")

    # The job talked to Podman, not to a Docker engine.
    assert summary["engine"]["host"] == service.docker_host
    assert "Podman Engine" in summary["engine"]["components"], summary["engine"]

    word_count = summary["word_count"]
    assert word_count["counts"] == summary["expected_counts"]
    assert word_count["sorted_as_expected"], "reduce output is not sorted by count, then word"

    binary = summary["binary"]
    assert binary["files"] == [f"part-{index:05d}.bin" for index in range(PARTITIONS)], binary
    assert binary["directory_removed"] and binary["same_lines"], binary

    for failure in (summary["failure"], summary["reuse"]["failure"]):
        assert failure["type"] == "DockerFailure", failure
        assert failure["exit_code"] == 7, failure
        assert failure["stderr"].strip() == "lofn-on-podman: to stderr", failure
        assert "exited with code 7" in failure["message"], failure

    reuse = summary["reuse"]
    assert reuse["same_result"], "reuse mode (exec) gave a different word count"
    assert reuse["after_failure"] == summary["lines"], "reuse mode after a failure lost lines"
    assert reuse["warm_containers"] >= 1, reuse
    # each partition sorted in its container, streamed through stdin and stdout
    piped = summary["pipe"]
    assert piped["fresh"] == piped["reuse"] == piped["expected"], piped
    # resources=: 600 MiB * 1 task CPU / 2 cores, 1 CPU, through Podman's API
    assert summary["limits"] == [[300 * (1 << 20), 1.0]], summary["limits"]

    assert summary["left_containers"] == [], (
        f"left in Podman: {summary['left_details']}; watchdogs running: "
        f"{summary['watchdogs']}; stderr tail:\n{where[-3000:]}")
    assert summary["left_temp_entries"] == [], summary["left_temp_entries"]
    assert lofn_temp_entries() == [], f"lofn temp entries left in {session_tmp}"
    left = service.client().containers.list(all=True, filters={"label": "lofn"})
    assert left == [], f"containers left in Podman: {[c.name for c in left]}"


V1_LINE = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"


@pytest.mark.parametrize("layout, expected", [
    ("pure v1", []),
    ("pure v2", []),
    ("hybrid, empty cgroup2", []),
    ("hybrid, hugetlb on cgroup2", ["hugetlb"]),
])
def test_hybrid_cgroup2_controllers_recognises_each_layout(tmp_path, layout, expected):
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n" if "hugetlb" in layout else "")
    v2_line = f"41 31 0:38 / {unified} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    if layout == "pure v2":
        (unified / "cgroup.controllers").write_text("cpu memory pids hugetlb\n")
    lines = {"pure v1": V1_LINE, "pure v2": v2_line}.get(layout, V1_LINE + v2_line)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(lines)
    assert hybrid_cgroup2_controllers(str(mountinfo)) == expected
