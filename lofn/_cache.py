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
into place, so a killed task never leaves a half entry. What is stored is
read from the descriptor of a checked regular file, and a restored entry is
created exclusively in the shared directory (:mod:`lofn._safefs`): a link
a container planted is never followed, on either side.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO, ClassVar

from lofn import _safefs
from lofn.hdfs_handler import Place


@dataclass(frozen=True)
class ResultCache(Place):
    """Where results are kept: a local directory, or an HDFS one (``hdfs:///...``)."""

    option: ClassVar[str] = "result_cache"

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}"

    def restore(self, key: str, directory: str, name: str) -> bool:
        """Copy the entry for ``key`` to a new file ``name`` in ``directory``; ``False`` if none."""
        path = self._path(key)
        if self.on_hdfs:
            if self.client.call(f"look up {path!r}", "status", path, strict=False) is None:
                return False
            entry = self.client.call(f"read {path!r}", "read", path)
        else:
            try:
                entry = open(path, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                return False
        with entry as source, _safefs.create(directory, name) as target:
            shutil.copyfileobj(source, target, 1 << 20)
        return True

    def store(self, key: str, source: BinaryIO) -> None:
        """Keep what the open file ``source`` holds as the entry for ``key``."""
        self.put(self._path(key), source)


def run_key(image_id: str, command: str, options: dict, volumes: dict, output_name: str,
            shared: str) -> str:
    """The cache key of one container run over the files now in ``shared``."""
    digest = hashlib.sha256(json.dumps(
        [image_id, command, options, volumes, output_name], sort_keys=True,
        default=repr).encode())
    for relative, handle in _safefs.regular_files(shared):
        size = os.fstat(handle.fileno()).st_size
        digest.update(f"{len(relative)}:{relative}:{size}:".encode())
        for block in iter(partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
