"""The ``lofn`` command line, end to end: subprocesses on a real Docker engine and local Spark.

Each Spark start-up takes many seconds, so the runs that start Spark are
launched together, in parallel, by one module fixture that waits for all of
them; the tests then check what each run printed and wrote. The runs that
fail before Spark starts (usage errors) run on their own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lofn.cli import build_parser
from tests.conftest import require
from tests.limits import READ_LIMITS, parse_limits

from .helpers import MAP_COMMAND, REDUCE_COMMAND, make_text, parse_counts, python_counts

LOFN = [sys.executable, "-m", "lofn"]
# Each Spark run gets two cores and no web UI (no port hunting next to other sessions);
# the containers need no network.
SPARK = ["--master", "local[2]", "--conf", "spark.ui.enabled=false",
         "--docker-option=--network=none"]
RUN_TIMEOUT = 300
NOISE = ("Traceback", "at org.apache", "Py4J", "WARN", "log4j", "SparkException")


def cli_env(session_tmp: str) -> dict:
    # A quick JIT and GC for the short-lived Spark JVMs: about half the start-up time.
    env = dict(os.environ, TMPDIR=session_tmp, PYTHON=sys.executable,
               JDK_JAVA_OPTIONS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    return env


def run_cli(args: list[str], session_tmp: str, cwd: Path | None = None, timeout=RUN_TIMEOUT):
    return subprocess.run(LOFN + args, env=cli_env(session_tmp), cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def help_examples(text: str) -> list[str]:
    """The shell commands shown as ``$ lofn ...`` in a help text, continuation lines included."""
    examples, current = [], None
    for line in text.splitlines():
        if line.lstrip().startswith("$ lofn "):
            current = [line.lstrip()[2:]]
            examples.append(current)
        elif current is not None and current[-1].endswith("\\"):
            current.append(line)
        else:
            current = None
    return ["\n".join(lines) for lines in examples]


def shell_argv(example: str, cwd: Path) -> list[str]:
    """The arguments a POSIX shell passes to ``lofn`` for ``example`` (run in ``cwd``)."""
    script = "lofn() { printf '%s\\0' \"$@\"; }\n" + example
    out = subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, check=True).stdout
    return out.decode().split("\0")[:-1]


def summary(stderr: str) -> dict[str, str]:
    """The summary's ``name: value`` lines."""
    return dict(re.findall(r"^  (partitions|containers|failures|output):\s+(.*)$", stderr,
                           re.MULTILINE))


def assert_no_noise(stderr: str) -> None:
    for word in NOISE:
        assert word not in stderr, f"{word!r} in the output:\n{stderr}"
    for line in stderr.splitlines():
        assert line.startswith(("lofn: ", "  ")), f"a line lofn did not write: {line!r}"


# ---------------------------------------------------------------------------
# the runs that start Spark, in parallel

@pytest.fixture(scope="module")
def runs(busybox, session_tmp, tmp_path_factory) -> dict:
    """Start every Spark-running command at once; return name -> (result, directory, data)."""
    base = tmp_path_factory.mktemp("cli")
    jobs = {}

    # word count with a reduce, the commands of example/word_count.py
    words = base / "words"
    words.mkdir()
    text = make_text(3000, seed=11)
    (words / "book.txt").write_text("\n".join(text) + "\n")
    jobs["word_count"] = (words, text, [*LOFN, "map", *SPARK,
        "--image", busybox, "--partitions", "4", "--command", MAP_COMMAND,
        "--reduce", REDUCE_COMMAND, "book.txt", "-o", "counts.tsv"])

    # the --volume example of --help, exactly as shown there, through a real shell
    grep = base / "grep"
    (grep / "patterns").mkdir(parents=True)
    log = [f"{i:04d} {('ERROR disk full', 'INFO ok', 'WARN slow', 'INFO fine')[i % 4]} "
           f"request {i * 7 % 1000}" for i in range(400)]
    (grep / "app.log").write_text("\n".join(log) + "\n")
    (grep / "patterns" / "list.txt").write_text("ERROR\nWARN\n")
    example = next(e for e in help_examples(build_parser().format_help()) if "--volume" in e)
    jobs["volume_example"] = (grep, log, ["sh", "-c",
                                          'lofn() { "$PYTHON" -m lofn "$@"; }\n' + example])

    # a command that fails on the partition holding line 150
    fail = base / "fail"
    fail.mkdir()
    (fail / "in.txt").write_text("".join(f"{i}\n" for i in range(300)))
    jobs["failure"] = (fail, None, [*LOFN, "map", *SPARK,
        "--image", busybox, "-p", "3", "in.txt", "-o", "out.txt", "--command",
        "if grep -qx 150 /shared/input.txt; then echo 'bad record 150' >&2;"
        " echo 'giving up' >&2; exit 3; fi; cat /shared/input.txt > /shared/output.txt"])

    # long-lived containers, no progress line, output to stdout
    reuse = base / "reuse"
    reuse.mkdir()
    lines = [f"line {i}" for i in range(100)]
    (reuse / "in.txt").write_text("\n".join(lines) + "\n")
    jobs["reuse_quiet"] = (reuse, lines, [*LOFN, "map", *SPARK,
        "--image", busybox, "-p", "5", "--reuse-containers", "--quiet", "in.txt",
        "-o", "-", "--command", "tr a-z A-Z < /shared/input.txt > /shared/output.txt"])

    # containers sized by Spark: local[2] and a 600 MiB budget, read back from the cgroup
    sized = base / "sized"
    sized.mkdir()
    (sized / "in.txt").write_text("".join(f"{i}\n" for i in range(4)))
    jobs["resources"] = (sized, None, [*LOFN, "map", *SPARK,
        "--image", busybox, "-p", "4", "--resources", "memory=600m", "--quiet", "in.txt",
        "-o", "-", "--command", f'{READ_LIMITS}; echo "$m $c" > /shared/output.txt'])

    started = time.monotonic()
    processes = {name: subprocess.Popen(argv, cwd=cwd, env=cli_env(session_tmp), text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name, (cwd, _, argv) in jobs.items()}
    results = {}
    for name, process in processes.items():
        try:
            stdout, stderr = process.communicate(
                timeout=max(1, RUN_TIMEOUT - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            for other in processes.values():
                other.kill()
            pytest.fail(f"lofn run {name!r} took over {RUN_TIMEOUT} s")
        results[name] = (subprocess.CompletedProcess(process.args, process.returncode,
                                                     stdout, stderr),
                         jobs[name][0], jobs[name][1])
    return results


def test_word_count_with_reduce_equals_python_count(runs):
    result, directory, text = runs["word_count"]
    assert result.returncode == 0, result.stderr
    output = (directory / "counts.tsv").read_text().splitlines()
    assert parse_counts(output) == python_counts(text)
    assert output == sorted(output, key=lambda line: (-int(line.split("\t")[1]), line))
    assert_no_noise(result.stderr)
    assert result.stdout == ""


def test_progress_lines_and_summary(runs):
    result, directory, _ = runs["word_count"]
    stderr = result.stderr
    # not a terminal: plain lines, each stage's last one showing it complete
    assert re.search(r"^lofn: map: 4/4 partitions done, \d+ running, 0 failed; "
                     r"\d+ containers started; ", stderr, re.MULTILINE), stderr
    # 4 blocks on 2 cores: 2 merges of 2 blocks, then 1 (plan_fan_ins)
    assert "lofn: reduce round 1/2: 2/2 merges done" in stderr
    assert "lofn: reduce round 2/2: 1/1 merges done" in stderr
    assert "\r" not in stderr
    assert re.search(r"^lofn: done in [\d.:]+( s)? \(Spark start-up ", stderr, re.MULTILINE)
    lines = len((directory / "counts.tsv").read_text().splitlines())
    assert summary(stderr) == {
        "partitions": "4 (map), then 2 reduce rounds",
        "containers": "7 started",  # 4 map containers and 2 + 1 merges
        "failures": "0 failed tasks",
        "output": f"{directory / 'counts.tsv'} ({lines} lines)",
    }


def test_help_volume_example_keeps_order(runs):
    result, directory, log = runs["volume_example"]
    assert result.returncode == 0, result.stderr
    expected = [line for line in log if "ERROR" in line or "WARN" in line]
    assert (directory / "matches.log").read_text().splitlines() == expected
    assert summary(result.stderr)["partitions"] == "4 (map)"
    assert summary(result.stderr)["containers"] == "4 started"
    assert "lofn: map: 4/4 partitions done" in result.stderr
    assert_no_noise(result.stderr)


def test_failing_command_is_one_line_and_stderr_tail(runs):
    result, directory, _ = runs["failure"]
    assert result.returncode == 1, result.stderr
    assert_no_noise(result.stderr)
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("lofn: error:")]
    assert len(errors) == 1, result.stderr
    error = errors[0]
    assert re.fullmatch(r"lofn: error: container exited with code 3 "
                        r"\(partition [0-2], image lofn/busybox(:latest)?\)", lines[error]), \
        lines[error]
    tail = lines[error + 1:]
    assert all(line.startswith("  ") for line in tail), tail
    assert [line.strip() for line in tail[-2:]] == ["bad record 150", "giving up"]
    assert re.search(r"^  failures:\s+[1-9]\d* failed tasks?$", result.stderr, re.MULTILINE)
    assert summary(result.stderr)["output"] == "out.txt not written"
    assert not (directory / "out.txt").exists()
    assert sorted(p.name for p in directory.iterdir()) == ["in.txt"]  # no partial file


def test_reuse_containers_quiet_to_stdout(runs):
    result, _, lines = runs["reuse_quiet"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [line.upper() for line in lines]
    assert "lofn: map:" not in result.stderr  # --quiet: no progress
    containers = summary(result.stderr)["containers"]
    match = re.fullmatch(r"(\d) started \((\d) kept warm for reuse\)", containers)
    # one per Python worker, for the 5 partitions
    assert match and 1 <= int(match.group(1)) == int(match.group(2)) <= 2, containers
    assert summary(result.stderr)["output"] == "stdout (100 lines)"
    assert_no_noise(result.stderr)


def test_resources_size_each_container(runs):
    result, _, _ = runs["resources"]
    assert result.returncode == 0, result.stderr
    limits = {parse_limits(*line.split()) for line in result.stdout.splitlines()}
    assert limits == {(300 * (1 << 20), 1.0)}  # 600 MiB * 1 task CPU / 2 cores, 1 CPU


# ---------------------------------------------------------------------------
# help and usage errors: no Spark

def test_help_shows_runnable_examples(tmp_path, session_tmp):
    for args in (["--help"], ["map", "--help"]):
        result = run_cli(args, session_tmp)
        assert result.returncode == 0, result.stderr
        examples = help_examples(result.stdout)
        assert len(examples) == 3, result.stdout
        parser = build_parser()
        for example in examples:
            argv = shell_argv(example, tmp_path)
            assert argv[0] == "map"
            parser.parse_args(argv)  # every example is a valid command line
    count = shell_argv(examples[0], tmp_path)
    assert count[count.index("--command") + 1] == MAP_COMMAND
    assert count[count.index("--reduce") + 1] == REDUCE_COMMAND
    volume = shell_argv(examples[1], tmp_path)
    assert volume[volume.index("--volume") + 1] == f"{tmp_path}/patterns:/patterns:ro"
    assert "--docker-option=--memory=256m" in volume


@pytest.mark.parametrize("volume, message", [
    ("nocolon", "is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw"),
    ("/etc:/ref:rx", "is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw"),
    ("/does/not/exist:/ref", "volume host path '/does/not/exist' does not exist"),
    ("/etc:relative", "needs 'bind': an absolute path in the container"),
])
def test_bad_volume_is_a_usage_error(tmp_path, session_tmp, busybox, volume, message):
    (tmp_path / "in.txt").write_text("a\n")
    result = run_cli(["map", "--image", busybox, "--command", "true", "--volume", volume,
                      "in.txt", "-o", "out.txt"], session_tmp, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith(f"lofn: error: --volume {volume!r}")
    assert message in result.stderr
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("option", ["--pid=host", "--publish=8080:80"])
def test_unsupported_docker_option_is_a_usage_error(tmp_path, session_tmp, busybox, option):
    (tmp_path / "in.txt").write_text("a\n")
    result = run_cli(["map", "--image", busybox, "--command", "true",
                      f"--docker-option={option}", "in.txt", "-o", "out.txt"],
                     session_tmp, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"lofn: error: --docker-option: docker option {option!r} "
                                    "is not supported by lofn")


@pytest.mark.parametrize("args, message", [
    (["missing.txt", "-o", "out.txt"], "input file 'missing.txt' does not exist"),
    (["in.txt", "-o", "no/such/dir/out.txt"], "output directory"),
    (["in.txt", "-o", "out.txt", "--max-fan-in", "4"], "--max-fan-in and --reduce-image need"),
    (["in.txt", "-o", "out.txt", "--master", "mesos://head:5050"], "is not supported by lofn"),
])
def test_other_usage_errors(tmp_path, session_tmp, busybox, args, message):
    (tmp_path / "in.txt").write_text("a\n")
    result = run_cli(["map", "--image", busybox, "--command", "true", *args], session_tmp,
                     cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("lofn: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_argparse_errors_exit_2(session_tmp):
    result = run_cli(["map", "--image", "x"], session_tmp, timeout=60)
    assert result.returncode == 2
    assert "the following arguments are required" in result.stderr
    assert run_cli([], session_tmp, timeout=60).returncode == 2


def test_missing_image_fails_before_spark(tmp_path, session_tmp, docker_client):
    (tmp_path / "in.txt").write_text("a\n")
    started = time.monotonic()
    result = run_cli(["map", "--image", "lofn/no-such-image:never", "--command", "true",
                      "in.txt", "-o", "out.txt"], session_tmp, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("lofn: error: image 'lofn/no-such-image:never' is not "
                                    "present")
    assert "--image-pull missing" in result.stderr
    assert "Spark start-up" not in result.stderr  # checked before Spark starts
    assert time.monotonic() - started < 60


def test_console_script(session_tmp):
    """``pip install -e .`` puts a ``lofn`` script next to the interpreter."""
    script = Path(sys.executable).parent / "lofn"
    if not script.exists():
        require("the lofn console script", f"{script} is missing: pip install -e .")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            env=cli_env(session_tmp), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lofn ")
    assert "examples:" in result.stdout
