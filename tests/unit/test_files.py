"""Temp-file handling: streaming writes, lazy reads, UDF files, binary moves."""

import os

import pytest

from lofn.errors import InvalidArgument, InvalidArgumentType, OutputDecodeError
from lofn.tmp_file_handler import (
    UDF,
    TaskDirectory,
    check_file_name,
    handle_binary,
    read_back,
    read_binary,
    read_lines,
    split_lines,
    write_lines,
)


def test_write_lines_flattens_list_elements(tmp_path):
    path = tmp_path / "in.txt"
    write_lines(str(path), ["a", ["b", "c"], 3, b"raw", "ü"])
    assert path.read_bytes() == "a\nb\nc\n3\nraw\nü\n".encode()


def test_write_lines_consumes_a_generator(tmp_path):
    path = tmp_path / "in.txt"
    write_lines(str(path), (str(i) for i in range(100_000)))
    assert path.read_text().count("\n") == 100_000


def test_read_lines_strips_line_endings_like_textfile(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"one\r\ntwo\n\nthree")
    assert list(read_lines(str(path))) == ["one", "two", "", "three"]


def test_read_lines_is_lazy(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"a\nb\n")
    lines = read_lines(str(path))
    assert next(lines) == "a"


def test_read_lines_names_the_byte_offset_of_bad_utf8(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"fine\nalso fine\nbad \xff here\n")
    with pytest.raises(OutputDecodeError) as info:
        list(read_lines(str(path), partition=7))
    assert "byte offset 19" in str(info.value) and "partition 7" in str(info.value)
    assert isinstance(info.value, UnicodeError)


def test_split_lines_matches_read_lines():
    assert split_lines(b"a\r\nb\n\nc") == ["a", "b", "", "c"]
    assert split_lines(b"") == []
    assert split_lines(b"x\n") == ["x"]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", ".", ""])
def test_file_names_may_not_escape_the_shared_directory(name):
    with pytest.raises((InvalidArgument, InvalidArgumentType)):
        check_file_name(name, "container_input_name")


def test_nested_relative_file_names_are_allowed():
    assert check_file_name("sub/dir/x.txt", "name") == "sub/dir/x.txt"


def test_udf_writes_each_kind_of_contents(tmp_path):
    udf = UDF(str(tmp_path), lambda part: {
        "lines.txt": (x.upper() for x in part),
        "raw.bin": b"\x00\x01",
        "text.txt": "as is",
        "sub/nested.txt": ["n"],
    }, partition=iter(["a", "b"]))
    written = udf.map_udf()
    assert len(written) == 4
    assert (tmp_path / "lines.txt").read_text() == "A\nB\n"
    assert (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "text.txt").read_text() == "as is"
    assert (tmp_path / "sub" / "nested.txt").read_text() == "n\n"


def test_map_udf_receives_a_list_it_can_iterate_twice(tmp_path):
    def udf(partition):
        return {"one.txt": (p for p in partition), "two.txt": (p for p in partition)}
    UDF(str(tmp_path), udf, partition=iter(["x", "y"])).map_udf()
    assert (tmp_path / "two.txt").read_text() == "x\ny\n"


def test_reduce_udf_gets_both_blocks(tmp_path):
    UDF(str(tmp_path), lambda left, right: {"both.txt": left + right},
        partition_1=["l"], partition_2=["r"]).reduce_udf()
    assert (tmp_path / "both.txt").read_text() == "l\nr\n"


@pytest.mark.parametrize("returned, error", [
    (["not", "a", "dict"], InvalidArgumentType),
    ({"../escape.txt": ["x"]}, InvalidArgument),
    ({"/abs.txt": ["x"]}, InvalidArgument),
    ({"n.txt": 5}, InvalidArgumentType),
])
def test_udf_results_are_checked(tmp_path, returned, error):
    with pytest.raises(error):
        UDF(str(tmp_path), lambda part: returned, partition=[]).map_udf()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_udf_rejects_unknown_keywords(tmp_path):
    with pytest.raises(TypeError, match="partiton"):
        UDF(str(tmp_path), print, partiton=[])


def test_read_back_removes_the_directory_when_done(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "output.txt").write_text("1\n2\n")
    assert list(read_back(str(shared), str(shared / "output.txt"))) == ["1", "2"]
    assert not shared.exists()


def test_read_binary_returns_bytes_and_removes_the_directory(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "output.bin").write_bytes(b"\x00\xff")
    assert read_binary(str(shared), str(shared / "output.bin")) == b"\x00\xff"
    assert not shared.exists()


def test_handle_binary_moves_into_place_and_cleans_up(tmp_path):
    origin, destination = tmp_path / "task", tmp_path / "out"
    origin.mkdir()
    destination.mkdir()
    (origin / "output.bin").write_bytes(b"first")
    path = handle_binary(str(origin), str(destination), str(origin / "output.bin"),
                         "standalone", name="part-00001.bin")
    assert path == str(destination / "part-00001.bin")
    assert not origin.exists()
    # a retried attempt replaces the file instead of adding a second one
    origin.mkdir()
    (origin / "output.bin").write_bytes(b"second")
    handle_binary(str(origin), str(destination), str(origin / "output.bin"), "standalone",
                  name="part-00001.bin")
    assert os.listdir(destination) == ["part-00001.bin"]
    assert (destination / "part-00001.bin").read_bytes() == b"second"


def test_task_directory_creates_parent_and_removes_itself(tmp_path):
    parent = tmp_path / "missing" / "parent"
    with TaskDirectory(str(parent)) as task:
        assert os.path.isdir(task.shared) and os.path.isdir(task.staging)
        open(os.path.join(task.shared, "x"), "w").close()
    assert os.listdir(parent) == []
