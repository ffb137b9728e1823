"""HDFS support against a real namenode, through WebHDFS: address resolution, the per-host
volume cache, binary outputs, and an unreachable namenode."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from pyspark import SparkConf

from lofn import hdfs_handler
from lofn.api import DockerPipe
from lofn.errors import HdfsUnavailable, InvalidArgument
from tests.conftest import lofn_temp_entries
from tests.hostile import refused

pytestmark = pytest.mark.cluster


@pytest.fixture
def hdfs_env(hadoop, monkeypatch):
    monkeypatch.setenv("HADOOP_CONF_DIR", hadoop.conf_dir)
    return hadoop


def yarn_conf() -> SparkConf:
    return SparkConf(loadDefaults=False).setMaster("yarn")


def test_address_comes_from_hadoop_conf_dir(hdfs_env):
    config = hdfs_handler.resolve()
    assert config.url == hdfs_env.webhdfs_url
    assert "HADOOP_CONF_DIR" in config.source
    assert config.client().status("/")["type"] == "DIRECTORY"


def test_explicit_url_and_spark_conf_take_precedence(hdfs_env):
    assert hdfs_handler.resolve("http://explicit:1").url == "http://explicit:1"
    conf = yarn_conf().set("spark.hadoop.dfs.namenode.http-address", "fromspark:2")
    assert hdfs_handler.resolve(None, conf).url == "http://fromspark:2"


def _get(args):
    config, root, path = args
    return hdfs_handler.VolumeCache(config, root).get(path)


def test_volume_is_downloaded_once_per_host_and_refreshed_when_changed(hdfs_env, tmp_path):
    client = hdfs_env.client()
    files = {"/cache-test/ref/genome.fa": b">chr1\nACGT\n",
             "/cache-test/ref/idx/x.idx": b"\0" * 1000}
    for path, data in files.items():
        client.write(path, data, overwrite=True)
    config = hdfs_handler.resolve()
    root = str(tmp_path / "cache")
    # 12 tasks on 4 processes at once, as tasks on one executor host would
    with ProcessPoolExecutor(4) as pool:
        paths = set(pool.map(_get, [(config, root, "/cache-test/ref")] * 12))
    assert len(paths) == 1
    local = paths.pop()
    assert Path(local, "genome.fa").read_bytes() == files["/cache-test/ref/genome.fa"]
    assert Path(local, "idx", "x.idx").read_bytes() == b"\0" * 1000
    assert {path: hdfs_env.webhdfs_opens(path) for path in files} == {path: 1 for path in files}

    client.write("/cache-test/ref/genome.fa", b">chr1\nTTTT\n", overwrite=True)
    refreshed = _get((config, root, "/cache-test/ref"))
    assert refreshed != local
    assert Path(refreshed, "genome.fa").read_bytes() == b">chr1\nTTTT\n"
    assert hdfs_env.webhdfs_opens("/cache-test/ref/genome.fa") == 2
    assert _get((config, root, "/cache-test/ref")) == refreshed
    assert hdfs_env.webhdfs_opens("/cache-test/ref/genome.fa") == 2
    assert os.path.isdir(local), "an entry a running container may still use is kept"


def test_a_killed_download_is_never_trusted(hdfs_env, tmp_path):
    hdfs_env.client().write("/cache-test/single.txt", b"whole\n", overwrite=True)
    config = hdfs_handler.resolve()
    cache = hdfs_handler.VolumeCache(config, str(tmp_path))
    key_dir = cache.get("/cache-test/single.txt")
    key = os.path.basename(os.path.dirname(key_dir)).split("-")[0]
    # what a download killed half-way leaves: a staging directory with a partial file
    shutil.rmtree(os.path.dirname(key_dir))
    partial = tmp_path / f".tmp-{key}-killed" / "data"
    partial.mkdir(parents=True)
    (partial / "single.txt").write_bytes(b"who")
    again = cache.get("/cache-test/single.txt")
    assert Path(again, "single.txt").read_bytes() == b"whole\n"
    assert not (tmp_path / f".tmp-{key}-killed").exists()


def test_file_and_directory_volumes_and_private_rw_copies(hdfs_env, tmp_path):
    client = hdfs_env.client()
    client.write("/vol-test/dir/a.txt", b"a\n", overwrite=True)
    client.write("/vol-test/file.txt", b"f\n", overwrite=True)
    parent = str(tmp_path / "parent")
    os.mkdir(parent)
    volumes = {"/vol-test/dir": {"bind": "/dir", "mode": "rw"},
               "/vol-test/file.txt": {"bind": "/f"}}
    with hdfs_handler.setup_user_volumes_from_hdfs(volumes, temporary_directory_parent=parent,
                                                   cache_dir=str(tmp_path / "cache")) as local:
        by_bind = {binding["bind"]: (path, binding["mode"]) for path, binding in local.items()}
        assert os.listdir(by_bind["/f"][0]) == ["file.txt"] and by_bind["/f"][1] == "ro"
        rw_path, mode = by_bind["/dir"]
        assert mode == "rw" and rw_path.startswith(parent)
        with open(os.path.join(rw_path, "a.txt"), "a") as handle:
            handle.write("changed\n")
    assert os.listdir(parent) == []  # the private copy is gone
    cached = hdfs_handler.VolumeCache(hdfs_handler.resolve(), str(tmp_path / "cache")).get(
        "/vol-test/dir")
    assert Path(cached, "a.txt").read_text() == "a\n"  # the shared copy is untouched


def test_retried_binary_upload_keeps_one_file(hdfs_env, tmp_path):
    config = hdfs_handler.resolve()
    directory = hdfs_handler.binary_output_directory("/bin-test", config, app="retry")
    for attempt in (b"first", b"second"):
        origin = tempfile.mkdtemp(dir=tmp_path)
        with open(os.path.join(origin, "output.bin"), "wb") as handle:
            handle.write(attempt)
        hdfs_handler.put_binary(origin, directory, os.path.join(origin, "output.bin"),
                                name="part-00003.bin", config=config)
        assert not os.path.exists(origin)
    client = hdfs_env.client()
    assert client.list(directory) == ["part-00003.bin"]
    hdfs_handler.remove_directory(directory, config)
    assert client.status(directory, strict=False) is None


def test_missing_volume_fails_on_the_driver(hdfs_env):
    with pytest.raises(InvalidArgument, match="'/no/such/ref' does not exist"):
        DockerPipe(yarn_conf(), volumes={"/no/such/ref": {"bind": "/ref"}})


@pytest.fixture
def silent_server():
    """A local server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_unreachable_namenode_is_a_clear_error_within_the_timeout(silent_server):
    before = lofn_temp_entries()
    with pytest.raises(HdfsUnavailable) as info:
        DockerPipe(yarn_conf(), hdfs_url=silent_server, hdfs_timeout=1,
                   volumes={"/ref": {"bind": "/ref"}})
    # the server accepted and stayed silent: only the read timeout can have ended the call
    assert "timed out" in str(info.value)
    assert silent_server in str(info.value) and "hdfs_url" in str(info.value)
    assert isinstance(info.value, OSError)
    with pytest.raises(HdfsUnavailable):
        hdfs_handler.binary_output_directory(None, hdfs_handler.resolve(silent_server, timeout=1))
    assert lofn_temp_entries() == before


def test_no_address_anywhere_needs_an_hdfs_url(monkeypatch, tmp_path):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.setenv("HDFSCLI_CONFIG", str(tmp_path / "none.cfg"))
    with pytest.raises(InvalidArgument, match="needs an HDFS URL"):
        DockerPipe(yarn_conf(), volumes={"/ref": {"bind": "/ref"}})


def test_result_cache_on_hdfs_stores_no_host_file(hdfs_env, sc, busybox, host):
    """A hostile image's linked output is refused and nothing of it reaches the HDFS cache."""
    cache = f"/hostile-cache-{host.name}"
    try:
        pipe = DockerPipe(SparkConf(), result_cache=f"hdfs://{cache}")
        rdd = sc.parallelize(["a", "b"], 2)
        command = host.plant("absolute link")
        failures = [refused(lambda: pipe.map(rdd, busybox, command).collect()) for _ in "12"]
        host.assert_untouched(*map(str, failures))
        client = hdfs_env.client()
        stored = [f"{top}/{name}" for top, _, files in client.walk(cache) for name in files] \
            if client.status(cache, strict=False) else []
        assert stored == [], f"entries stored on HDFS for refused outputs: {stored}"
    finally:
        hdfs_env.client().delete(cache, recursive=True)
