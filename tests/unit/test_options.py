"""docker_options translation: every supported flag, both forms, and rejections."""

import pytest

from lofn._options import SUPPORTED_FLAGS, parse_docker_options, resolve_environment
from lofn.errors import InvalidArgument, InvalidArgumentType


@pytest.mark.parametrize("options, expected", [
    (["--cpus=1.5"], {"nano_cpus": 1_500_000_000}),
    (["--cpus", "2"], {"nano_cpus": 2_000_000_000}),
    (["-m", "512m"], {"mem_limit": "512m"}),
    (["--memory=1g"], {"mem_limit": "1g"}),
    (["-m2g"], {"mem_limit": "2g"}),
    (["--shm-size", "64m"], {"shm_size": "64m"}),
    (["--ipc=host"], {"ipc_mode": "host"}),
    (["-e", "A=1", "--env=B=2"], {"environment": ["A=1", "B=2"]}),
    (["--network", "none"], {"network_mode": "none"}),
    (["-u", "1000:1000"], {"user": "1000:1000"}),
    (["--user=nobody"], {"user": "nobody"}),
    (["-w", "/work"], {"working_dir": "/work"}),
    (["--workdir=/w"], {"working_dir": "/w"}),
    (["--entrypoint", "/bin/tini"], {"entrypoint": "/bin/tini"}),
    (["--device", "/dev/fuse"], {"devices": ["/dev/fuse"]}),
    (["--cap-add=SYS_PTRACE", "--cap-drop", "ALL"],
     {"cap_add": ["SYS_PTRACE"], "cap_drop": ["ALL"]}),
    (["--security-opt", "no-new-privileges"], {"security_opt": ["no-new-privileges"]}),
    (["--tmpfs", "/run:size=1m"], {"tmpfs": {"/run": "size=1m"}}),
    (["--tmpfs=/scratch"], {"tmpfs": {"/scratch": ""}}),
    (["--read-only"], {"read_only": True}),
    (["--read-only=false"], {"read_only": False}),
    (["--privileged"], {"privileged": True}),
    (["--pids-limit", "100"], {"pids_limit": 100}),
    (["-v", "/data:/data"], {"volumes": {"/data": {"bind": "/data", "mode": "ro"}}}),
    (["--volume=/d:/e:rw"], {"volumes": {"/d": {"bind": "/e", "mode": "rw"}}}),
    (["--rm"], {}),
    (None, {}),
    ([], {}),
])
def test_flags_become_sdk_arguments(options, expected):
    assert parse_docker_options(options) == expected


def test_ulimit_and_gpus_become_sdk_types():
    parsed = parse_docker_options(["--ulimit", "nofile=1024:2048", "--ulimit=core=0",
                                   "--gpus", "all"])
    assert [dict(u) for u in parsed["ulimits"]] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "core", "Soft": 0, "Hard": 0}]
    assert parsed["device_requests"][0]["Count"] == -1
    assert parsed["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert parse_docker_options(["--gpus=2"])["device_requests"][0]["Count"] == 2
    requests = parse_docker_options(["--gpus", "device=0,1"])["device_requests"]
    assert requests[0]["DeviceIDs"] == ["0", "1"]


def test_old_style_elements_are_split_like_a_shell():
    assert parse_docker_options(["-e FOO=bar", "--memory 1g"]) == {
        "environment": ["FOO=bar"], "mem_limit": "1g"}


def test_a_separate_value_keeps_its_spaces():
    assert parse_docker_options(["-e", "GREETING=hello world"]) == {
        "environment": ["GREETING=hello world"]}


def test_env_file_is_read(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=1\n\nB=two words\n")
    assert parse_docker_options(["--env-file", str(env_file)]) == {
        "environment": ["A=1", "B=two words"]}


def test_missing_env_file_names_it(tmp_path):
    with pytest.raises(InvalidArgument, match="nope"):
        parse_docker_options([f"--env-file={tmp_path}/nope"])


@pytest.mark.parametrize("options, fragment", [
    (["--foo"], "'--foo' is not supported"),
    (["--name", "x"], "'--name' is not supported"),
    (["-d"], "'-d' is not supported"),
    (["--cpus"], "'--cpus' needs a value"),
    (["--cpus=0"], "--cpus takes a positive number"),
    (["--cpus=lots"], "'lots'"),
    (["--pids-limit=x"], "--pids-limit takes a whole number"),
    (["--ulimit", "nofile=a"], "--ulimit takes NAME=SOFT"),
    (["--gpus", "some"], "--gpus takes"),
    (["--tmpfs", "run"], "--tmpfs takes an absolute"),
    (["-v", "/only-one-part"], "'/only-one-part' is not HOST:BIND, HOST:BIND:ro or HOST:BIND:rw"),
    (["--read-only=maybe"], "read_only takes true or false"),
])
def test_bad_flags_are_rejected_naming_them(options, fragment):
    with pytest.raises(InvalidArgument) as info:
        parse_docker_options(options)
    assert fragment in str(info.value)


def test_unsupported_flag_error_lists_supported_flags():
    with pytest.raises(InvalidArgument) as info:
        parse_docker_options(["--restart=always"])
    assert "--memory" in str(info.value) and "--restart=always" in str(info.value)
    assert "--memory" in SUPPORTED_FLAGS


@pytest.mark.parametrize("options", ["--memory=1g", ("--cpus", 1.0), [1]])
def test_options_must_be_a_list_of_strings(options):
    with pytest.raises(InvalidArgumentType):
        parse_docker_options(options)


def test_bare_env_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOFN_SET", "yes")
    monkeypatch.delenv("LOFN_UNSET", raising=False)
    assert resolve_environment(["A=1", "LOFN_SET", "LOFN_UNSET"]) == ["A=1", "LOFN_SET=yes"]
