"""A host file that containers cannot see, for the hostile-image tests (tests/faults,
tests/cluster): the command that plants a link or special file in /shared, and the checks
that the file's content reached nothing and the file did not change."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from lofn.errors import UnsafeOutputError, from_spark_error


class Host:
    """A host file the containers cannot see, next to the task directories."""

    def __init__(self, parent: str) -> None:
        self.name = f"hostile-secret-{uuid.uuid4().hex[:8]}"
        self.directory = Path(parent) / self.name
        self.directory.mkdir()
        self.secret = self.directory / "secret.txt"
        self.content = f"host secret {uuid.uuid4().hex}"
        self.secret.write_text(self.content + "\n")
        self.stat = self.secret.stat()

    def plant(self, kind: str, name: str = "output.txt") -> str:
        """The command that leaves ``kind`` at ``/shared/<name>``."""
        target = f"/shared/{name}"
        return {
            "absolute link": f"ln -s {self.secret} {target}",
            # the task directory is <parent>/lofn-<pid>-<random>/shared
            "relative link": f"ln -s ../../{self.name}/secret.txt {target}",
            "link on the way": f"ln -s {self.directory} /shared/{name.split('/')[0]}",
            "fifo": f"mkfifo {target}",
            "directory": f"mkdir {target}",
        }[kind]

    def assert_untouched(self, *texts: str, paths: tuple = ()) -> None:
        """The secret changed nowhere and shows in none of ``texts`` or files under ``paths``."""
        assert self.secret.read_text() == self.content + "\n"
        assert self.secret.stat().st_mtime_ns == self.stat.st_mtime_ns
        for text in texts:
            assert self.content not in text
        for path in paths:
            for directory, _, files in os.walk(path):
                for name in files:
                    file = os.path.join(directory, name)
                    try:  # a task still ending may remove its directory meanwhile
                        if stat.S_ISREG(os.lstat(file).st_mode) and \
                                not os.path.samefile(file, self.secret):
                            assert self.content.encode() not in Path(file).read_bytes(), file
                    except FileNotFoundError:
                        continue

    def remove(self) -> None:
        for file in self.directory.iterdir():
            file.unlink()
        self.directory.rmdir()


def refused(action) -> UnsafeOutputError:
    """The lofn error ``action`` raised (directly, or inside Spark's), as it reaches the driver."""
    with pytest.raises(Exception) as caught:
        action()
    failure = caught.value if isinstance(caught.value, UnsafeOutputError) else \
        from_spark_error(caught.value)
    assert isinstance(failure, UnsafeOutputError), f"{type(caught.value).__name__}: {caught.value}"
    assert "refused" in failure.message and failure.partition is not None
    return failure
