"""Containers sized by Spark (lofn.resources): the formula, the driver's checks, the options.

The task side is given a stand-in for pyspark's TaskContext (the real one is
used end to end in tests/integration/test_resources.py and on the standalone
cluster in tests/cluster/test_resources.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from lofn import Resources
from lofn.docker_handler import ContainerSpec, _exit_failure
from lofn.errors import InvalidArgument, InvalidArgumentType, OutOfMemory
from lofn.options import PipeOptions
from lofn.resources import MIN_MEMORY, Sizing, format_size, parse_size, sizing

MiB, GiB = 1 << 20, 1 << 30
LOCAL_2, LOCAL_4 = (2, "local master"), (4, "local master")


@dataclass
class Task:
    """What lofn.resources asks of pyspark's TaskContext."""

    attempt: int = 0
    task_cpus: int = 1
    properties: dict = field(default_factory=dict)
    gpus: tuple[str, ...] = ()

    def attemptNumber(self):
        return self.attempt

    def cpus(self):
        return self.task_cpus

    def getLocalProperty(self, key):
        return self.properties.get(key)

    def resources(self):
        return {"gpu": SimpleNamespace(addresses=list(self.gpus))} if self.gpus else {}

    def partitionId(self):
        return 3

    def stageId(self):
        return 1


@pytest.mark.parametrize("text, size", [
    ("512m", 512 * MiB), ("8g", 8 * GiB), ("8G", 8 * GiB), ("1.5GiB", 3 * GiB // 2),
    ("100k", 100 << 10), ("1t", 1 << 40), (" 64 MB ", 64 * MiB), ("4096", 4096), (7 * MiB, 7 * MiB),
])
def test_sizes_read_as_docker_reads_them(text, size):
    assert parse_size("x", text) == size


def test_spark_sizes_count_mib_without_a_unit():
    assert parse_size("spark.executor.memory", "2048", bare="m") == 2 * GiB
    assert parse_size("spark.executor.memory", "512b", bare="m") == 512
    assert parse_size("spark.executor.memory", "1p", bare="m") == 1 << 50


@pytest.mark.parametrize("bad", ["", "8x", "-1g", "g", "1,5g", 0, -5, 1.5, True, None])
def test_a_size_that_cannot_be_read_is_refused_naming_it(bad):
    with pytest.raises(InvalidArgument, match="size"):
        parse_size("resources memory budget", bad)


def test_sizes_are_shown_in_binary_units():
    assert [format_size(n) for n in (256 * MiB, 3 * GiB // 2, 100, 2048)] == [
        "256 MiB", "1.5 GiB", "100 B", "2 KiB"]


def test_resources_checks_its_fields():
    assert Resources(memory="8g", growth=2, max_memory="16g") == Resources(
        memory=8 * GiB, growth=2.0, max_memory=16 * GiB)
    with pytest.raises(InvalidArgument, match=r"memory budget '5m' is 5 MiB; it must be at "
                                              r"least 6 MiB"):
        Resources(memory="5m")
    with pytest.raises(InvalidArgument, match="max_memory 4096 is 4 KiB"):
        Resources(max_memory=4096)
    for growth in (0.5, 0, float("inf"), "2", True):
        with pytest.raises(InvalidArgument, match=f"growth must be a number >= 1.*{growth!r}"):
            Resources(growth=growth)
    with pytest.raises(InvalidArgumentType, match="gpus must be True or False"):
        Resources(gpus="yes")


def test_the_command_line_form():
    assert Resources.parse("auto") == Resources()
    assert Resources.parse("memory=8g, growth=1.5,max_memory=12g,gpus") == Resources(
        memory="8g", growth=1.5, max_memory="12g", gpus=True)
    for bad in ("cpus=2", "gpus=1", "memory", "", "auto,memory=1g"):
        with pytest.raises(InvalidArgument, match="is not one of memory=SIZE"):
            Resources.parse(bad)
    with pytest.raises(InvalidArgument, match="growth must be a number >= 1, got 'fast'"):
        Resources.parse("growth=fast")


def test_the_pipe_keyword_takes_true_a_resources_or_its_text():
    assert PipeOptions().resources is None
    assert PipeOptions(resources=False).resources is None
    assert PipeOptions(resources=True).resources == Resources()
    assert PipeOptions(resources="memory=1g").resources == Resources(memory=GiB)
    with pytest.raises(InvalidArgumentType, match=r"resources must be True or a lofn\.Resources, "
                                                  r"got 2"):
        PipeOptions(resources=2)


# -- the task's share -------------------------------------------------------------------

def test_the_share_is_the_budget_times_task_cpus_over_executor_cores():
    job = Sizing(Resources(memory="1g"), heap=GiB, executor_cores=LOCAL_4)
    limits = job.limits(Task())
    assert (limits.cpus, limits.memory, limits.gpus) == (1, 256 * MiB, None)
    assert limits.create_options() == {"nano_cpus": 10**9, "mem_limit": 256 * MiB,
                                       "memswap_limit": 256 * MiB}
    two = job.limits(Task(task_cpus=2))
    assert (two.cpus, two.memory) == (2, 512 * MiB)
    assert two.create_options()["nano_cpus"] == 2 * 10**9
    assert "budget 1 GiB (stated) * 2 task CPUs / 4 executor cores (local master)" in two.how


def test_the_profile_s_executor_cores_and_pyspark_memory_come_first():
    job = Sizing(Resources(), heap=GiB, pyspark_memory=GiB,
                 executor_cores=(4, "spark.executor.cores"))
    limits = job.limits(Task(properties={"resource.executor.cores": "2",
                                         "resource.pyspark.memory": "600"}))
    assert limits.memory == 300 * MiB
    assert "budget 600 MiB (spark.executor.pyspark.memory)" in limits.how
    assert "2 executor cores (spark.executor.cores)" in limits.how
    assert job.limits(Task()).memory == 256 * MiB  # the configuration's, without a profile


def test_a_local_master_s_threads_beat_spark_executor_cores():
    # Spark passes spark.executor.cores to the tasks of a local master too, and ignores it
    job = Sizing(Resources(memory="1g"), heap=GiB, executor_cores=LOCAL_4)
    assert job.limits(Task(properties={"resource.executor.cores": "16"})).memory == 256 * MiB


def test_without_a_budget_the_host_s_memory_less_the_heap_is_shared(monkeypatch):
    import os

    pages = {"SC_PHYS_PAGES": 4 * GiB // 4096, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", pages.__getitem__)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    limits = Sizing(Resources(), heap=GiB).limits(Task())
    assert limits.memory == GiB  # (4 GiB - 1 GiB) / 3 cores
    assert "host memory 4 GiB - executor heap 1 GiB" in limits.how
    assert "3 executor cores (the host's CPUs)" in limits.how


def test_memory_grows_by_attempt_up_to_the_cap():
    job = Sizing(Resources(memory="1g", growth=2, max_memory="600m"), heap=GiB,
                 executor_cores=LOCAL_4)
    assert [job.limits(Task(attempt=n)).memory for n in range(4)] == [
        256 * MiB, 512 * MiB, 600 * MiB, 600 * MiB]
    text = job.limits(Task(attempt=2)).memory_text()
    assert text.startswith("600 MiB: budget 1 GiB (stated)")
    assert "* 2 per attempt, at most 600 MiB" in text
    assert text.endswith("attempt 0: 256 MiB, attempt 1: 512 MiB, attempt 2: 600 MiB")
    uncapped = Sizing(Resources(memory="1g", growth=3), heap=GiB, executor_cores=LOCAL_4)
    assert uncapped.limits(Task(attempt=2)).memory == GiB  # the budget is the default cap


def test_a_cap_below_the_share_is_said(monkeypatch):
    job = Sizing(Resources(memory="8g", max_memory="1g"), heap=GiB, executor_cores=LOCAL_2)
    assert job.limits(Task()).memory_text() == (
        "1 GiB: budget 8 GiB (stated) * 1 task CPU / 2 executor cores (local master); at most "
        "1 GiB (max_memory); attempt 0: 1 GiB")


def test_cpus_are_capped_at_the_host_s(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    job = Sizing(Resources(memory="8g"), heap=GiB, executor_cores=(8, "spark.executor.cores"))
    assert job.limits(Task(task_cpus=4)).cpus == 2  # the engine refuses more
    assert job.limits(Task(task_cpus=4)).memory == 4 * GiB  # the share is Spark's


def test_a_share_below_the_engine_s_minimum_fails_in_the_task():
    job = Sizing(Resources(memory="20m"), heap=GiB, executor_cores=LOCAL_4)
    with pytest.raises(InvalidArgument, match=r"20 MiB \(stated\) \* 1 task CPU / 4 executor "
                                              r"cores \(local master\) = 5 MiB, is below 6 MiB"):
        job.limits(Task())


def test_gpus_are_the_task_s_addresses():
    job = Sizing(Resources(memory="1g", gpus=True), heap=GiB, executor_cores=LOCAL_2)
    limits = job.limits(Task(gpus=("1", "3")))
    assert limits.gpus == ("1", "3")
    [request] = limits.create_options()["device_requests"]
    assert (request["DeviceIDs"], request["Capabilities"], request["Count"]) == (
        ["1", "3"], [["gpu"]], 0)
    assert limits.record() == {"cpus": 1, "memory_bytes": 512 * MiB, "gpus": ["1", "3"]}
    with pytest.raises(InvalidArgument, match="assigned task 3 \\(stage 1\\) no 'gpu' "
                                              "resource"):
        job.limits(Task())


def test_docker_options_win():
    job = Sizing(Resources(memory="1g", gpus=True), heap=GiB, executor_cores=LOCAL_2,
                 explicit=frozenset({"memory", "cpus", "gpus"}))
    limits = job.limits(Task())  # no GPUs assigned: not asked for, since --gpus was given
    assert limits.create_options() == {}
    assert limits.record() == {"cpus": None, "memory_bytes": None, "gpus": None}


# -- the driver's checks ----------------------------------------------------------------

class Profile(SimpleNamespace):
    """pyspark's ResourceProfile: requests by name, each with an ``amount``."""


def amounts(**requests):
    return {name.replace("_", "."): SimpleNamespace(amount=value)
            for name, value in requests.items()}


def test_the_driver_reads_the_local_master_and_the_heap():
    conf = {"spark.driver.memory": "2g", "spark.executor.memory": "9g"}
    assert sizing(None, conf, "local[3]", None, {}) is None
    job = sizing(Resources(), conf, "local[3,2]", None, {})
    assert (job.heap, job.executor_cores, job.pyspark_memory, job.explicit) == (
        2 * GiB, (3, "local master"), None, frozenset())
    assert sizing(Resources(), conf, "local", None, {}).executor_cores == (1, "local master")
    cluster = sizing(Resources(), {**conf, "spark.executor.pyspark.memory": "300"},
                     "spark://head:7077", None, {"mem_limit": "1g", "nano_cpus": 10**9})
    assert (cluster.heap, cluster.executor_cores, cluster.pyspark_memory, cluster.explicit) == (
        9 * GiB, None, 300 * MiB, frozenset({"memory", "cpus"}))
    # Spark ignores spark.executor.cores on a local master
    cores = {"spark.executor.cores": "5"}
    assert sizing(Resources(), cores, "local[2]", None, {}).executor_cores == (2, "local master")
    assert sizing(Resources(), cores, "spark://h:7077", None, {}).executor_cores == (
        5, "spark.executor.cores")
    # local[*]: the threads Spark runs (the api passes the context's defaultParallelism)
    assert sizing(Resources(), {}, "local[*]", None, {}, local_cores=6).executor_cores == (
        6, "local master")
    assert sizing(Resources(), {}, "local[*]", None, {}).executor_cores[0] >= 1
    # YARN gives an executor one core unless told; a standalone one takes its worker's
    assert sizing(Resources(), {}, "yarn", None, {}).executor_cores == (
        1, "spark.executor.cores, YARN's default")
    assert sizing(Resources(), {}, "spark://h:7077", None, {}).executor_cores is None


def test_gpus_where_the_tasks_have_none_fail_on_the_driver():
    with pytest.raises(InvalidArgument, match=r"resources gpus=True, but the tasks get no GPUs: "
                                              r"set spark\.task\.resource\.gpu\.amount"):
        sizing(Resources(gpus=True), {}, "spark://head:7077", None, {})
    conf = {"spark.task.resource.gpu.amount": "1"}
    assert sizing(Resources(gpus=True), conf, "spark://head:7077", None, {}) is not None
    profile = Profile(taskResources=amounts(gpu=0.5), executorResources={})
    assert sizing(Resources(gpus=True), {}, "spark://head:7077", profile, {}) is not None
    # a profile's task resources replace the configuration's
    no_gpus = Profile(taskResources=amounts(cpus=1), executorResources={})
    with pytest.raises(InvalidArgument, match="the tasks get no GPUs"):
        sizing(Resources(gpus=True), conf, "spark://head:7077", no_gpus, {})
    # a profile that cannot be told (binaryFiles): the tasks check
    assert sizing(Resources(gpus=True), {}, "spark://head:7077", None, {},
                  profile_known=False) is not None
    # --gpus in docker_options: the user's choice, not Spark's
    assert sizing(Resources(gpus=True), {}, "spark://h:7077", None,
                  {"device_requests": []}) is not None


def test_a_share_the_driver_can_compute_below_the_minimum_fails_there():
    with pytest.raises(InvalidArgument, match=r"budget 20 MiB \* 1 task CPUs / 8 executor cores"
                                              r" = 2.5 MiB, is below 6 MiB"):
        sizing(Resources(memory="20m"), {}, "local[8]", None, {})
    with pytest.raises(InvalidArgument, match=r"budget 64 MiB \* 1 task CPUs / 16 executor"):
        sizing(Resources(), {"spark.executor.pyspark.memory": "64",
                             "spark.executor.cores": "16"}, "yarn", None, {})
    profile = Profile(taskResources=amounts(cpus=4), executorResources=amounts(cores=16))
    assert sizing(Resources(memory="24m"), {}, "spark://h:7077", profile, {}) is not None
    assert sizing(Resources(memory="20m"), {}, "local[8]", None, {"mem_limit": "1g"})
    assert 6 * MiB == MIN_MEMORY


# -- what the OOM error says ------------------------------------------------------------

class Killed:
    """A container the engine OOM-killed."""

    def __init__(self):
        self.attrs = {"State": {"OOMKilled": True}}

    def reload(self):
        pass


def test_the_oom_error_names_each_attempt_s_limit():
    limits = Sizing(Resources(memory="400m", growth=2), heap=GiB, executor_cores=LOCAL_4).limits(
        Task(attempt=1))
    spec = ContainerSpec("img", "cmd", options=limits.create_options(), partition=3,
                         limits=limits)
    failure = _exit_failure(spec, Killed(), 137, "")
    assert isinstance(failure, OutOfMemory)
    assert failure.message == (
        "container was killed for exceeding its memory limit of 200 MiB: budget 400 MiB "
        "(stated) * 1 task CPU / 4 executor cores (local master); * 2 per attempt, at most "
        "400 MiB; attempt 0: 100 MiB, attempt 1: 200 MiB")
    assert "Resources(growth=...)" in failure.hint
    plain = _exit_failure(ContainerSpec("img", "cmd", options={"mem_limit": "64m"}), Killed(),
                          137, "")
    assert "(64m)" in plain.message


# -- Spark Connect: the server's settings -------------------------------------------------

def test_pipe_for_reads_the_settings_from_a_connect_session():
    pytest.importorskip("pyspark")
    from lofn.dataframe import pipe_for

    settings = {"spark.master": "spark://head:7077", "spark.executor.cores": "4",
                "spark.executor.pyspark.memory": "2g", "spark.task.resource.gpu.amount": "1"}

    class Conf:
        def get(self, key, default=None):
            return settings.get(key, default)

    Session = type("SparkSession", (), {"__module__": "pyspark.sql.connect.session",
                                        "conf": Conf()})
    pipe = pipe_for(Session(), resources=Resources(gpus=True))
    sized = pipe._sizing({}, None, None, True)  # no SparkContext under Connect
    assert (sized.executor_cores, sized.pyspark_memory) == ((4, "spark.executor.cores"), 2 * GiB)
    assert pipe.master == "spark://head:7077"
