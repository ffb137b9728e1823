"""Interact with HDFS, through WebHDFS (the ``hdfs`` package, HdfsCLI).

On YARN, lofn reads user volumes from HDFS and writes ``map_binary``
outputs to HDFS. No ``hadoop`` command is needed: every call is a WebHDFS
request with connect and read timeouts.

The namenode's WebHDFS address comes from, in this order: the ``hdfs_url``
keyword of :class:`~lofn.api.DockerPipe` (a URL, or an alias of the HdfsCLI
configuration file); the Spark configuration
(``spark.hadoop.dfs.namenode.http-address``, else the host of
``spark.hadoop.fs.defaultFS``); ``hdfs-site.xml``/``core-site.xml`` in
``HADOOP_CONF_DIR`` (high-availability name services included); the default
alias of the HdfsCLI configuration (``~/.hdfscli.cfg`` or ``HDFSCLI_CONFIG``).
The HDFS user is the driver's user unless given.

Read-only volumes are cached once per executor host: see :class:`VolumeCache`.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

from lofn import _safefs
from lofn.errors import HdfsFailure, HdfsUnavailable, InvalidArgument

__all__ = ["HdfsConfig", "resolve", "setup_user_volumes_from_hdfs", "VolumeCache",
           "binary_output_directory", "remove_directory", "put_binary"]

logger = logging.getLogger(__name__)

#: (connect, read) timeouts in seconds for every WebHDFS request.
DEFAULT_TIMEOUT = (10.0, 300.0)
DEFAULT_HTTP_PORT = 9870


@dataclass(frozen=True)
class HdfsConfig:
    """How to build an HdfsCLI client; made on the driver, pickled to executors.

    Args:
        options: HdfsCLI client options (``url``, ``user``, ``timeout``, ...).
        class_name: HdfsCLI client class, ``InsecureClient`` unless an alias
            says otherwise (e.g. ``KerberosClient``).
        source: where the address came from, for error messages.
    """

    options: dict = field(default_factory=dict)
    class_name: str = "InsecureClient"
    source: str | None = ""

    @property
    def url(self) -> str:
        return self.options["url"]

    def client(self):
        """Return an HdfsCLI client (one per process and configuration)."""
        key = (os.getpid(), self.class_name, json.dumps(self.options, sort_keys=True))
        client = _clients.get(key)
        if client is None:
            from hdfs import Client
            if self.class_name == "KerberosClient":
                import hdfs.ext.kerberos  # noqa: F401 - registers it; needs requests-kerberos
            client = _clients[key] = Client.from_options(dict(self.options), self.class_name)
        return client

    def call(self, what: str, method: str, *args, **kwargs):
        """Call ``client.method(*args, **kwargs)``, turning failures into lofn errors."""
        import requests
        from hdfs.util import HdfsError

        try:
            return getattr(self.client(), method)(*args, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise HdfsUnavailable(
                f"cannot reach WebHDFS at {self.url} (from {self.source or 'configuration'}, "
                f"user {self.options.get('user')!r}) to {what}: {exc}; check that the namenode "
                "is up and that hdfs_url or dfs.namenode.http-address names its HTTP port") \
                from exc
        except HdfsError as exc:
            raise HdfsFailure(f"HDFS refused to {what} (WebHDFS {self.url}): {exc}") from exc


_clients: dict = {}


def _timeout(timeout) -> tuple[float, float]:
    """(connect, read) from seconds, a pair, or HdfsCLI's ``"10"``/``"10,300"`` strings."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, str):
        timeout = tuple(float(part) for part in timeout.split(","))
    if isinstance(timeout, (int, float)):
        timeout = (timeout,)
    connect, read = (timeout[0], timeout[0]) if len(timeout) == 1 else timeout
    return (float(connect), float(read))


def _http_url(address: str, scheme: str = "http") -> str:
    return address if "://" in address else f"{scheme}://{address}"


def _xml_properties(path: str) -> dict[str, str]:
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    properties = {}
    for prop in root.iter("property"):
        name, value = prop.findtext("name"), prop.findtext("value")
        if name and value is not None:
            properties[name.strip()] = value.strip()
    return properties


def _default_fs_host(default_fs: str | None) -> str | None:
    if default_fs and default_fs.startswith("hdfs://"):
        return default_fs[len("hdfs://"):].split("/")[0].split(":")[0] or None
    return None


def _from_hadoop_properties(props: dict[str, str]) -> str | None:
    """WebHDFS URL(s) from Hadoop properties; several joined by ';' for HA.

    ``dfs.http.policy=HTTPS_ONLY`` selects the ``https-address`` keys.
    """
    https = props.get("dfs.http.policy", "HTTP_ONLY").upper() == "HTTPS_ONLY"
    scheme, kind = ("https", "https-address") if https else ("http", "http-address")
    fs_host = _default_fs_host(props.get("fs.defaultFS"))
    services = [s.strip() for s in props.get("dfs.nameservices", "").split(",") if s.strip()]
    if services and fs_host in services:
        service = fs_host
        namenodes = [n.strip() for n in props.get(f"dfs.ha.namenodes.{service}", "").split(",")
                     if n.strip()]
        urls = [_http_url(props[f"dfs.namenode.{kind}.{service}.{n}"], scheme)
                for n in namenodes if f"dfs.namenode.{kind}.{service}.{n}" in props]
        return ";".join(urls) or None  # a name service is no host name
    address = props.get(f"dfs.namenode.{kind}")
    if address:
        host, _, port = address.rpartition(":")
        if host in ("0.0.0.0", "") and fs_host:
            host = fs_host
        return _http_url(f"{host}:{port}", scheme)
    if fs_host and not https:
        return f"http://{fs_host}:{DEFAULT_HTTP_PORT}"
    return None


def _hdfscli_alias(alias: str | None) -> tuple[dict, str, str] | None:
    """(options, class name, source) of an HdfsCLI alias, or ``None``."""
    from hdfs.config import Config

    config = Config()
    if alias is None:
        if not config.has_option(config.global_section, "default.alias"):
            return None
        alias = config.get(config.global_section, "default.alias")
    for suffix in (".alias", "_alias"):
        section = f"{alias}{suffix}"
        if config.has_section(section):
            options = dict(config.items(section))
            if "timeout" in options:
                options["timeout"] = _timeout(options["timeout"])
            return options, options.pop("client", "InsecureClient"), \
                f"HdfsCLI alias {alias!r} in {config.path}"
    raise InvalidArgument(f"hdfs_url {alias!r} is neither a URL nor an alias in {config.path}")


def _hadoop_properties(spark_conf) -> Iterator[tuple[dict[str, str], str]]:
    """Hadoop properties that may name the namenode, in the order lofn looks, and their source."""
    if spark_conf is not None:
        yield ({key[len("spark.hadoop."):]: value for key, value in spark_conf.getAll()
                if key.startswith("spark.hadoop.")}, "the Spark configuration (spark.hadoop.*)")
    conf_dir = os.environ.get("HADOOP_CONF_DIR")
    if conf_dir:
        yield ({**_xml_properties(os.path.join(conf_dir, "core-site.xml")),
                **_xml_properties(os.path.join(conf_dir, "hdfs-site.xml"))},
               f"HADOOP_CONF_DIR={conf_dir}")


def resolve(hdfs_url: str | None = None, spark_conf=None, user: str | None = None,
            timeout=None) -> HdfsConfig:
    """Find the namenode's WebHDFS address and build the client configuration.

    Args:
        hdfs_url: ``http(s)://namenode:port`` (``;``-separated for HA), or an
            HdfsCLI alias. Takes precedence over everything else.
        spark_conf: a ``SparkConf`` to read ``spark.hadoop.*`` from.
        user: HDFS user; defaults to the user running this (the driver).
        timeout: seconds, or a ``(connect, read)`` pair, for each request.

    Raises:
        InvalidArgument: no address can be found anywhere.
    """
    options: dict = {}
    class_name, source = "InsecureClient", None
    if hdfs_url and "://" in hdfs_url:
        options, source = {"url": hdfs_url}, "hdfs_url"
    elif hdfs_url:
        options, class_name, source = _hdfscli_alias(hdfs_url) or (options, class_name, source)
    if not options.get("url"):
        for props, where in _hadoop_properties(spark_conf):
            found = _from_hadoop_properties(props)
            if found:
                options, source = {**options, "url": found}, where
                break
        else:
            options, class_name, source = _hdfscli_alias(None) or (options, class_name, source)
    url = options.get("url")
    if not url:
        raise InvalidArgument(
            "HDFS support needs an HDFS URL: pass hdfs_url='http://NAMENODE:9870' to "
            "DockerPipe, set spark.hadoop.dfs.namenode.http-address, point HADOOP_CONF_DIR "
            "at a directory with hdfs-site.xml, or configure an HdfsCLI default alias")
    if timeout is not None or "timeout" not in options:  # an explicit timeout wins
        options["timeout"] = _timeout(timeout)
    if class_name == "InsecureClient" and (user or "user" not in options):
        options["user"] = user or getpass.getuser()
    return HdfsConfig(options, class_name, source)


@dataclass(frozen=True)
class Place:
    """A directory lofn keeps whole files in: local, or on HDFS (``hdfs:///path``).

    ``option`` names the keyword it came from, for errors.
    """

    location: str
    hdfs: HdfsConfig | None = None
    option: ClassVar[str] = "location"

    @property
    def on_hdfs(self) -> bool:
        return self.location.startswith("hdfs://")

    @property
    def root(self) -> str:
        """The directory's path (on HDFS without the scheme), no trailing slash."""
        return (self.location[len("hdfs://"):] if self.on_hdfs else self.location).rstrip("/")

    @property
    def client(self) -> HdfsConfig:
        if self.hdfs is None:
            raise InvalidArgument(f"{self.option} {self.location!r} is on HDFS, which this "
                                  "pipe cannot reach (no HDFS configuration)")
        return self.hdfs

    def put(self, path: str, source: BinaryIO) -> None:
        """Keep what ``source`` holds as the file ``path``, whole or not at all.

        It is written under a hidden temporary name in the same directory
        and renamed into place; if another writer put ``path`` first, theirs
        stays.
        """
        parent = os.path.dirname(path)
        if self.on_hdfs:
            temporary = f"{parent}/.{uuid.uuid4().hex}.tmp"
            self.client.call(f"write {path!r}", "write", temporary, data=source)
            try:
                self.client.call(f"write {path!r}", "rename", temporary, path)
            except HdfsFailure:  # another writer was first
                self.client.call(f"remove {temporary!r}", "delete", temporary)
                if self.client.call(f"look up {path!r}", "status", path, strict=False) is None:
                    raise
            return
        os.makedirs(parent, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=parent, prefix=".tmp-")
        try:
            with open(handle, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            os.chmod(temporary, 0o644)  # executors may run as other users
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


def _hdfs(config: HdfsConfig | None) -> HdfsConfig:
    """The configuration given, or one resolved from this process's environment."""
    return config if config is not None else resolve()


# ---------------------------------------------------------------------------
# read-only volume cache

def yarn_local_dir() -> str | None:
    """This application's local directory on this host, if running in a YARN container.

    YARN gives every container of an application on a host the same
    ``appcache/<application id>`` directories (``LOCAL_DIRS``) and deletes
    them when the application ends.
    """
    dirs = [d for d in os.environ.get("LOCAL_DIRS", "").split(",") if d]
    return dirs[0] if dirs else None


class VolumeCache:
    """HDFS paths downloaded once per host, revalidated on every use.

    An entry is the directory ``<root>/<key>-<fingerprint>/data``, where the
    fingerprint hashes the length and modification time of every file
    under the HDFS path: a changed file makes a new fingerprint and so a new
    download, while containers still using the old entry keep it. A
    download goes to a unique temp directory and is renamed into place when
    complete, under an exclusive file lock, so concurrent tasks wait instead
    of downloading twice and a killed download is never trusted.

    Args:
        config: how to reach HDFS.
        root: the cache directory on this host.
    """

    def __init__(self, config: HdfsConfig, root: str) -> None:
        self.config = config
        self.root = root

    def fingerprint(self, hdfs_path: str) -> tuple[str, bool]:
        """(fingerprint, is_directory) of ``hdfs_path`` as HDFS has it now."""
        status = self.config.call(f"read the status of {hdfs_path!r}", "status", hdfs_path,
                                  strict=False)
        if status is None:
            raise HdfsFailure(f"HDFS path {hdfs_path!r} does not exist (WebHDFS {self.config.url})")
        if status["type"] == "FILE":
            parts = [("", status["length"], status["modificationTime"])]
        else:
            walk = self.config.call(f"list {hdfs_path!r}", "walk", hdfs_path, status=True)
            parts = []
            for (directory, _), _, files in walk:
                for name, file_status in files:
                    relative = os.path.relpath(f"{directory}/{name}", hdfs_path)
                    parts.append((relative, file_status["length"],
                                  file_status["modificationTime"]))
            parts.sort()
        digest = hashlib.sha256(json.dumps([hdfs_path, parts]).encode()).hexdigest()[:20]
        return digest, status["type"] == "DIRECTORY"

    def get(self, hdfs_path: str) -> str:
        """Return a local directory holding ``hdfs_path`` (its files, or the one file)."""
        os.makedirs(self.root, exist_ok=True)
        digest, is_directory = self.fingerprint(hdfs_path)
        key = hashlib.sha256(f"{self.config.url}|{hdfs_path}".encode()).hexdigest()[:16]
        entry = os.path.join(self.root, f"{key}-{digest}")
        if os.path.isdir(entry):
            return os.path.join(entry, "data")
        with open(os.path.join(self.root, f"{key}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.isdir(entry):
                return os.path.join(entry, "data")
            for stale in os.listdir(self.root):  # left by a killed download
                if stale.startswith(f".tmp-{key}-"):
                    shutil.rmtree(os.path.join(self.root, stale), ignore_errors=True)
            staging = tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root)
            data = os.path.join(staging, "data")
            try:
                if is_directory:
                    self.config.call(f"download {hdfs_path!r}", "download", hdfs_path, data)
                    os.makedirs(data, exist_ok=True)  # an empty HDFS directory
                else:
                    os.mkdir(data)
                    self.config.call(f"download {hdfs_path!r}", "download", hdfs_path,
                                     os.path.join(data, os.path.basename(hdfs_path)))
                logger.info("downloaded %s to the volume cache %s", hdfs_path, entry)
                os.rename(staging, entry)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return os.path.join(entry, "data")


@contextmanager
def setup_user_volumes_from_hdfs(volumes: dict, *, temporary_directory_parent: str | None = None,
                                 hdfs: HdfsConfig | None = None,
                                 cache_dir: str | None = None) -> Iterator[dict]:
    """GET a local copy of HDFS volumes to mount in Docker.

    Read-only volumes come from the host's :class:`VolumeCache`; a ``rw``
    volume gets a private copy for this task, removed on exit (changes are
    not written back to HDFS).

    Args:
        volumes: ``{hdfs_path: {'bind': container_path, 'mode': 'ro'|'rw'}}``;
            an HDFS path may be a file or a directory.

    Keyword Args:
        temporary_directory_parent: parent of the private copies, and of the
            cache outside YARN.
        hdfs: an :class:`HdfsConfig`; resolved from the environment if absent.
        cache_dir: the cache directory; defaults to this YARN application's
            local directory, else ``<temp parent>/lofn-volume-cache-<uid>``.

    Yields:
        The volumes re-keyed by local directories.
    """
    from lofn._reaper import temp_prefix

    parent = temporary_directory_parent or tempfile.gettempdir()
    config = _hdfs(hdfs)
    local = yarn_local_dir()
    cache_dir = cache_dir or (
        os.path.join(local, "lofn-volume-cache") if local
        else os.path.join(parent, f"lofn-volume-cache-{os.getuid()}"))
    cache = VolumeCache(config, cache_dir)
    private = []
    try:
        mapped = {}
        for hdfs_path, binding in volumes.items():
            cached = cache.get(hdfs_path)
            if binding.get("mode", "ro") == "rw":
                copy = tempfile.mkdtemp(prefix=temp_prefix(), dir=parent)
                private.append(copy)
                cached = shutil.copytree(cached, os.path.join(copy, "data"))
            mapped[cached] = {"bind": binding["bind"], "mode": binding.get("mode", "ro")}
        yield mapped
    finally:
        for copy in private:  # containers wrote in these
            _safefs.remove_tree(copy, ignore_errors=True)


# ---------------------------------------------------------------------------
# binary outputs

def binary_output_directory(hdfs_tempdir: str | None, config: HdfsConfig | None = None,
                            app: str = "lofn") -> str:
    """Create a new, unique HDFS directory for one ``map_binary`` call and return it.

    Args:
        hdfs_tempdir: parent directory on HDFS; ``/user/<user>/lofn_temp`` if ``None``.
    """
    config = _hdfs(config)
    base = hdfs_tempdir or f"/user/{config.options.get('user') or getpass.getuser()}/lofn_temp"
    if not base.startswith("/"):
        raise InvalidArgument(f"hdfs_tempdir must be an absolute HDFS path, got {hdfs_tempdir!r}")
    directory = f"{base.rstrip('/')}/{app}-{uuid.uuid4().hex[:12]}"
    config.call(f"create {directory!r}", "makedirs", directory)
    return directory


def remove_directory(path: str, config: HdfsConfig | None = None) -> None:
    """Remove an HDFS directory and everything in it."""
    _hdfs(config).call(f"remove {path!r}", "delete", path, recursive=True)


def put_binary(origin_directory: str, destination_directory: str, input_path: str,
               name: str | None = None, config: HdfsConfig | None = None) -> str:
    """Upload one binary output to HDFS and remove its local temp directory.

    The file is uploaded under a hidden temp name (ignored by
    ``sc.binaryFiles``) and renamed to ``name``; if a retried or speculative
    attempt already stored that name, that file is kept and this attempt's
    copy dropped, so the directory never holds a partition twice. What is
    uploaded is read from a descriptor of ``input_path`` opened inside
    ``origin_directory`` without following links, and only if it is a
    regular file (else :class:`~lofn._safefs.NotRegularFile`).

    Returns:
        The HDFS path of the stored file.
    """
    config = _hdfs(config)
    name = name or f"part-{uuid.uuid4().hex}"
    final = f"{destination_directory.rstrip('/')}/{name}"
    temporary = f"{destination_directory.rstrip('/')}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with _safefs.open_regular(origin_directory, input_path) as source:
            config.call(f"upload {input_path!r}", "write", temporary, data=source)
        try:
            config.call(f"rename {temporary!r}", "rename", temporary, final)
        except HdfsFailure:
            if config.call(f"check {final!r}", "status", final, strict=False) is None:
                raise
            config.call(f"remove {temporary!r}", "delete", temporary)
    finally:
        _safefs.remove_tree(origin_directory, ignore_errors=True)
    return final
