"""Integration fixtures: a per-test check that nothing is left behind.

`sc` and `pipe` are in tests/conftest.py.
"""

from __future__ import annotations

import pytest

from tests.conftest import lofn_containers, wait_until_clean

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def clean_after_each_test(request, docker_client):
    """Every test must leave no lofn container and no lofn temp entry behind."""
    yield
    containers, left = wait_until_clean(docker_client)
    for container in lofn_containers(docker_client):
        docker_client.api.remove_container(container["Id"], force=True)
    assert not containers, f"{request.node.name} left containers {containers}"
    assert not left, f"{request.node.name} left temp entries {left}"
