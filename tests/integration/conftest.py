"""Integration fixtures: one local Spark context for the session, and a per-test leftover check."""

from __future__ import annotations

import pytest

from tests.conftest import lofn_containers, wait_until_clean

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def sc(docker_client, busybox):
    """A real SparkContext on ``local[2]``."""
    from pyspark import SparkConf, SparkContext

    conf = (SparkConf().setMaster("local[2]").setAppName("lofn-tests")
            .set("spark.ui.enabled", "false").set("spark.log.level", "ERROR"))
    context = SparkContext(conf=conf)
    yield context
    context.stop()


@pytest.fixture
def pipe(sc):
    from pyspark import SparkConf

    from lofn.api import DockerPipe

    return DockerPipe(SparkConf())


@pytest.fixture(autouse=True)
def clean_after_each_test(request, docker_client):
    """Every test must leave no lofn container and no lofn temp entry behind."""
    yield
    containers, left = wait_until_clean(docker_client)
    for container in lofn_containers(docker_client):
        docker_client.api.remove_container(container["Id"], force=True)
    assert not containers, f"{request.node.name} left containers {containers}"
    assert not left, f"{request.node.name} left temp entries {left}"
