"""The exception tree, and recovering a task's lofn error from Spark's error text."""

import pickle

import pytest

from lofn.errors import (
    DockerFailure,
    DockerUnavailable,
    EmptyInput,
    InvalidArgument,
    InvalidArgumentType,
    LofnError,
    MissingOutputError,
    OutOfMemory,
    OutputDecodeError,
    from_spark_error,
)


def test_builtin_bases():
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(InvalidArgumentType, TypeError)
    assert issubclass(DockerUnavailable, OSError)
    assert issubclass(OutputDecodeError, UnicodeError)
    assert issubclass(EmptyInput, InvalidArgument) and issubclass(EmptyInput, ValueError)
    for cls in (InvalidArgument, InvalidArgumentType, DockerUnavailable, DockerFailure,
                MissingOutputError, OutputDecodeError):
        assert issubclass(cls, LofnError)


def failure():
    return DockerFailure("container exited with code 3", image="lofn/busybox",
                         command="echo $HOME: 'x'", exit_code=3, partition=5,
                         stderr="first\n\nlast: error\n")


def test_docker_failure_renders_its_fields():
    text = str(failure())
    assert text.splitlines()[0] == "container exited with code 3"
    for fragment in ("image: lofn/busybox", "command: echo $HOME: 'x'", "exit code: 3",
                     "partition: 5", "stderr tail:", "    last: error"):
        assert fragment in text


def test_docker_failure_pickles():
    copy = pickle.loads(pickle.dumps(failure()))
    assert (copy.exit_code, copy.partition, copy.stderr) == (3, 5, "first\n\nlast: error\n")


def test_a_hint_is_a_field_apart_from_the_message():
    advised = OutOfMemory("container was killed for exceeding its memory limit (8m)",
                          image="i", exit_code=137, partition=2, hint="raise it with --memory")
    assert str(advised).splitlines()[:2] == [advised.message, "  image: i"]
    assert "  hint: raise it with --memory" in str(advised).splitlines()
    copy = pickle.loads(pickle.dumps(advised))
    assert (type(copy), copy.message, copy.hint) == (OutOfMemory, advised.message, advised.hint)
    recovered = from_spark_error(RuntimeError(spark_text(advised)))
    assert (type(recovered), recovered.message, recovered.hint, recovered.exit_code) == (
        OutOfMemory, advised.message, "raise it with --memory", 137)


def test_seed_style_single_message_still_works():
    assert str(DockerFailure("The docker container failed")) == "The docker container failed"


def spark_text(exc, sqlstate: bool = False):
    """What Spark's error looks like around a Python task's traceback.

    Spark 4.2 ends the Python part with `` SQLSTATE: 38000``.
    """
    return ("An error occurred while calling o42.collect.\n"
            ": org.apache.spark.SparkException: Job aborted due to stage failure: "
            "Task 0 in stage 1.0 failed 1 times\n"
            "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
            '  File "/x/lofn/_task.py", line 10, in run\n'
            f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}\n"
            + (" SQLSTATE: 38000\n" if sqlstate else "")
            + "\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException\n")


@pytest.mark.parametrize("sqlstate", [False, True], ids=["spark-4.0", "spark-4.2"])
def test_from_spark_error_recovers_a_docker_failure(sqlstate):
    recovered = from_spark_error(RuntimeError(spark_text(failure(), sqlstate)))
    assert type(recovered) is DockerFailure
    assert recovered.exit_code == 3 and recovered.partition == 5
    assert recovered.image == "lofn/busybox" and recovered.command == "echo $HOME: 'x'"
    assert recovered.stderr == "first\n\nlast: error"


def test_from_spark_error_recovers_subclasses():
    missing = MissingOutputError("container exited 0 but did not write /shared/out.txt",
                                 image="i", command="true", partition=0)
    assert type(from_spark_error(RuntimeError(spark_text(missing)))) is MissingOutputError
    decode = OutputDecodeError("output file output.txt is not valid UTF-8 at byte offset 4")
    recovered = from_spark_error(RuntimeError(spark_text(decode)))
    assert type(recovered) is OutputDecodeError and "byte offset 4" in str(recovered)


@pytest.mark.parametrize("text", ["plain failure", "foo.errors.DockerFailure: not ours",
                                  "lofn.errors.NotAClass: x"])
def test_from_spark_error_ignores_other_errors(text):
    assert from_spark_error(RuntimeError(text)) is None
