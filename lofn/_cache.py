"""The result cache: skip a container whose exact inputs ran before.

The key of a container run hashes everything that decides its output: the
image ID (not its name, so a rebuilt image misses), the command, the docker
options, the mounts, the output file's name, and the name and bytes of
every file written into the shared directory (the partition, or a merge's
blocks, or what a UDF wrote). Contents of user volumes are not hashed: after
changing a reference, use a new cache location.

Entries are files named by their key, in a local directory (which must be
shared by the executors of a multi-host cluster) or on HDFS
(``hdfs:///path``); each is written under a temporary name and renamed
into place, so a killed task never leaves a half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass

from lofn.errors import HdfsFailure
from lofn.hdfs_handler import HdfsConfig


@dataclass(frozen=True)
class ResultCache:
    """Where results are kept: a local directory, or an HDFS one (``hdfs:///...``)."""

    location: str
    hdfs: HdfsConfig | None = None

    @property
    def on_hdfs(self) -> bool:
        return self.location.startswith("hdfs://")

    def _path(self, key: str) -> str:
        root = self.location[len("hdfs://"):] if self.on_hdfs else self.location
        return f"{root.rstrip('/')}/{key[:2]}/{key}"

    def restore(self, key: str, target: str) -> bool:
        """Copy the entry for ``key`` to ``target``; ``False`` if there is none."""
        path = self._path(key)
        if self.on_hdfs:
            if self.hdfs.call(f"look up {path!r}", "status", path, strict=False) is None:
                return False
            self.hdfs.call(f"download {path!r}", "download", path, target, overwrite=True)
            return True
        try:
            shutil.copyfile(path, target)
        except FileNotFoundError:
            return False
        return True

    def store(self, key: str, source: str) -> None:
        """Keep ``source`` as the entry for ``key``."""
        path = self._path(key)
        if self.on_hdfs:
            temporary = f"{os.path.dirname(path)}/.{uuid.uuid4().hex}.tmp"
            self.hdfs.call(f"store {path!r}", "upload", temporary, source)
            try:
                self.hdfs.call(f"store {path!r}", "rename", temporary, path)
            except HdfsFailure:  # another attempt stored the same result first
                self.hdfs.call(f"remove {temporary!r}", "delete", temporary)
                if self.hdfs.call(f"look up {path!r}", "status", path, strict=False) is None:
                    raise
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.chmod(temporary, 0o644)  # executors may run as other users
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


def run_key(image_id: str, command: str, options: dict, volumes: dict, output_name: str,
            shared: str) -> str:
    """The cache key of one container run over the files now in ``shared``."""
    digest = hashlib.sha256(json.dumps(
        [image_id, command, options, volumes, output_name], sort_keys=True,
        default=repr).encode())
    for directory, subdirectories, files in sorted(os.walk(shared)):
        subdirectories.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, shared)
            digest.update(f"{len(relative)}:{relative}:{os.path.getsize(path)}:".encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
