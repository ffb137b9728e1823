"""Images without a registry: ship the driver's image to the executors through Spark.

With ``DockerPipe(..., ship_image=True)``:

* on the driver, :func:`ship` saves the image from the driver's Docker
  engine (``docker save``) to ``lofn-image-<hex id>.tar`` in a temp
  directory ``lofn-image-*`` (once per image and SparkContext) and hands
  it to Spark with ``sc.addFile``; the directory is removed when the
  SparkContext stops, or at the latest when the interpreter exits;
* each executor gets the file from Spark (``SparkFiles``) before its first
  task, and :meth:`Shipment.ensure`, run before every container, checks
  that the name resolves to the driver's image ID on the executor's
  engine. If not, it takes a host-wide lock (``flock`` on
  ``<temp parent>/.lofn-image-locks/<hex id>.lock``), checks again, loads the
  file (``docker load``), verifies the loaded ID and tags it with the name.
  Tasks of the same host wait on the lock instead of loading twice.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import functools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils import parse_repository_tag

from lofn import _engine
from lofn.errors import ImageUnavailable, InvalidArgument, TemporaryDirectoryError

__all__ = ["Shipment", "ship", "lock_path", "LOCK_DIR"]

logger = logging.getLogger(__name__)

#: Hidden directory, in each executor's temp parent, holding one lock file per image ID.
LOCK_DIR = ".lofn-image-locks"
#: Seconds the engine may take to save or load one image (the usual 60 s is too short).
TRANSFER_TIMEOUT = 3600
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Shipment:
    """The driver's image, as the tasks need it; built on the driver, pickled to tasks.

    Args:
        image: the name the job runs (what ``image_name`` was).
        image_id: the image's ID on the driver (``sha256:...``).
        file_name: the ``SparkFiles`` name of the saved image, or ``None``
            when nothing was shipped (local mode: the driver's engine is
            the executors').
        reference: ``repository:tag`` the executors point at ``image_id``,
            or ``None`` when ``image`` is an image ID.
    """

    image: str
    image_id: str
    file_name: str | None
    reference: str | None

    def ensure(self, client, temporary_directory_parent: str | None = None,
               partition: int | None = None) -> str:
        """Make this host's engine run the driver's image under ``image``.

        Returns:
            ``'present'`` (nothing to do), ``'tagged'`` (the ID was there
            under another name) or ``'loaded'``.

        Raises:
            ImageUnavailable: no saved file to load, the load failed, or it
                gave another image ID than the driver's.
        """
        if self._present(client):
            return "present"
        with _host_lock(lock_path(self.image_id, temporary_directory_parent), self.image):
            if self._present(client):  # another task of this host loaded it meanwhile
                return "present"
            done = "tagged"
            if not _has(client, self.image_id):
                self._load(partition)
                done = "loaded"
            self._tag(client, partition)
        return done

    def _present(self, client) -> bool:
        try:
            return client.images.get(self.image).id == self.image_id
        except ImageNotFound:
            return False

    def _fail(self, message: str, partition: int | None) -> ImageUnavailable:
        return ImageUnavailable(message, image=self.image, partition=partition)

    def _load(self, partition: int | None) -> None:
        host = socket.gethostname()
        if self.file_name is None:
            raise self._fail(f"image {self.image!r} ({self.image_id}) is not on host {host} "
                             "and was not shipped (local mode uses the driver's engine)",
                             partition)
        from pyspark import SparkFiles

        path = SparkFiles.get(self.file_name)
        if not os.path.isfile(path):
            raise self._fail(f"the saved image {self.file_name} did not reach this executor "
                             f"(no {path} on host {host})", partition)
        size = os.path.getsize(path)
        started = time.monotonic()
        transfer = _engine.connect(TRANSFER_TIMEOUT)
        try:
            with open(path, "rb") as data:
                loaded = [str(image.id) for image in transfer.images.load(data)]
        except _engine.LOST:
            raise  # the engine went away: EngineLost, from the caller's in_flight
        except (APIError, DockerException, OSError) as exc:
            raise self._fail(f"could not load {path} ({size / 1e6:.1f} MB) into the Docker "
                             f"engine of host {host}: {exc}", partition) from exc
        finally:
            transfer.close()
        if self.image_id not in loaded:
            raise self._fail(f"{path} loaded as image ID {', '.join(loaded) or 'nothing'} on "
                             f"host {host}, but the driver's {self.image!r} is {self.image_id}",
                             partition)
        logger.info("loaded image %s (%s, %.1f MB) on host %s in %.2f s from %s", self.image,
                    self.image_id, size / 1e6, host, time.monotonic() - started, path)

    def _tag(self, client, partition: int | None) -> None:
        if self.reference is not None and not self._present(client):
            repository, tag = self.reference.rsplit(":", 1)
            try:
                client.api.tag(self.image_id, repository, tag, force=True)
            except APIError as exc:
                raise self._fail(f"could not tag {self.image_id} as {self.reference} on host "
                                 f"{socket.gethostname()}: {exc}", partition) from exc
        if not self._present(client):
            try:
                found = client.images.get(self.image).id
            except ImageNotFound:
                found = "no image"
            raise self._fail(f"{self.image!r} resolves to {found} on host "
                             f"{socket.gethostname()}, not to the driver's {self.image_id}",
                             partition)


def _has(client, image_id: str) -> bool:
    try:
        client.images.get(image_id)
        return True
    except ImageNotFound:
        return False


def lock_path(image_id: str, temporary_directory_parent: str | None = None) -> str:
    """The host-wide lock file guarding the load of ``image_id``."""
    parent = temporary_directory_parent or tempfile.gettempdir()
    return os.path.join(parent, LOCK_DIR, image_id.split(":")[-1] + ".lock")


@contextmanager
def _host_lock(path: str, image: str):
    """Hold an exclusive ``flock`` on ``path``, shared by every process of this host.

    The directory is world-writable (sticky), so executors of other users
    share it; lock files are opened read-only, which ``flock`` allows, and
    are never removed (removing one could let two holders in at once).
    """
    directory = os.path.dirname(path)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            try:
                os.chmod(directory, 0o1777)
            except PermissionError:
                pass
        descriptor = _open_lock(path)
    except OSError as exc:
        raise TemporaryDirectoryError(
            exc.errno, f"cannot create the image lock {path} on host {socket.gethostname()}: "
                       f"{exc.strerror}; set temporary_directory_parent to a writable "
                       "directory") from exc
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another task on %s to load image %s (%s)",
                        socket.gethostname(), image, path)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _open_lock(path: str) -> int:
    while True:
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        try:
            return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # made by another process in between: open it


# ---------------------------------------------------------------------------
# driver side

@dataclass
class _Saved:
    directory: str
    files: dict  # image ID -> SparkFiles name


_saved: dict[str, _Saved] = {}  # application id -> what this driver saved for it
_lock = threading.Lock()


def ship(sc, image: str, temporary_directory_parent: str | None = None,
         save: bool = True) -> Shipment:
    """Save ``image`` from the driver's engine and add it to ``sc``'s files (once per context).

    Args:
        sc: the SparkContext the job runs in.
        image: the image name (``name[:tag]``) or ID, as passed to the method.
        temporary_directory_parent: where the driver's temp directory goes
            (default: the system temp directory).
        save: ``False`` in local mode, where the executors use the driver's
            engine: only the ID is checked and nothing is saved.

    Raises:
        DockerUnavailable: the driver has no Docker engine.
        ImageUnavailable: the driver's engine lacks the image, or could not save it.
        InvalidArgument: ``image`` is a digest reference (``name@sha256:...``),
            which a saved image does not carry.
    """
    if "@" in image:
        raise InvalidArgument(f"ship_image cannot ship the digest reference {image!r}: "
                              "use name:tag or the image ID")
    client = _engine.client()
    try:
        found = client.images.get(image)
    except ImageNotFound as exc:
        raise ImageUnavailable(
            f"image {image!r} is not on the driver's Docker engine ({_engine.address()} on "
            f"{socket.gethostname()}); ship_image=True sends the driver's copy to the "
            "executors, so build, pull or load it on the driver first", image=image) from exc
    repository, tag = parse_repository_tag(image)
    reference: str | None = f"{repository}:{tag or 'latest'}"
    image_id = str(found.id)
    hex_id = image_id.split(":")[-1]
    bare = image.split(":", 1)[1] if image.startswith("sha256:") else image
    if reference not in found.tags and hex_id.startswith(bare.lower()):
        reference = None  # an image ID: nothing to tag on the executors
    if not save:
        return Shipment(image, image_id, None, reference)
    with _lock:
        app = sc.applicationId
        saved = _saved.get(app)
        if saved is None:
            if temporary_directory_parent:
                os.makedirs(temporary_directory_parent, exist_ok=True)
            saved = _saved[app] = _Saved(
                tempfile.mkdtemp(prefix="lofn-image-", dir=temporary_directory_parent), {})
            _remove_when_stopped(sc, app)
        name = saved.files.get(image_id)
        if name is None:
            name = f"lofn-image-{hex_id}.tar"
            path = os.path.join(saved.directory, name)
            _save(found, reference if reference in found.tags else None, path)
            sc.addFile(path)
            saved.files[image_id] = name
    return Shipment(image, image_id, name, reference)


def _save(image, named: str | None, path: str) -> None:
    """``docker save`` ``image`` (under ``named``, if given) into ``path``."""
    started = time.monotonic()
    partial = path + ".partial"
    transfer = _engine.connect(TRANSFER_TIMEOUT)
    try:
        with open(partial, "wb") as target:
            for chunk in transfer.api.get_image(named or image.id, chunk_size=_CHUNK):
                target.write(chunk)
        os.replace(partial, path)
    except (APIError, DockerException) as exc:
        raise ImageUnavailable(f"the driver's Docker engine could not save image "
                               f"{named or image.id}: {exc}", image=named or image.id) from exc
    except OSError as exc:
        hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
        raise TemporaryDirectoryError(
            exc.errno, f"cannot write the saved image {path} on the driver{hint}: "
                       f"{exc.strerror}; set temporary_directory_parent to a directory with "
                       "room for it") from exc
    finally:
        transfer.close()
        if os.path.exists(partial):
            os.remove(partial)
    logger.info("saved image %s (%s, %.1f MB) on the driver in %.2f s to %s",
                named or image.id, image.id, os.path.getsize(path) / 1e6,
                time.monotonic() - started, path)


def _remove_when_stopped(sc, app: str) -> None:
    """Remove ``app``'s saved images when ``sc.stop()`` returns (or at interpreter exit).

    PySpark has no stop hook for Python code, so this wraps the instance's
    ``stop`` (which ``SparkSession.stop`` and ``with SparkContext()`` call).
    """
    stop = sc.stop

    @functools.wraps(stop)
    def stop_and_remove(*args, **kwargs):
        try:
            return stop(*args, **kwargs)
        finally:
            _remove(app)

    sc.stop = stop_and_remove


def _remove(app: str) -> None:
    with _lock:
        saved = _saved.pop(app, None)
    if saved is not None:
        shutil.rmtree(saved.directory, ignore_errors=True)


@atexit.register
def _remove_all() -> None:
    for app in list(_saved):
        _remove(app)
