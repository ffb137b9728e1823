"""The seed's module-level functions, run for real: run(), execute(), imports."""

from __future__ import annotations

import pytest


def test_documented_imports():
    from lofn.api import DockerPipe  # noqa: F401
    from lofn.docker_handler import DockerFailure, execute, run, validate_user_input  # noqa: F401
    from lofn.hdfs_handler import setup_user_volumes_from_hdfs  # noqa: F401
    from lofn.tmp_file_handler import UDF, handle_binary, read_back, read_binary  # noqa: F401

    assert issubclass(DockerFailure, Exception)


def test_run_returns_false_on_success(busybox, tmp_path):
    from lofn.docker_handler import run

    reference = tmp_path / "ref"
    reference.mkdir()
    (reference / "r.txt").write_text("ref\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    status = run(busybox, "cat /ref/r.txt > /shared/out.txt", bind_files=["/shared/"],
                 volume_files=[str(shared)], volumes={str(reference): {"bind": "/ref"}})
    assert status is False
    assert (shared / "out.txt").read_text() == "ref\n"


def test_run_returns_the_failure_message(busybox, tmp_path):
    from lofn.docker_handler import run

    status = run(busybox, "echo bad >&2; exit 5", ["/shared/"], [str(tmp_path)],
                 docker_options=["-e", "X=1"])
    assert "exited with code 5" in status and "bad" in status


def test_execute_runs_a_docker_run_line_without_a_shell(busybox, tmp_path):
    from lofn.docker_handler import execute

    line = (f"docker run --rm -v {tmp_path}:/out:rw -e 'WHO=the $USER' {busybox} "
            "sh -c 'echo \"$WHO\" > /out/who.txt'")
    assert execute(line) is False
    assert (tmp_path / "who.txt").read_text() == "the $USER\n"
    assert "code 3" in execute(["docker", "run", busybox, "sh", "-c", "exit 3"])


def test_hdfs_volumes_need_an_hdfs_url(monkeypatch, tmp_path):
    from lofn.hdfs_handler import setup_user_volumes_from_hdfs

    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.setenv("HDFSCLI_CONFIG", str(tmp_path / "none.cfg"))
    with (pytest.raises(ValueError, match="needs an HDFS URL"),
          setup_user_volumes_from_hdfs({"/ref": {"bind": "/ref"}})):
        pass
