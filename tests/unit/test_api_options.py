"""The options model: visible signatures, checks before side effects, one job builder."""

from __future__ import annotations

import dataclasses
import inspect
import os

import pytest

from lofn import _images, api
from lofn.api import DockerPipe
from lofn.errors import DockerUnavailable, InvalidArgument, InvalidArgumentType
from lofn.options import CallOptions, PipeOptions

LOCAL = {"spark.master": "local[2]"}  # what DockerPipe reads of a SparkConf
SEED_POSITIONALS = ["self", "rdd", "image_name", "command"]
METHODS = ["map", "pipe", "map_binary", "reduce", "reduce_by_key", "reduce_binary"]
SEED_KEYWORDS = {
    "__init__": {"temporary_directory_parent", "shared_mountpoint", "volumes"},
    "map": {"container_input_name", "container_output_name", "docker_options", "map_udf"},
    "map_binary": {"container_input_name", "container_binary_output_name", "docker_options",
                   "map_udf", "hdfs_tempdir"},
    "reduce": {"container_input_name", "container_output_name", "docker_options",
               "reduce_udf"},
    "reduce_binary": {"container_binary_input_1_name", "container_binary_input_2_name",
                      "container_binary_output_name", "docker_options", "reduce_udf"},
}


class FakeRDD:
    """Enough of an RDD for the driver-side checks; any Spark call fails the test."""

    def mapPartitions(self, *args, **kwargs):
        raise AssertionError("a Spark transformation was built")

    @property
    def context(self):
        raise AssertionError("the SparkContext was used")


@pytest.fixture
def no_side_effects(monkeypatch):
    """Fail the test if the image is checked or shipped (Docker is touched)."""
    def touched(*args, **kwargs):
        raise AssertionError("Docker was touched before the arguments were checked")
    monkeypatch.setattr(_images, "ship", touched)
    monkeypatch.setattr(api, "get_client", touched)


@pytest.mark.parametrize("name", ["__init__", *METHODS])
def test_signatures_show_every_keyword(name):
    parameters = inspect.signature(getattr(DockerPipe, name)).parameters
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds, "keywords hidden in **kwargs"
    keywords = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert SEED_KEYWORDS.get(name, set()) <= keywords
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values()
               if p.name != "self")
    if name != "__init__":
        positional = [n for n, p in parameters.items()
                      if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        assert positional == SEED_POSITIONALS


def test_unknown_keyword_is_a_type_error_naming_it():
    pipe = DockerPipe(LOCAL)
    with pytest.raises(TypeError, match="unexpected keyword argument 'containr_input_name'"):
        pipe.map(FakeRDD(), "img", "true", containr_input_name="x")
    with pytest.raises(TypeError, match="'volume'"):
        DockerPipe(LOCAL, volume={})


@pytest.mark.parametrize("keywords, error, message", [
    (dict(timeout=0), InvalidArgument, "timeout must be a positive number of seconds, got 0"),
    (dict(timeout=float("inf")), InvalidArgument, "got inf"),
    (dict(timeout="5"), InvalidArgument, "got '5'"),
    (dict(image_pull="sometimes"), InvalidArgument, "image_pull 'sometimes' is not one of"),
    (dict(ship_image=True, image_pull="always"), InvalidArgument, "leave image_pull at"),
    (dict(shared_mountpoint="shared"), InvalidArgument, "absolute container path"),
    (dict(temporary_directory_parent="tmp"), InvalidArgument, "must be an absolute path"),
    (dict(result_cache="cache"), InvalidArgument, "hdfs:///path, got 'cache'"),
    (dict(hdfs_timeout="soon"), InvalidArgument, "hdfs_timeout must be seconds"),
    (dict(volumes=["/ref"]), InvalidArgumentType, "volumes must be a dict"),
    (dict(volumes={"/ref": {"bind": "/shared/x"}}), InvalidArgument, "collides"),
])
def test_pipe_options_check_themselves(keywords, error, message):
    with pytest.raises(error, match=None) as info:
        PipeOptions(**keywords)
    assert message in str(info.value)


def test_pipe_options_normalise_and_are_frozen():
    options = PipeOptions(shared_mountpoint=None, timeout=3, volumes={"/ref": {"bind": "/r"}})
    assert options.shared_mountpoint == "/shared/" and options.timeout == 3.0
    unset = PipeOptions(shared_mountpoint="", hdfs_url="", hdfs_user="")  # os.environ.get(X, "")
    assert (unset.shared_mountpoint, unset.hdfs_url, unset.hdfs_user) == ("/shared/", None, None)
    assert options.volumes == {"/ref": {"bind": "/r", "mode": "ro"}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeout = 5  # type: ignore[misc]


@pytest.mark.parametrize("keywords, error, message", [
    (dict(image_name=" "), InvalidArgument, "image_name must be a non-empty string, got ' '"),
    (dict(command=None), InvalidArgument, "command must be a non-empty string, got None"),
    (dict(command="echo \udc80"), InvalidArgument, "'\\udc80' at 5 is not (a lone surrogate)"),
    (dict(sample=0), InvalidArgument, "sample must be a fraction in (0, 1], got 0"),
    (dict(sample=0.5, sample_seed=1.5), InvalidArgument, "sample_seed must be a whole number"),
    (dict(sample=0.5, sample_seed=None), InvalidArgument, "got None"),
    (dict(hdfs_tempdir="tmp/out"), InvalidArgument, "hdfs_tempdir must be an absolute HDFS path"),
    (dict(max_fan_in=1), InvalidArgument, "max_fan_in must be a whole number >= 2, got 1"),
    (dict(max_fan_in=True), InvalidArgument, "got True"),
    (dict(num_partitions=0), InvalidArgument, "num_partitions must be a positive whole"),
    (dict(key="first"), InvalidArgumentType, "key must be a function, got 'first'"),
    (dict(container_output_name="../x"), InvalidArgument, "'../x'"),
    (dict(docker_options=["--pid=host"]), InvalidArgument, "'--pid=host' is not supported"),
    (dict(docker_options="--memory=1g"), InvalidArgumentType, "'--memory=1g'"),
    (dict(delimiter=""), InvalidArgument, "delimiter must be a non-empty str or bytes"),
    (dict(delimiter=None), InvalidArgument, "text mode needs a delimiter"),
])
def test_call_options_check_themselves(keywords, error, message):
    with pytest.raises(error) as info:
        CallOptions(**{"image_name": "img", "command": "true", **keywords})
    assert message in str(info.value)


def test_call_options_defaults():
    text = CallOptions(image_name="img", command="true")
    assert text.delimiter == b"\n" and text.docker_options == () and text.create_options == {}
    assert CallOptions(image_name="i", command="c", binary=True).delimiter is None
    assert CallOptions(image_name="i", command="c", delimiter="\0").delimiter == b"\0"
    options = CallOptions(image_name="i", command="c", docker_options=["-m", "1g"])
    assert options.create_options == {"mem_limit": "1g"}


@pytest.mark.parametrize("method, keywords", [
    ("pipe", dict(sample=2)),
    ("pipe", dict(delimiter="")),
    ("map", dict(docker_options=["--restart=always"])),
    ("map_binary", dict(container_binary_output_name="/etc/passwd")),
    ("map_binary", dict(hdfs_tempdir="relative/dir")),
    ("reduce", dict(max_fan_in=1)),
    ("reduce_by_key", dict(num_partitions=0)),
    ("reduce_by_key", dict(combiner="")),
    ("reduce_binary", dict(reduce_udf="merge")),
])
def test_bad_call_fails_before_docker_or_spark(no_side_effects, method, keywords):
    """A shipping pipe would ``docker save`` on the driver: nothing may happen before the checks."""
    pipe = DockerPipe(LOCAL, ship_image=True)
    with pytest.raises((InvalidArgument, InvalidArgumentType)):
        result = getattr(pipe, method)(FakeRDD(), "img", "cat", **keywords)
        if method == "map_binary":
            with result:
                pass


def test_one_builder_merges_pipe_and_call_options(monkeypatch, tmp_path):
    def no_engine():
        raise DockerUnavailable("no engine in a unit test")
    monkeypatch.setattr(api, "get_client", no_engine)
    (tmp_path / "ref").mkdir()
    pipe = DockerPipe(LOCAL, timeout=30, reuse_containers=True, image_pull="missing",
                      volumes={str(tmp_path / "ref"): {"bind": "/ref"}})
    call = CallOptions(image_name="img", command="true", docker_options=["-e", "A=1"])
    job = pipe.job(call, app="app-1", spark_context=None)
    assert (job.image, job.command, job.app) == ("img", "true", "app-1")
    assert job.timeout == 30 and job.reuse and job.pull == "missing"
    assert job.volumes == {str(tmp_path / "ref"): {"bind": "/ref", "mode": "ro"}}
    assert job.options == {"environment": ["A=1"]} and job.shipment is None
    faster = pipe.job(dataclasses.replace(call, timeout=5), app="app-1", spark_context=None)
    assert faster.timeout == 5
    unlimited = pipe.job(dataclasses.replace(call, timeout=None), app="app-1", spark_context=None)
    assert unlimited.timeout is None  # a method's timeout=None lifts the pipe's
    with pytest.raises(InvalidArgument, match="does not exist"):
        pipe.job(dataclasses.replace(call, docker_options=["-v", "/no/such:/x"]),
                 app="app-1", spark_context=None)


def test_ship_image_needs_a_context_off_the_driver_host(no_side_effects):
    pipe = DockerPipe({"spark.master": "spark://head:7077"}, ship_image=True)
    call = CallOptions(image_name="img", command="true")
    with pytest.raises(InvalidArgument, match="ship_image=True needs a SparkContext"):
        pipe.job(call, app="a", spark_context=None)


def test_ensure_image_refuses_an_unknown_policy():
    from lofn.docker_handler import ensure_image

    with pytest.raises(InvalidArgument, match="image_pull 'sometimes' is not one of"):
        ensure_image(object(), "img", "sometimes")


# -- reduce_binary's fan-in ------------------------------------------------------------

@pytest.mark.parametrize("keywords, message", [
    (dict(max_fan_in=1), "max_fan_in must be a whole number from 2 to 32, got 1"),
    (dict(max_fan_in=33), "max_fan_in must be a whole number from 2 to 32, got 33"),
    (dict(max_fan_in=True), "max_fan_in must be a whole number from 2 to 32, got True"),
    (dict(max_fan_in=4.0), "got 4.0"),
    (dict(max_fan_in="8"), "got '8'"),
    (dict(max_fan_in=None), "got None"),
    (dict(max_fan_in=8, reduce_udf=lambda left, right: {}),
     "reduce_udf merges two blocks at a time: give max_fan_in=2 with it, not 8"),
    (dict(max_fan_in=3, container_binary_input_1_name="left.bam"),
     "container_binary_input_1_name='left.bam' is not used"),
    (dict(max_fan_in=3, container_binary_input_2_name="right.bam"),
     "with max_fan_in=3 the inputs are numbered by container_binary_inputs_name"),
    (dict(container_binary_inputs_name="in_{:03d}.bam"),
     "container_binary_inputs_name='in_{:03d}.bam' is not used"),
    (dict(max_fan_in=4, container_binary_inputs_name="in_{}.bam"),
     "'in_10.bam' sorts before 'in_9.bam'; pad the number"),
    (dict(max_fan_in=4, container_binary_inputs_name="in.bam"),
     "'in.bam' must contain a field for the input's number"),
    (dict(max_fan_in=4, container_binary_inputs_name="in_{name}.bam"),
     "'in_{name}.bam' is not a pattern str.format can fill"),
    (dict(max_fan_in=4, container_binary_inputs_name="../in_{:03d}.bam"),
     "'../in_001.bam' must be a relative path inside the shared directory"),
    (dict(max_fan_in=4, container_binary_inputs_name="in_{:c}"), "with a newline"),
    (dict(max_fan_in=4, container_binary_inputs_name=7), "got 7"),
    (dict(max_fan_in=4, container_binary_output_name="inputs.txt"),
     "container_binary_output_name 'inputs.txt' is the name of an input of a merge of up to "
     "4 files ('input_001.bin', ..., 'input_004.bin', 'inputs.txt'); choose another"),
    (dict(max_fan_in=4, container_binary_output_name="input_004.bin"), "choose another"),
])
def test_reduce_binary_fan_in_is_checked_before_docker_or_spark(no_side_effects, keywords,
                                                                 message):
    pipe = DockerPipe(LOCAL, ship_image=True)
    with pytest.raises((InvalidArgument, InvalidArgumentType)) as info:
        pipe.reduce_binary(FakeRDD(), "img", "cat", **keywords)
    assert message in str(info.value)


def test_reduce_binary_fan_in_options():
    pairwise = CallOptions(image_name="i", command="c")
    assert pairwise.binary_max_fan_in == 2
    assert pairwise.container_binary_inputs_name == "input_{:03d}.bin"
    many = CallOptions(image_name="i", command="c", binary_max_fan_in=32,
                       container_binary_inputs_name="part{:02d}.bam",
                       container_binary_output_name="input_033.bin")
    assert many.binary_max_fan_in == 32  # input_033.bin is never an input of 32
    names = [f"input_{n:03d}.bin" for n in range(1, 33)]
    assert names == sorted(names)  # so /shared/input_*.bin lists them in block order


@pytest.mark.parametrize("blocks, cores", [(1, 2), (2, 8), (5, 2), (13, 2), (128, 16)])
def test_reduce_binary_pairwise_plan_ignores_the_cores(blocks, cores):
    """max_fan_in=2 plans the same pairwise tree as before the fan-in, whatever the cores."""
    assert api.plan_fan_ins(blocks, cores, 2) == api.plan_fan_ins(blocks, 1, 2)
    assert set(api.plan_fan_ins(blocks, cores, 2)) == {2}


@pytest.mark.parametrize("blocks, cores, max_fan_in, plan", [
    (16, 2, 8, [8, 2]),     # one merge per core, then one of the two left
    (9, 2, 3, [3, 3]),      # 9 = 3 * 3: two full rounds
    (10, 2, 3, [3, 3, 2]),  # not a power of 3: 4 blocks after round 1, 2 after round 2
    (40, 2, 8, [8, 5]),     # max_fan_in bounds round 1 too
    (1, 2, 8, [2]),         # a lone block: one round, in which it is passed on
])
def test_reduce_binary_fan_in_plans(blocks, cores, max_fan_in, plan):
    assert api.plan_fan_ins(blocks, cores, max_fan_in) == plan


def test_a_fan_in_merge_gets_numbered_inputs_and_their_list(tmp_path):
    """Merge.prepare of a reduce_binary merge of 3 blocks, on a real directory, no Docker."""
    from lofn import _task
    from lofn.tmp_file_handler import TaskDirectory

    job = _task.ContainerJob(image="img", command="true", shared_mountpoint="/data/",
                             volumes={}, options={}, temporary_directory_parent=str(tmp_path),
                             app="app")
    merge = _task.Merge(job, "numbered", ("in_{:03d}.bam", "inputs.txt"), "output.bin")
    with TaskDirectory(str(tmp_path)) as task:
        paths = []
        for block in (4, 5, 6):
            path = os.path.join(task.staging, f"{block:09d}")
            with open(path, "wb") as handle:
                handle.write(bytes([block]) * block)
            paths.append(path)
        merge.prepare(task, paths)
        assert sorted(os.listdir(task.shared)) == ["in_001.bam", "in_002.bam", "in_003.bam",
                                                   "inputs.txt"]
        with open(os.path.join(task.shared, "in_002.bam"), "rb") as handle:
            assert handle.read() == b"\x05" * 5
        with open(os.path.join(task.shared, "inputs.txt"), encoding="utf-8") as handle:
            assert handle.read() == "/data/in_001.bam\n/data/in_002.bam\n/data/in_003.bam\n"
        assert os.listdir(task.staging) == []  # moved, not copied
