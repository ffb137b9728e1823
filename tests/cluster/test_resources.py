"""Containers sized by Spark on a standalone cluster: task CPUs, memory share, stage-level
resource profiles and GPUs.

This machine has no GPU and no NVIDIA runtime, so the GPU path is proven up
to the engine: the worker offers two fake GPUs (Spark's
``spark.worker.resource.gpu.*`` with a discovery script), and the
executor's Docker engine (a private one) finds a stand-in for
``nvidia-container-runtime-hook`` on its PATH, so it registers its own
NVIDIA device driver. That driver turns a device request into the
container's ``NVIDIA_VISIBLE_DEVICES``, which the container reports: the
IDs the engine got, next to the addresses Spark gave the task. Nothing runs
on a real GPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.cluster.conftest import run_json_job, standalone_cluster
from tests.engines import load_image, private_engine

pytestmark = pytest.mark.cluster

JOB = Path(__file__).resolve().parent / "jobs" / "resources_job.py"
ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
# what the engine runs as NVIDIA's prestart hook: reads the container's state and succeeds
FAKE_HOOK = "#!/bin/sh\ncat > /dev/null\nexit 0\n"
DISCOVER = '#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0", "1"]}\'\n'


def _script(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="module")
def sized(docker_client, busybox, session_tmp):
    """The job's result on a one-worker cluster (2 cores, 2 fake GPUs) and a GPU-capable engine."""
    parent = os.path.dirname(session_tmp)
    tools = tempfile.mkdtemp(prefix="fake-gpu-", dir=parent)
    try:
        _script(tools, "nvidia-container-runtime-hook", FAKE_HOOK)
        discover = _script(tools, "discover-gpus", DISCOVER)
        with private_engine(parent, env={"PATH": f"{tools}:{os.environ['PATH']}"}) as engine:
            load_image(docker_client, engine.client(), busybox)
            gpus = (f"-Dspark.worker.resource.gpu.amount=2 "
                    f"-Dspark.worker.resource.gpu.discoveryScript={discover}")
            with standalone_cluster(session_tmp, workers=1, cores=2,
                                    worker_options=gpus) as cluster:
                conf = {"spark.executor.cores": "2", "spark.executor.pyspark.memory": "256m",
                        "spark.executor.resource.gpu.amount": "2",
                        "spark.task.resource.gpu.amount": "1",
                        "spark.executorEnv.DOCKER_HOST": engine.host}
                summary, where, _ = run_json_job(
                    cluster.submit_command(JOB, busybox, conf=conf), what="spark-submit",
                    timeout=300, logs=cluster.logs, env=cluster.submit_env(session_tmp),
                    cwd=ROOT)
            left = engine.client().containers.list(all=True)
            assert not left, f"containers left on the executor's engine: {left}"
        return summary, where
    finally:
        shutil.rmtree(tools)


def test_each_container_gets_its_task_s_gpus_cpus_and_memory_share(sized):
    summary, where = sized
    rows = summary["default"]
    assert len(rows) == 8, where
    for task_gpus, engine_gpus, memory, cpus in rows:
        assert task_gpus in ("0", "1"), rows  # one of the worker's two, as Spark assigned
        assert engine_gpus == task_gpus, rows  # exactly the task's device, no other
        assert (memory, cpus) == (128 * MIB, 1.0), rows  # 256 MiB * 1 CPU / 2 cores


def test_a_stage_level_resource_profile_sizes_its_containers(sized):
    # the profile asks 2 CPUs and both GPUs a task: 256 MiB * 2 / 2
    assert {tuple(row) for row in sized[0]["profile"]} == {("0,1", "0,1", 256 * MIB, 2.0)}


def test_docker_options_win_and_nothing_is_sized_unasked(sized):
    summary, _ = sized
    assert {(engine, memory, cpus) for _, engine, memory, cpus in summary["explicit"]} == {
        ("7", 128 * MIB, 1.0)}
    assert {(engine, memory, cpus) for _, engine, memory, cpus in summary["unsized"]} == {
        ("none", None, None)}
