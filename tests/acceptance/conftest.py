"""Acceptance fixtures: the aligner image, simulated reads, and the genomics example's modules.

The image ``lofn/aligner:bookworm`` is built by ``example/advanced/build_image.sh``
(debootstrap, so root and a Debian mirror) when it is missing. Locally a test
that cannot have it is skipped; with ``CI=true`` it fails. The tests use the
session's local Spark context on ``local[2]`` (``sc``, from tests/conftest.py)
and the integration tier's per-test check that no lofn container or temp entry
is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT, require
from tests.integration.conftest import clean_after_each_test  # noqa: F401

EXAMPLE = ROOT / "example" / "advanced"
ALIGNER = "lofn/aligner:bookworm"
# small enough for a fast test, large enough for 8 partitions of real work
GENOME_SIZE = 200_000
PAIRS = 4_000


@pytest.fixture(scope="session")
def genomics():
    """The example's modules ``align`` and ``prepare`` (executors import ``align`` by name)."""
    sys.path.insert(0, str(EXAMPLE))
    import align
    import prepare

    return align, prepare


@pytest.fixture(scope="session")
def aligner_image(docker_client) -> str:
    """``lofn/aligner:bookworm``, built with build_image.sh if missing."""
    import docker

    try:
        docker_client.images.get(ALIGNER)
        return ALIGNER
    except docker.errors.ImageNotFound:
        pass
    if os.getuid() != 0:
        require("root", f"{ALIGNER} is missing and debootstrap needs root to build it")
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        require("debootstrap", "install Debian's debootstrap (scripts/dev.sh setup does)")
    result = subprocess.run(["bash", str(EXAMPLE / "build_image.sh")], capture_output=True,
                            text=True, timeout=900, env={**os.environ, "TMPDIR": "/tmp"})
    if result.returncode != 0:
        require(ALIGNER, f"build_image.sh exited {result.returncode}:\n{result.stderr[-3000:]}")
    sys.stderr.write(result.stderr)
    docker_client.images.get(ALIGNER)
    return ALIGNER


@pytest.fixture(scope="session")
def genomics_data(genomics, aligner_image, session_tmp):
    """Simulated reads and an indexed reference: ``{'dir', 'reads_1', 'reads_2', 'ref'}``."""
    _, prepare = genomics
    directory = tempfile.mkdtemp(prefix="genomics-data-", dir=session_tmp)
    try:
        prepare.prepare(directory, genome_size=GENOME_SIZE, pairs=PAIRS, image=aligner_image)
        yield {"dir": directory, "reads_1": os.path.join(directory, "reads_1.fq"),
               "reads_2": os.path.join(directory, "reads_2.fq"),
               "ref": os.path.join(directory, "ref")}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def workdir(session_tmp):
    directory = tempfile.mkdtemp(prefix="genomics-out-", dir=session_tmp)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
