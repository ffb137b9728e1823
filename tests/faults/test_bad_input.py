"""Bad input is rejected on the driver, before any Spark job starts, naming the bad value."""

from __future__ import annotations

import pytest

from lofn.api import DockerPipe
from lofn.errors import InvalidArgument, InvalidArgumentType, from_spark_error


@pytest.fixture
def no_job_starts(sc):
    sc.setJobGroup("bad-input", "no job may start")
    yield
    sc.setLocalProperty("spark.jobGroup.id", None)
    assert list(sc.statusTracker().getJobIdsForGroup("bad-input")) == []


@pytest.fixture
def ref(tmp_path):
    path = tmp_path / "ref"
    path.mkdir()
    return str(path)


@pytest.mark.parametrize("volumes, error, fragment", [
    (["/data"], TypeError, "volumes must be a dict"),
    ({"{ref}": {"bind": "/ref", "size": 1}}, ValueError, "unknown keys ['size']"),
    ({"{ref}": {"bind": "/ref", "mode": "rwx"}}, ValueError, "'rwx'"),
    ({"relative/ref": {"bind": "/ref"}}, ValueError, "'relative/ref' must be an absolute path"),
    ({"/no/such/ref": {"bind": "/ref"}}, ValueError, "'/no/such/ref' does not exist"),
    ({"/": {"bind": "/host"}}, ValueError, "'/' may not be mounted"),
    ({"/var/run/docker.sock": {"bind": "/s"}}, ValueError, "'/var/run/docker.sock' may not"),
    ({"{ref}": {"bind": "ref"}}, ValueError, "got 'ref'"),
    ({"{ref}": {"bind": "/shared/ref"}}, ValueError, "'/shared/ref', which collides"),
])
def test_bad_volumes(sc, no_job_starts, ref, volumes, error, fragment):
    from pyspark import SparkConf

    if isinstance(volumes, dict):
        volumes = {key.replace("{ref}", ref): value for key, value in volumes.items()}
    with pytest.raises(error) as info:
        DockerPipe(SparkConf(), volumes=volumes)
    assert fragment in str(info.value)


@pytest.mark.parametrize("call, error, fragment", [
    (dict(docker_options="--memory=1g"), InvalidArgumentType, "'--memory=1g'"),
    (dict(docker_options=["--restart", "always"]), InvalidArgument, "'--restart'"),
    (dict(docker_options=["-v", "/:/host"]), InvalidArgument, "'/' may not be mounted"),
    (dict(docker_options=["-v", "/var/run/docker.sock:/s"]), InvalidArgument, "docker.sock"),
    (dict(image_name=""), InvalidArgument, "image_name must be a non-empty string, got ''"),
    (dict(command=""), InvalidArgument, "command must be a non-empty string, got ''"),
    (dict(command=None), InvalidArgument, "got None"),
    (dict(container_input_name="../x"), InvalidArgument, "'../x'"),
    (dict(container_output_name="/etc/x"), InvalidArgument, "'/etc/x'"),
    (dict(map_udf="no"), InvalidArgumentType, "map_udf must be a function, got 'no'"),
    (dict(unknown=1), TypeError, "unexpected keyword argument 'unknown'"),
])
def test_bad_call_arguments(sc, pipe, busybox, no_job_starts, call, error, fragment):
    arguments = {"rdd": sc.parallelize(["x"], 1), "image_name": busybox, "command": "true",
                 **call}
    with pytest.raises(error) as info:
        pipe.map(**arguments)
    assert fragment in str(info.value)


@pytest.mark.parametrize("resources, fragment", [
    ("memory=lots", "resources memory budget must be a size such as '512m' or '8g' (or a "
                    "whole number of bytes), got 'lots'"),
    ("memory=-1g", "got '-1g'"),
    ("memory=0", "resources memory budget must be a positive size, got '0'"),
    ("memory=4m", "resources memory budget '4m' is 4 MiB; it must be at least 6 MiB"),
    ("growth=0.5", "resources growth must be a number >= 1 (1: the same memory on every "
                   "attempt), got 0.5"),
    # the session's local[2]: 2 executor cores, so each container would get 5 MiB
    ("memory=10m", "budget 10 MiB * 1 task CPUs / 2 executor cores = 5 MiB, is below 6 MiB"),
    ("gpus", "resources gpus=True, but the tasks get no GPUs: set "
             "spark.task.resource.gpu.amount"),
])
def test_bad_resources_fail_on_the_driver(sc, busybox, no_job_starts, resources, fragment):
    from pyspark import SparkConf

    with pytest.raises(InvalidArgument) as info:
        DockerPipe(SparkConf(), resources=resources).map(sc.parallelize(["x"], 1), busybox,
                                                         "true")
    assert fragment in str(info.value)


@pytest.mark.parametrize("returned, error, fragment", [
    (["a list"], InvalidArgumentType, "must return a dict"),
    ({"../outside.txt": ["x"]}, InvalidArgument, "'../outside.txt'"),
    ({"/abs.txt": ["x"]}, InvalidArgument, "'/abs.txt'"),
])
def test_bad_udf_results_fail_the_task_naming_the_value(sc, pipe, busybox, returned, error,
                                                        fragment):
    """A UDF's result exists only inside the task, so this is checked there."""
    with pytest.raises(Exception) as info:
        pipe.map(sc.parallelize(["x"], 1), busybox, "true",
                 map_udf=lambda partition: returned).collect()
    failure = from_spark_error(info.value)
    assert isinstance(failure, error) and fragment in str(failure)
