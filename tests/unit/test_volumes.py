"""validate_user_input: the documented TypeError/ValueError for bad volumes."""

import pytest

from lofn.docker_handler import validate_user_input


def test_defaults_mode_to_read_only_and_lowercases_keys(tmp_path):
    assert validate_user_input({str(tmp_path): {"BIND": "/ref"}}) == {
        str(tmp_path): {"bind": "/ref", "mode": "ro"}}


def test_keeps_rw(tmp_path):
    assert validate_user_input({str(tmp_path): {"bind": "/ref", "mode": "rw"}})[
        str(tmp_path)]["mode"] == "rw"


@pytest.mark.parametrize("volumes", [["/data"], "/data:/data", None])
def test_not_a_dict_is_a_type_error(volumes):
    with pytest.raises(TypeError, match="volumes must be a dict"):
        validate_user_input(volumes)


def test_binding_not_a_dict_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="/ref"):
        validate_user_input({str(tmp_path): "/ref"})


@pytest.mark.parametrize("binding, fragment", [
    ({"bind": "/ref", "mode": "ro", "extra": 1}, "unknown keys ['extra']"),
    ({"bind": "/ref", "mode": "rwx"}, "mode 'rwx'"),
    ({"mode": "ro"}, "needs 'bind'"),
    ({"bind": "ref"}, "needs 'bind': an absolute path"),
    ({"bind": "/shared/ref"}, "collides with the shared mountpoint"),
    ({"bind": "/"}, "collides with the shared mountpoint"),
])
def test_bad_binding_is_a_value_error(tmp_path, binding, fragment):
    with pytest.raises(ValueError) as info:
        validate_user_input({str(tmp_path): binding}, shared_mountpoint="/shared/")
    assert fragment in str(info.value)


@pytest.mark.parametrize("host, fragment", [
    ("relative/dir", "must be an absolute path"),
    ("/no/such/lofn/dir", "does not exist"),
    ("/", "may not be mounted"),
    ("/var/run/docker.sock", "may not be mounted"),
])
def test_bad_host_path_is_a_value_error(host, fragment):
    with pytest.raises(ValueError) as info:
        validate_user_input({host: {"bind": "/ref"}})
    assert fragment in str(info.value) and repr(host) in str(info.value)


def test_host_paths_need_not_exist_when_not_checked():
    assert validate_user_input({"/hdfs/ref": {"bind": "/ref"}}, check_host_paths=False)
