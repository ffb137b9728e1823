"""Touch files in a directory a container can write, following nothing the container made.

What a container wrote is hostile input: a tool in the image may leave
``/shared/output.txt`` as a symbolic link to ``/etc/shadow`` (which it
cannot see, but the host can), as a FIFO that blocks a reader forever, or
as a directory. Every host-side read, write, move and removal inside such a
directory therefore goes through this module:

- the directory itself (``root``) is one lofn created; below it, a path is
  walked one component at a time from directory file descriptors opened
  with ``O_NOFOLLOW``, so no symbolic link is followed anywhere in it;
- a file is read only if the descriptor opened with ``O_NOFOLLOW`` is a
  regular file by ``fstat`` (never a check by path followed by an open by
  path); special files are refused before they are opened;
- a file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: an entry the
  container planted makes the call fail, it is never written through;
- removal works from descriptors too (:func:`empty`, :func:`remove_tree`),
  iteratively, so a planted tree of any depth is removed.

What is refused raises :class:`NotRegularFile`; the task code turns it into
:class:`~lofn.errors.UnsafeOutputError`. The same idea as runc's
``securejoin`` and CPython's fd-based ``shutil.rmtree`` (which still opens a
directory it checked by path without ``O_NOFOLLOW``, so it is not used here); the bugs it
prevents are Docker's ``docker cp`` race (CVE-2018-15664) and Kubernetes'
subPath escape (CVE-2017-1002101).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

_BUFFER = 1 << 20
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the type check must not block the open
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_DEPTH = 64  # directory descriptors open at once while emptying a tree
_MAX_NESTING = 256  # directory levels regular_files walks (lofn's inputs need few)

_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a named pipe (FIFO)",
          stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory"}


class NotRegularFile(OSError):
    """An entry in a container-writable directory is not what the host may touch.

    Attributes:
        path: the path as the host sees it.
        kind: what it is, e.g. ``'a symbolic link'``.
        target: a link's target (as text, not followed), else ``None``.
    """

    def __init__(self, path: str, kind: str, target: str | None = None) -> None:
        self.path, self.kind, self.target = path, kind, target
        where = f" to {target!r}" if target is not None else ""
        super().__init__(errno.ELOOP if target is not None else errno.EINVAL,
                         f"{path} is {kind}{where}, not a regular file; "
                         "the host refused to follow it")


class MissingFile(FileNotFoundError):
    """The entry (or a directory on its path) does not exist inside the root."""


def components(root: str, path: str) -> list[str]:
    """The names leading from ``root`` to ``path`` (absolute under ``root``, or relative)."""
    relative = os.path.relpath(path, root) if os.path.isabs(path) else path
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"{path!r} is not a path inside {root!r}")
    return parts


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), f"of unknown type {stat.S_IFMT(mode):o}")


def _refuse(parent: int, name: str, shown: str, mode: int) -> NotRegularFile:
    target = None
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(name, dir_fd=parent)[:200]
        except OSError:
            target = "?"
    return NotRegularFile(shown, _kind(mode), target)


def _open_directory(parent: int, name: str, shown: str, create: bool) -> int:
    if create:
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
        except FileExistsError:
            pass
    try:
        return os.open(name, _DIRECTORY, dir_fd=parent)
    except FileNotFoundError:
        raise MissingFile(errno.ENOENT, f"{shown} does not exist") from None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise _refuse(parent, name, shown, os.stat(name, dir_fd=parent,
                                                   follow_symlinks=False).st_mode) from None


@contextmanager
def parent_directory(root: str, path: str, create: bool = False) -> Iterator[tuple[int, str]]:
    """``(descriptor of the directory holding path, its last name)``, walked without links.

    With ``create``, missing directories on the way are made.
    """
    parts = components(root, path)
    descriptor = os.open(root, _DIRECTORY)
    try:
        shown = root
        for name in parts[:-1]:
            shown = os.path.join(shown, name)
            inner = _open_directory(descriptor, name, shown, create)
            os.close(descriptor)
            descriptor = inner
        yield descriptor, parts[-1]
    finally:
        os.close(descriptor)


def _open_regular_at(parent: int, name: str, shown: str) -> BinaryIO:
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except FileNotFoundError:
        raise MissingFile(errno.ENOENT, f"{shown} does not exist") from None
    if not stat.S_ISREG(mode):  # refused before it is opened: no device is ever opened
        raise _refuse(parent, name, shown, mode)
    try:
        descriptor = os.open(name, _READ, dir_fd=parent)
    except FileNotFoundError:
        raise MissingFile(errno.ENOENT, f"{shown} does not exist") from None
    except OSError as exc:  # swapped for a link (ELOOP) or a socket (ENXIO) since the check
        raise NotRegularFile(shown, "not a regular file any more") from exc
    try:
        mode = os.fstat(descriptor).st_mode  # the descriptor decides, not the path
        if not stat.S_ISREG(mode):
            raise NotRegularFile(shown, _kind(mode))
        os.set_blocking(descriptor, True)
        return open(descriptor, "rb", buffering=_BUFFER)
    except BaseException:
        os.close(descriptor)
        raise


def open_regular(root: str, path: str) -> BinaryIO:
    """Open ``path`` inside ``root`` for reading, if it is a regular file reached without links.

    Raises:
        MissingFile: it (or a directory on its way) does not exist.
        NotRegularFile: it, or a directory on its way, is a link, FIFO,
            socket, device or (for the file) directory.
    """
    shown = os.path.join(root, *components(root, path))
    with parent_directory(root, path) as (parent, name):
        return _open_regular_at(parent, name, shown)


def create(root: str, path: str) -> BinaryIO:
    """Create ``path`` inside ``root`` exclusively, its directories as needed; open for writing.

    Raises:
        FileExistsError: something (a file, a link, anything) is already there.
        NotRegularFile: a directory on its way is a link or not a directory.
    """
    with parent_directory(root, path, create=True) as (parent, name):
        descriptor = os.open(name, _CREATE, 0o666, dir_fd=parent)
    return open(descriptor, "wb", buffering=_BUFFER)


def move_in(source: str, root: str, path: str) -> None:
    """Rename the file ``source`` (in a directory only lofn writes) to ``path`` inside ``root``.

    ``rename`` replaces the entry it finds there without following it.
    """
    with parent_directory(root, path, create=True) as (parent, name):
        os.rename(source, name, dst_dir_fd=parent)


def move_out(root: str, path: str, target: str) -> None:
    """Move the regular file ``path`` inside ``root`` to ``target``, outside the container's reach.

    The entry is renamed first and checked where the container cannot
    change it any more; anything but a regular file is removed and refused.
    Across filesystems the file is copied from a checked descriptor.
    """
    shown = os.path.join(root, *components(root, path))
    with parent_directory(root, path) as (parent, name):
        try:
            os.rename(name, target, src_dir_fd=parent)
        except FileNotFoundError:
            raise MissingFile(errno.ENOENT, f"{shown} does not exist") from None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with _open_regular_at(parent, name, shown) as source, \
                    open(target, "xb", buffering=_BUFFER) as copy:
                shutil.copyfileobj(source, copy, _BUFFER)
            return
    mode = os.stat(target, follow_symlinks=False).st_mode
    if not stat.S_ISREG(mode):
        _remove(target, mode)
        raise NotRegularFile(shown, _kind(mode))


def _remove(path: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        remove_tree(path)
    else:
        os.unlink(path)


def empty(directory: str) -> None:
    """Remove everything inside ``directory`` (one lofn made), following no link."""
    descriptor = os.open(directory, _DIRECTORY)
    try:
        _empty_at(descriptor)
    finally:
        os.close(descriptor)


def remove_tree(directory: str, ignore_errors: bool = False) -> None:
    """Remove ``directory`` (one lofn made) and everything in it, following no link.

    For trees a container wrote; ``shutil.rmtree`` opens a directory it has
    checked by path without ``O_NOFOLLOW`` and recurses once per level.
    A missing ``directory`` is not an error.
    """
    try:
        try:
            descriptor = os.open(directory, _DIRECTORY)
        except FileNotFoundError:
            return
        try:
            _empty_at(descriptor)
        finally:
            os.close(descriptor)
        os.rmdir(directory)
    except OSError:
        if not ignore_errors:
            raise


def _listing(descriptor: int) -> list[str]:
    """Unlink every entry of the directory but its subdirectories; return their names."""
    directories = []
    with os.scandir(descriptor) as listing:
        entries = list(listing)
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                directories.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=descriptor)
        except FileNotFoundError:  # removed meanwhile (by the container's own process)
            pass
    return directories


def _empty_at(top: int) -> None:
    """Remove everything below the directory ``top``, depth first, without recursion.

    Each directory is listed once, so the work is linear in the size of the
    tree and ends even while a process keeps adding entries (the removal of
    a directory that gained some then fails). At most ``_MAX_DEPTH``
    descriptors are open at once: a directory deeper than that is renamed
    into ``top`` first and emptied from there, so no tree is too deep.
    """
    stack = [(top, "", _listing(top))]  # (descriptor, name below, subdirectories left)
    try:
        while stack:
            descriptor, _, pending = stack[-1]
            if not pending:  # empty now: remove it from the directory below it
                _, name, _ = stack.pop()
                if stack:
                    os.close(descriptor)
                    try:
                        os.rmdir(name, dir_fd=stack[-1][0])
                    except FileNotFoundError:
                        pass
                continue
            name = pending.pop()
            if len(stack) >= _MAX_DEPTH:
                moved = f".lofn-deep-{os.urandom(8).hex()}"
                os.rename(name, moved, src_dir_fd=descriptor, dst_dir_fd=top)
                stack[0][2].append(moved)
                continue
            try:
                inner = os.open(name, _DIRECTORY, dir_fd=descriptor)
            except FileNotFoundError:
                continue
            try:
                stack.append((inner, name, _listing(inner)))
            except BaseException:
                os.close(inner)
                raise
    finally:
        for descriptor, _, _ in stack[1:]:
            os.close(descriptor)


def regular_files(root: str) -> Iterator[tuple[str, BinaryIO]]:
    """Every file below ``root`` as ``(relative path, open file)``: in each directory its
    files by name, then its subdirectories by name.

    Directories are opened from descriptors with ``O_NOFOLLOW``; a link
    (to a file or a directory) or a special file raises :class:`NotRegularFile`.
    """
    descriptor = os.open(root, _DIRECTORY)
    try:
        yield from _regular_files_at(descriptor, root, "")
    finally:
        os.close(descriptor)


def _regular_files_at(descriptor: int, shown: str,
                      relative: str) -> Iterator[tuple[str, BinaryIO]]:
    if relative.count("/") >= _MAX_NESTING:
        raise NotRegularFile(shown, f"a directory more than {_MAX_NESTING} levels deep")
    with os.scandir(descriptor) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    directories = {entry.name for entry in entries if entry.is_dir(follow_symlinks=False)}
    for entry in entries:
        if entry.name not in directories:
            with _open_regular_at(descriptor, entry.name,
                                  os.path.join(shown, entry.name)) as handle:
                yield os.path.join(relative, entry.name), handle
    for name in sorted(directories):
        path = os.path.join(shown, name)
        inner = _open_directory(descriptor, name, path, create=False)
        try:
            yield from _regular_files_at(inner, path, os.path.join(relative, name))
        finally:
            os.close(inner)
