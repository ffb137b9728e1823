"""Interact with HDFS (through WebHDFS).

HDFS support (volumes staged from HDFS, binary outputs on HDFS) needs the
namenode's WebHDFS URL; until one is configured these functions raise
:class:`~lofn.errors.InvalidArgument` saying so.
"""

from __future__ import annotations

from contextlib import contextmanager

from lofn.errors import InvalidArgument

__all__ = ["setup_user_volumes_from_hdfs"]

_NEEDS_URL = ("HDFS support needs an HDFS URL: lofn reaches HDFS through WebHDFS, "
              "and no namenode address is configured for {what}")


def _needs_url(what: str):
    raise InvalidArgument(_NEEDS_URL.format(what=what))


@contextmanager
def setup_user_volumes_from_hdfs(volumes, **kwargs):
    """GET a local copy of HDFS volumes to mount in Docker.

    Args:
        volumes: ``{hdfs_path: {'bind': container_path, 'mode': 'ro'|'rw'}}``.

    Keyword Args:
        temporary_directory_parent: parent of the local copies.

    Yields:
        The volumes dict re-keyed by the local copies' paths.
    """
    _needs_url("the volumes " + ", ".join(map(repr, volumes)))
    yield {}


def binary_output_directory(hdfs_tempdir):
    """Create and return the HDFS directory for ``map_binary`` outputs."""
    _needs_url("map_binary outputs on YARN")


def remove_directory(path):
    """Remove an HDFS directory and everything in it."""
    _needs_url(f"removing {path!r}")


def put_binary(origin_directory, destination_directory, input_path, name=None):
    """Upload one binary output to HDFS and remove its local temp directory."""
    _needs_url(f"uploading {input_path!r}")
