"""lofn._safefs: nothing a container made in its shared directory is followed by the host.

Each case plants, in a directory standing for ``/shared/``, what a hostile
tool could leave there, next to a "host" file it cannot see, and checks that
the host side refuses it without reading, writing or following anything.
"""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from lofn import _safefs
from lofn.tmp_file_handler import UDF, TaskDirectory, handle_binary, read_back, read_binary

SECRET = b"host secret: not for containers\n"


@pytest.fixture
def host(tmp_path):
    """(shared directory, a host file outside it)."""
    shared = tmp_path / "task" / "shared"
    shared.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return shared, secret


def plant(shared, name: str, kind: str, secret) -> None:
    path = shared / name
    if kind == "absolute link":
        path.symlink_to(secret)
    elif kind == "relative link":
        path.symlink_to(os.path.relpath(secret, shared))
    elif kind == "dangling link":
        path.symlink_to("/nonexistent/lofn")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    else:
        raise AssertionError(kind)


KINDS = ["absolute link", "relative link", "dangling link", "fifo", "socket", "directory"]
if os.geteuid() == 0:  # mknod of a device needs root (as it does in a container)
    KINDS.append("device")


@pytest.mark.parametrize("kind", KINDS)
def test_open_regular_refuses_what_is_not_a_regular_file(host, kind):
    shared, secret = host
    plant(shared, "output.txt", kind, secret)
    with pytest.raises(_safefs.NotRegularFile) as info:
        _safefs.open_regular(str(shared), "output.txt")  # a FIFO would block a plain open
    assert "refused" in str(info.value) and SECRET.decode() not in str(info.value)


def test_a_link_is_named_with_its_target_never_its_content(host):
    shared, secret = host
    plant(shared, "output.txt", "absolute link", secret)
    with pytest.raises(_safefs.NotRegularFile) as info:
        _safefs.open_regular(str(shared), str(shared / "output.txt"))
    assert info.value.kind == "a symbolic link" and info.value.target == str(secret)


def test_a_link_on_the_way_is_not_followed(host, tmp_path):
    shared, _secret = host
    (shared / "out").symlink_to(tmp_path)  # out/secret.txt would be the host file
    with pytest.raises(_safefs.NotRegularFile) as info:
        _safefs.open_regular(str(shared), "out/secret.txt")
    assert info.value.path == str(shared / "out")


def test_missing_file_and_missing_directory(host):
    shared, _ = host
    with pytest.raises(_safefs.MissingFile):
        _safefs.open_regular(str(shared), "output.txt")
    with pytest.raises(_safefs.MissingFile):
        _safefs.open_regular(str(shared), "sub/output.txt")


def test_a_regular_file_is_read(host):
    shared, _ = host
    (shared / "sub").mkdir()
    (shared / "sub" / "output.txt").write_bytes(b"fine\n")
    with _safefs.open_regular(str(shared), "sub/output.txt") as handle:
        assert handle.read() == b"fine\n"


def test_paths_outside_the_root_are_rejected(host):
    shared, _ = host
    for path in ("../secret.txt", "a/../../secret.txt", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            _safefs.open_regular(str(shared), path)


@pytest.mark.parametrize("kind", ["absolute link", "dangling link", "fifo", "directory"])
def test_create_never_writes_through_what_is_there(host, kind):
    shared, secret = host
    plant(shared, "input.txt", kind, secret)
    with pytest.raises(OSError):
        _safefs.create(str(shared), "input.txt")
    assert secret.read_bytes() == SECRET
    assert not os.path.exists("/nonexistent/lofn")


def test_create_refuses_a_link_as_directory(host, tmp_path):
    shared, secret = host
    (shared / "sub").symlink_to(tmp_path)
    with pytest.raises(_safefs.NotRegularFile):
        _safefs.create(str(shared), "sub/secret.txt")
    with pytest.raises(_safefs.NotRegularFile):
        _safefs.create(str(shared), "sub/new.txt")
    assert secret.read_bytes() == SECRET and not (tmp_path / "new.txt").exists()


def test_create_makes_directories_and_a_new_file(host):
    shared, _ = host
    with _safefs.create(str(shared), "a/b/in.txt") as handle:
        handle.write(b"x")
    assert (shared / "a" / "b" / "in.txt").read_bytes() == b"x"


@pytest.mark.parametrize("kind", ["absolute link", "relative link", "fifo", "directory"])
def test_move_out_moves_only_regular_files(host, tmp_path, kind):
    shared, secret = host
    plant(shared, "output.bin", kind, secret)
    target = tmp_path / "moved.bin"
    with pytest.raises(_safefs.NotRegularFile):
        _safefs.move_out(str(shared), "output.bin", str(target))
    assert not os.path.lexists(target) and secret.read_bytes() == SECRET


def test_move_out_moves_a_regular_file(host, tmp_path):
    shared, _ = host
    (shared / "output.bin").write_bytes(b"\x00\x01")
    _safefs.move_out(str(shared), "output.bin", str(tmp_path / "moved.bin"))
    assert (tmp_path / "moved.bin").read_bytes() == b"\x00\x01"


def test_move_in_replaces_a_planted_link_without_following_it(host, tmp_path):
    shared, secret = host
    plant(shared, "input.txt", "absolute link", secret)
    staged = tmp_path / "staged"
    staged.write_bytes(b"block\n")
    _safefs.move_in(str(staged), str(shared), "input.txt")
    assert (shared / "input.txt").read_bytes() == b"block\n"
    assert not (shared / "input.txt").is_symlink() and secret.read_bytes() == SECRET


def test_empty_removes_links_not_what_they_point_at(host, tmp_path):
    shared, secret = host
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (shared / "dir").mkdir()
    (shared / "dir" / "to-outside").symlink_to(outside)
    (shared / "to-secret").symlink_to(secret)
    os.mkfifo(shared / "fifo")
    _safefs.empty(str(shared))
    assert os.listdir(shared) == []
    assert secret.read_bytes() == SECRET and (outside / "keep.txt").read_text() == "keep"


def test_regular_files_refuses_a_link_among_the_inputs(host):
    shared, secret = host
    (shared / "input.txt").write_bytes(b"a\n")
    plant(shared, "extra.txt", "absolute link", secret)
    with pytest.raises(_safefs.NotRegularFile):
        list(_safefs.regular_files(str(shared)))


def test_regular_files_refuses_a_linked_directory_without_opening_it(host, tmp_path):
    shared, _ = host
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (shared / "input.txt").write_bytes(b"a\n")
    (shared / "dir").symlink_to(outside)
    with pytest.raises(_safefs.NotRegularFile) as info:
        list(_safefs.regular_files(str(shared)))
    assert info.value.kind == "a symbolic link" and info.value.target == str(outside)


def test_remove_tree_removes_a_tree_of_any_depth_without_following_links(host, tmp_path):
    shared, secret = host
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    descriptor = os.open(shared, os.O_RDONLY | os.O_DIRECTORY)
    for _level in range(1500):  # deeper than recursion (or a descriptor per level) allows
        os.mkdir("d", dir_fd=descriptor)
        os.symlink(str(outside), "link", dir_fd=descriptor)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    os.close(descriptor)
    root = shared.parent
    _safefs.remove_tree(str(root))
    assert not root.exists()
    assert secret.read_bytes() == SECRET and os.listdir(outside) == ["keep.txt"]
    _safefs.remove_tree(str(root))  # already gone: nothing to do


def test_regular_files_refuses_a_tree_nested_too_deep(host):
    shared, _ = host
    os.makedirs(shared / "/".join(["d"] * 300))
    with pytest.raises(_safefs.NotRegularFile, match="levels deep"):
        list(_safefs.regular_files(str(shared)))


def test_emptying_ends_while_a_process_keeps_adding_entries(host):
    shared, _ = host
    stop, outcome = threading.Event(), []

    def add():  # a process the container left, adding directories and files without end
        for i in range(10 ** 9):
            if stop.is_set():
                return
            try:
                os.makedirs(shared / f"x{i}" / "y")
                (shared / f"f{i}").write_text("z")
            except OSError:
                pass

    def empty():
        try:
            _safefs.empty(str(shared))
            outcome.append("emptied")
        except OSError as exc:  # a directory that gained entries cannot be removed
            outcome.append(exc)

    adder = threading.Thread(target=add, daemon=True)
    adder.start()
    emptier = threading.Thread(target=empty, daemon=True)
    emptier.start()
    emptier.join(120)  # a liveness bound, not a speed check: listing again forever never ends
    stop.set()
    adder.join()
    assert outcome, "empty() was still running while entries kept coming"


def test_regular_files_in_sorted_order(host):
    shared, _ = host
    for name in ("b.txt", "a/z.txt", "a/y.txt"):
        os.makedirs(shared / os.path.dirname(name), exist_ok=True)
        (shared / name).write_text(name)
    seen = [(name, handle.read()) for name, handle in _safefs.regular_files(str(shared))]
    assert seen == [("b.txt", b"b.txt"), ("a/y.txt", b"a/y.txt"), ("a/z.txt", b"a/z.txt")]


# the seed's names stay safe

@pytest.mark.parametrize("kind", ["absolute link", "fifo"])
def test_seed_readers_refuse_links_and_fifos(host, kind):
    shared, secret = host
    plant(shared, "output.txt", kind, secret)
    done = threading.Event()

    def read():
        with pytest.raises(_safefs.NotRegularFile):
            list(read_back(str(shared.parent), str(shared / "output.txt")))
        done.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert done.is_set(), "read_back blocked on what the container left"
    assert not shared.parent.exists()  # removed all the same


def test_seed_read_binary_refuses_a_link(host):
    shared, secret = host
    plant(shared, "output.bin", "absolute link", secret)
    with pytest.raises(_safefs.NotRegularFile):
        read_binary(str(shared.parent), str(shared / "output.bin"))


def test_seed_handle_binary_refuses_a_link(host, tmp_path):
    shared, secret = host
    plant(shared, "output.bin", "relative link", secret)
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(_safefs.NotRegularFile):
        handle_binary(str(shared.parent), str(destination), str(shared / "output.bin"),
                      "standalone", name="part-00000.bin")
    assert os.listdir(destination) == [] and not shared.parent.exists()


def test_seed_udf_refuses_to_write_through_a_link(host):
    shared, secret = host
    plant(shared, "in.txt", "absolute link", secret)
    with pytest.raises(FileExistsError):
        UDF(str(shared), lambda rows: {"in.txt": rows}, partition=["x"]).map_udf()
    assert secret.read_bytes() == SECRET


def test_a_reused_shared_directory_is_emptied_without_following_links(host, tmp_path):
    shared, secret = host
    plant(shared, "input.txt", "absolute link", secret)
    with TaskDirectory(str(tmp_path), shared=str(shared)) as task:
        assert os.listdir(task.shared) == []
    assert secret.read_bytes() == SECRET
