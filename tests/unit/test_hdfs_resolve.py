"""Where the WebHDFS address comes from: explicit, Spark conf, HADOOP_CONF_DIR, HdfsCLI alias."""

import getpass

import pytest
from pyspark import SparkConf

from lofn.errors import InvalidArgument
from lofn.hdfs_handler import DEFAULT_TIMEOUT, resolve


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch, tmp_path):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.setenv("HDFSCLI_CONFIG", str(tmp_path / "absent.cfg"))


def site(path, **properties):
    body = "".join(f"<property><name>{k}</name><value>{v}</value></property>"
                   for k, v in properties.items())
    path.write_text(f"<?xml version='1.0'?><configuration>{body}</configuration>")


def conf(**properties):
    spark = SparkConf(loadDefaults=False)
    for key, value in properties.items():
        spark.set("spark.hadoop." + key, value)
    return spark


def test_explicit_url_with_defaults():
    config = resolve("http://nn:9870")
    assert config.options == {"url": "http://nn:9870", "timeout": DEFAULT_TIMEOUT,
                              "user": getpass.getuser()}
    assert resolve("http://nn:9870", user="alice", timeout=3).options["timeout"] == (3.0, 3.0)


def test_spark_conf_http_address_and_default_fs():
    assert resolve(None, conf(**{"dfs.namenode.http-address": "nn:50070"})).url == "http://nn:50070"
    assert resolve(None, conf(**{"fs.defaultFS": "hdfs://nn.example:8020"})).url == \
        "http://nn.example:9870"


def test_wildcard_http_address_takes_the_default_fs_host():
    props = {"dfs.namenode.http-address": "0.0.0.0:9870", "fs.defaultFS": "hdfs://real:8020"}
    assert resolve(None, conf(**props)).url == "http://real:9870"


def test_https_only_uses_the_https_address():
    props = {"dfs.http.policy": "HTTPS_ONLY", "dfs.namenode.https-address": "nn:9871",
             "dfs.namenode.http-address": "nn:9870"}
    assert resolve(None, conf(**props)).url == "https://nn:9871"


def test_high_availability_name_service_from_hadoop_conf_dir(tmp_path, monkeypatch):
    site(tmp_path / "core-site.xml", **{"fs.defaultFS": "hdfs://cluster"})
    site(tmp_path / "hdfs-site.xml", **{
        "dfs.nameservices": "cluster", "dfs.ha.namenodes.cluster": "nn1,nn2",
        "dfs.namenode.http-address.cluster.nn1": "a:9870",
        "dfs.namenode.http-address.cluster.nn2": "b:9870"})
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    config = resolve()
    assert config.url == "http://a:9870;http://b:9870"
    assert str(tmp_path) in config.source


def test_a_name_service_is_never_taken_for_a_host(tmp_path):
    props = {"fs.defaultFS": "hdfs://cluster", "dfs.nameservices": "cluster"}
    with pytest.raises(InvalidArgument, match="needs an HDFS URL"):
        resolve(None, conf(**props))


def test_hdfscli_alias_by_name_and_as_default(tmp_path, monkeypatch):
    config_file = tmp_path / "hdfscli.cfg"
    config_file.write_text("[global]\ndefault.alias = prod\n\n"
                           "[prod.alias]\nurl = http://prod:9870\nuser = etl\ntimeout = 5,60\n")
    monkeypatch.setenv("HDFSCLI_CONFIG", str(config_file))
    by_name = resolve("prod")
    assert by_name.options == {"url": "http://prod:9870", "user": "etl", "timeout": (5.0, 60.0)}
    assert by_name.class_name == "InsecureClient" and "prod" in by_name.source
    assert resolve().url == "http://prod:9870"  # the default alias, when nothing else is set
    explicit = resolve("prod", user="alice", timeout=2)  # explicit keywords win over the alias
    assert explicit.options["user"] == "alice" and explicit.options["timeout"] == (2.0, 2.0)
    assert explicit.client()._timeout == (2.0, 2.0)


def test_unknown_alias_is_named(tmp_path, monkeypatch):
    with pytest.raises(InvalidArgument, match="'nosuch' is neither a URL nor an alias"):
        resolve("nosuch")


def test_nothing_configured_says_how_to_configure():
    with pytest.raises(InvalidArgument) as info:
        resolve()
    for hint in ("hdfs_url=", "dfs.namenode.http-address", "HADOOP_CONF_DIR", "HdfsCLI"):
        assert hint in str(info.value)
