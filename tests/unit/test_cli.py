"""The ``lofn`` command line in-process: parsing, usage errors, error rendering.

No Docker engine and no SparkContext: ``lofn.cli.main`` is called with the
arguments, and every run here stops before Spark would start (a usage
error), or with the Spark part replaced. The runs through subprocesses, on
a real engine and Spark, are in tests/integration/test_cli.py.
"""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

import lofn
from lofn import Resources, cli
from lofn.cli import _run
from lofn.cli._parser import build_parser, subcommand
from lofn.errors import (
    ContainerTimeout,
    DockerFailure,
    EmptyInput,
    ImageUnavailable,
    InvalidArgument,
    OutOfMemory,
)
from lofn.options import PULL_POLICIES, CallOptions, PipeOptions, command_line_options

#: The flags of ``lofn map`` that are not options of DockerPipe or its calls.
NOT_OPTIONS = {"--help", "--output", "--image", "--command", "--reduce", "--reduce-image",
               "--partitions", "--master", "--app-name", "--conf", "--quiet", "--verbose"}

IMAGE_HINT = "  hint: build or load the image on every host, or pass --image-pull missing"
MEMORY_HINT = "  hint: raise the limit with --docker-option=--memory=SIZE"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A current directory holding ``in.txt``."""
    (tmp_path / "in.txt").write_text("a\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_spark(monkeypatch):
    """Fail a test that would start Spark."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run went past the checks: Spark would start")

    monkeypatch.setattr(_run, "_run_job", refuse)


def run_map(*args: str) -> int:
    return cli.main(["map", "--image", "lofn/busybox", "--command", "true", *args])


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lofn: error: ")
    return lines[0]


# ---------------------------------------------------------------------------
# help and version

@pytest.mark.parametrize("argv", [["--help"], ["map", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lofn ")
    assert "examples:" in out and out.count("$ lofn map ") == 3


def test_map_help_lists_every_declared_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["map", "--help"])
    out = "".join(capsys.readouterr().out.split())  # help wraps lines
    for _, declared in command_line_options():
        assert all(flag in out for flag in declared.metadata["flags"])
        assert "".join(declared.metadata["help"].split()) in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"lofn {lofn.__version__}\n"


def test_no_command_is_a_usage_error(capsys):
    assert cli.main([]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: lofn ")
    assert "lofn: error: a command is required" in err


def test_base_install_needs_no_pyspark(workdir):
    """Without pyspark, ``lofn --help`` and usage errors work, and a job says what is missing."""
    script = (
        "import sys\n"
        "sys.modules['pyspark'] = None  # import pyspark now raises ImportError\n"
        "from lofn.cli import main\n"
        "assert main(['map', '--image', 'x', '--command', 'true', 'no-such-input', '-o', 'o'])"
        " == 2\n"
        "assert main(['map', '--image', 'x', '--command', 'true', 'in.txt', '-o', 'o']) == 1\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
        "assert not [m for m in sys.modules if m.startswith('pyspark.')], 'pyspark imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lofn ")
    assert result.stderr.splitlines() == [
        "lofn: error: input file 'no-such-input' does not exist",
        "lofn: error: 'lofn map' needs PySpark, which this Python cannot import: install lofn "
        "with its 'spark' extra (pip install \".[spark]\" in lofn's checkout) or PySpark"]
    assert not (workdir / "o").exists()


# ---------------------------------------------------------------------------
# the flags of the options declared in lofn.options

def declared_actions() -> list[tuple[type, object, argparse.Action]]:
    actions = {action.dest: action for action in subcommand(build_parser(), "map")._actions}
    return [(owner, declared, actions[declared.name])
            for owner, declared in command_line_options()]


def test_every_declared_option_has_its_flag():
    for _, declared, action in declared_actions():
        meta = declared.metadata
        assert list(meta["flags"]) == action.option_strings, declared.name
        assert action.help == meta["help"]
        if meta["action"] == "store_true":
            assert isinstance(action, argparse._StoreTrueAction)
        elif meta["action"] == "append":
            assert isinstance(action, argparse._AppendAction)
            assert action.metavar == meta["metavar"]
        elif meta["choices"]:
            assert action.choices == meta["choices"] == PULL_POLICIES
        else:
            assert action.metavar == meta["metavar"] and action.type is not None


def test_the_parser_has_no_other_container_flag():
    parser = subcommand(build_parser(), "map")
    flags = {flag for action in parser._actions for flag in action.option_strings
             if flag.startswith("--")}
    declared = {field.metadata["flags"][0] for _, field in command_line_options()}
    assert flags - NOT_OPTIONS == declared


def test_declared_flags_are_taken_where_they_are_declared():
    """A pipe option is a DockerPipe keyword; a call option is taken by map or reduce."""
    from lofn.api import DockerPipe

    for owner, declared in command_line_options():
        if owner is PipeOptions:
            assert declared.name in inspect.signature(DockerPipe).parameters
        else:
            assert owner is CallOptions
            assert any(declared.name in inspect.signature(method).parameters
                       for method in (DockerPipe.map, DockerPipe.reduce)), declared.name


def test_single_values_are_parsed_and_checked_by_their_declaration():
    parser = build_parser()
    args = parser.parse_args(["map", "--image", "i", "--command", "c", "in", "-o", "o",
                              "--timeout", "2", "--max-fan-in", "3"])
    assert args.timeout == 2.0 and args.max_fan_in == 3
    # not given: left out, so that the declared defaults apply
    assert (args.volumes, args.docker_options, args.image_pull, args.reuse_containers) == (
        [], [], None, False)


@pytest.mark.parametrize("flag, value, message", [
    ("--timeout", "0", "argument --timeout: timeout must be a positive number of seconds"),
    ("--timeout", "inf", "argument --timeout: timeout must be a positive number of seconds"),
    ("--timeout", "soon", "timeout must be a positive number of seconds, got 'soon'"),
    ("--max-fan-in", "1", "argument --max-fan-in: max_fan_in must be a whole number >= 2"),
    ("--max-fan-in", "2.5", "max_fan_in must be a whole number >= 2, got '2.5'"),
    ("--image-pull", "sometimes", "argument --image-pull: invalid choice: 'sometimes'"),
    ("--resources", "memory=0", "argument --resources: resources memory budget must be a "
                                "positive size, got '0'"),
    ("--resources", "cpus=2", "'cpus=2' is not one of memory=SIZE, growth=FACTOR"),
])
def test_bad_single_value_is_an_argparse_error(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_:
        run_map("in.txt", "-o", "out.txt", flag, value)
    assert exit_.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: lofn map ")
    assert message in err


# ---------------------------------------------------------------------------
# usage errors, before Spark starts

@pytest.mark.parametrize("volume, message", [
    ("nocolon", "is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw"),
    ("/etc:/ref:rx", "is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw"),
    ("/does/not/exist:/ref", "volume host path '/does/not/exist' does not exist"),
    ("/etc:relative", "needs 'bind': an absolute path in the container"),
    ("/etc:/shared/ref", "collides with the shared mountpoint '/shared/'"),
    ("/:/host", "may not be mounted into a container"),
])
def test_bad_volume_is_a_usage_error(capsys, workdir, no_spark, volume, message):
    assert run_map("--volume", volume, "in.txt", "-o", "out.txt") == cli.EXIT_USAGE
    line = one_error_line(capsys)
    assert line.startswith(f"lofn: error: --volume {volume!r}: ")
    assert message in line


def test_volume_given_twice_is_a_usage_error(capsys, workdir, no_spark):
    (workdir / "ref").mkdir()
    assert run_map("-v", "ref:/a", "-v", f"{workdir}/ref:/b:rw", "in.txt",
                   "-o", "out.txt") == cli.EXIT_USAGE
    assert one_error_line(capsys) == (
        f"lofn: error: --volume '{workdir}/ref:/b:rw': '{workdir}/ref' is already mounted by "
        "another --volume")


@pytest.mark.parametrize("option", ["--pid=host", "--publish=8080:80"])
def test_unsupported_docker_option_is_a_usage_error(capsys, workdir, no_spark, option):
    assert run_map(f"--docker-option={option}", "in.txt", "-o", "out.txt") == cli.EXIT_USAGE
    assert one_error_line(capsys).startswith(
        f"lofn: error: --docker-option: docker option {option!r} is not supported by lofn")


@pytest.mark.parametrize("args, message", [
    (["missing.txt", "-o", "out.txt"], "input file 'missing.txt' does not exist"),
    (["nothing*.txt", "-o", "out.txt"], "input 'nothing*.txt' matches no file"),
    (["in.txt", "-o", "no/such/dir/out.txt"], "output directory"),
    (["in.txt", "-o", "."], "output '.' is a directory"),
    (["in.txt", "-o", "out.txt", "--max-fan-in", "4"],
     "--max-fan-in and --reduce-image need --reduce"),
    (["in.txt", "-o", "out.txt", "--reduce-image", "x"],
     "--max-fan-in and --reduce-image need --reduce"),
    (["in.txt", "-o", "out.txt", "--reduce", " "], "--reduce must not be empty"),
])
def test_other_usage_errors(capsys, workdir, no_spark, args, message):
    assert run_map(*args) == cli.EXIT_USAGE
    assert message in one_error_line(capsys)
    assert not (workdir / "out.txt").exists()


def test_unsupported_master_is_a_usage_error(capsys, workdir, no_spark):
    pytest.importorskip("pyspark")  # DockerPipe is given a SparkConf (no Spark starts)
    assert run_map("in.txt", "-o", "out.txt", "--master", "mesos://head:5050") == \
        cli.EXIT_USAGE
    assert "is not supported by lofn" in one_error_line(capsys)


def test_options_reach_the_pipe_and_its_calls(capsys, workdir, monkeypatch):
    """The declared flags become DockerPipe's and the calls' keywords, and nothing else does."""
    pytest.importorskip("pyspark")
    (workdir / "patterns").mkdir()
    seen = {}

    def run_job(args, conf, pipe, call_options, started):
        seen.update(pipe=pipe, call=call_options)
        return cli.EXIT_OK

    monkeypatch.setattr(_run, "_run_job", run_job)
    monkeypatch.setattr(_run, "check_image", lambda image, pull: seen.setdefault(image, pull))
    assert run_map("in.txt", "-o", "out.txt", "--master", "local[1]", "--timeout", "5",
                   "--image-pull", "missing", "--reuse-containers", "-v", "patterns:/patterns",
                   "--docker-option=--memory=1g", "--reduce", "cat", "--reduce-image", "r",
                   "--max-fan-in", "3", "--resources", "memory=2g,growth=2") == cli.EXIT_OK
    options = seen["pipe"].options
    assert (options.timeout, options.image_pull, options.reuse_containers) == (
        5.0, "missing", True)
    assert options.resources == Resources(memory="2g", growth=2)
    assert seen["pipe"].volumes == {f"{workdir}/patterns": {"bind": "/patterns", "mode": "ro"}}
    assert seen["call"] == {"docker_options": ("--memory=1g",), "max_fan_in": 3}
    assert seen["lofn/busybox"] == seen["r"] == "missing"  # both images checked
    assert _run._accepted(seen["pipe"].map, seen["call"]) == {
        "docker_options": ("--memory=1g",)}


def test_defaults_pass_no_keyword(workdir, monkeypatch):
    """Flags left at their defaults leave DockerPipe's and the calls' defaults in force."""
    seen = {}

    def run_job(args, conf, pipe, call_options, started):
        seen["call"] = call_options
        return cli.EXIT_OK

    def pipe(master, options):
        seen["pipe"] = options
        return SimpleNamespace(options=PipeOptions(**options))

    monkeypatch.setattr(_run, "_pipe", pipe)
    monkeypatch.setattr(_run, "_spark_conf", lambda args: None)
    monkeypatch.setattr(_run, "check_image", lambda image, pull: seen.setdefault(image, pull))
    monkeypatch.setattr(_run, "_run_job", run_job)
    assert run_map("in.txt", "-o", "out.txt") == cli.EXIT_OK
    assert seen == {"pipe": {}, "call": {}, "lofn/busybox": "never"}


# ---------------------------------------------------------------------------
# error rendering

def test_docker_failure_with_stderr():
    exc = DockerFailure("container exited with code 3", image="lofn/busybox", partition=2,
                        exit_code=3, command="false", stderr="bad record 150\ngiving up\n")
    assert cli.describe_error(exc) == (
        "container exited with code 3 (partition 2, image lofn/busybox)",
        ["  container stderr (last lines):", "    bad record 150", "    giving up"])


def test_docker_failure_without_details():
    assert cli.describe_error(DockerFailure("it failed", stderr="\n")) == ("it failed", [])


@pytest.mark.parametrize("cls, cli_hint", [(ImageUnavailable, IMAGE_HINT),
                                           (OutOfMemory, MEMORY_HINT)])
def test_the_command_line_gives_its_own_hint(cls, cli_hint):
    exc = cls("the message", image="img", hint="the API's advice (image_pull='missing')")
    line, details = cli.describe_error(exc)
    assert line == "the message (image img)"
    assert details == [cli_hint]
    assert exc.message == "the message" and exc.hint.startswith("the API's")  # unchanged


def test_no_hint_without_the_failures_hint():
    exc = ImageUnavailable("could not pull image 'x' on host h: denied", image="x")
    assert cli.describe_error(exc) == ("could not pull image 'x' on host h: denied (image x)",
                                       [])


def test_other_hints_are_shown_as_given():
    exc = ContainerTimeout("killed after 5 s", partition=0, hint="raise timeout")
    assert cli.describe_error(exc) == ("killed after 5 s (partition 0)",
                                       ["  hint: raise timeout"])


def test_hint_of_a_task_failure_reported_by_spark():
    """A task's OutOfMemory reaches the driver as Spark's text; its hint survives."""
    task = OutOfMemory("container was killed for exceeding its memory limit", image="img",
                       partition=4, exit_code=137, hint="raise it with docker_options")
    spark = RuntimeError("Job aborted due to stage failure: ...\nTraceback (most recent call "
                         f"last):\n  File \"x.py\", line 1\nlofn.errors.OutOfMemory: {task}\n"
                         "\n\tat org.apache.spark.api.python.BasePythonRunner")
    assert cli.describe_error(spark) == (
        "container was killed for exceeding its memory limit (partition 4, image img)",
        [MEMORY_HINT])


def test_empty_input_and_other_lofn_errors():
    assert cli.describe_error(EmptyInput("Can not reduce() empty RDD")) == (
        "Can not reduce() empty RDD", [])
    assert cli.describe_error(InvalidArgument("first line\nsecond")) == ("first line", [])
    assert cli.describe_error(cli.UsageError("cannot write 'o': No space")) == (
        "cannot write 'o': No space", [])


def test_non_lofn_exceptions():
    assert cli.describe_error(RuntimeError("boom\nat somewhere")) == ("RuntimeError: boom", [])
    assert cli.describe_error(KeyError()) == ("KeyError", [])
    task = RuntimeError("Job aborted\nTraceback (most recent call last):\n  File \"t.py\"\n"
                        "ZeroDivisionError: division by zero\n\tat org.apache.spark.X")
    assert cli.describe_error(task) == ("ZeroDivisionError: division by zero", [])


# ---------------------------------------------------------------------------
# the job, with Spark and the pipe replaced

class FakeRDD:
    def __init__(self, lines):
        self.lines = lines

    def getNumPartitions(self):
        return 2

    def collect(self):
        return self.lines


class FakeContext:
    defaultParallelism = 2

    def textFile(self, path, minPartitions):
        return FakeRDD([])


class FakePipe:
    """DockerPipe's signatures, recording the keywords each call gets."""

    def __init__(self):
        self.calls = {}

    def map(self, rdd, image_name, command, *, docker_options=None, timeout=None):
        self.calls["map"] = {"docker_options": docker_options}
        return rdd

    def reduce(self, rdd, image_name, command, *, docker_options=None, max_fan_in=32):
        self.calls["reduce"] = {"docker_options": docker_options, "max_fan_in": max_fan_in}
        raise EmptyInput("Can not reduce() empty RDD: every partition is empty")


def test_reduce_of_empty_input_is_an_empty_output():
    args = build_parser().parse_args(["map", "--image", "i", "--command", "c", "--reduce",
                                      "r", "in", "-o", "-"])
    pipe, outcome = FakePipe(), _run.Outcome()
    call = {"docker_options": ("--memory=1g",), "max_fan_in": 4}
    assert _run._compute(args, FakeContext(), pipe, call, nullcontext(), outcome) is None
    assert (outcome.lines, outcome.empty, outcome.partitions) == ([], True, 2)
    assert pipe.calls == {"map": {"docker_options": ("--memory=1g",)},
                          "reduce": {"docker_options": ("--memory=1g",), "max_fan_in": 4}}
    outcome.ok = True
    assert _run._output("-", outcome) == (
        "stdout (0 lines - the map wrote no lines, so there was nothing to reduce)")


def test_a_failure_of_the_job_is_returned():
    class Failing(FakePipe):
        def map(self, *args, **kwargs):
            raise ImageUnavailable("gone")

    args = build_parser().parse_args(["map", "--image", "i", "--command", "c", "in", "-o", "-"])
    outcome = _run.Outcome()
    failure = _run._compute(args, FakeContext(), Failing(), {}, nullcontext(), outcome)
    assert isinstance(failure, ImageUnavailable) and outcome.lines is None
    assert _run._output("out.txt", outcome) == "out.txt not written"
