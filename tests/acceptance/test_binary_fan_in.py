"""Acceptance: ``samtools merge`` of many real BAM files at once equals the pairwise tree.

Coordinate-sorted BAM files are made from simulated SAM records with
``samtools sort``, one per partition, in the aligner image
(``lofn/aligner:bookworm``, see ``tests/acceptance/conftest.py``) with
``map_binary``. They are merged by ``reduce_binary`` twice: pairwise (the
default, ``input_1.bin`` and ``input_2.bin``) and with ``max_fan_in=8``
(``samtools merge -b /shared/inputs.txt``, or a glob of the numbered inputs).
``samtools view`` must show the same records in the same order and the same
header, ``@PG`` lines aside (they hold command lines and random ID suffixes);
the records must be exactly the simulated ones, in coordinate order.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.integration]

CHROMOSOMES = {"chr1": 60_000, "chr2": 40_000}
HEADER = "\\n".join(["@HD\\tVN:1.6\\tSO:unsorted"]
                    + [f"@SQ\\tSN:{name}\\tLN:{length}" for name, length in CHROMOSOMES.items()])
SORT = (f"{{ printf '{HEADER}\\n'; cat /shared/input.txt; }} "
        "| samtools sort --no-PG -O bam -o /shared/output.bin -")
PAIRWISE = "samtools merge -f -O bam /shared/output.bin /shared/input_1.bin /shared/input_2.bin"
LISTED = "samtools merge -f -O bam -b /shared/inputs.txt -o /shared/output.bin"
GLOBBED = "samtools merge -f -O bam -o /shared/output.bin /shared/input_*.bin"


def sam_records(count: int, seed: int = 5) -> list[str]:
    """Simulated single-end SAM records; a few share a position, so ties must keep their order."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        name = rng.choice(list(CHROMOSOMES))
        last = 200 if index % 10 == 0 else CHROMOSOMES[name] - 60  # 1 in 10 near the start
        position = rng.randint(1, last)
        sequence = "".join(rng.choice("ACGT") for _ in range(50))
        quality = "".join(chr(rng.randint(35, 73)) for _ in range(50))
        records.append("\t".join([f"read{index:05d}", str(rng.choice((0, 16))), name,
                                  str(position), "60", "50M", "*", "0", "0", sequence, quality]))
    return records


def samtools_view(client, image: str, data: bytes) -> tuple[list[str], list[str]]:
    """``samtools view -h`` of a BAM file's bytes, in a container: (header, records) in order."""
    directory = tempfile.mkdtemp(prefix="fan-in-view-")
    try:
        with open(os.path.join(directory, "in.bam"), "wb") as handle:
            handle.write(data)
        container = client.containers.create(
            image, ["sh", "-c", "samtools view -h --no-PG -o /work/view.sam /work/in.bam"],
            volumes={directory: {"bind": "/work", "mode": "rw"}},
            user=f"{os.getuid()}:{os.getgid()}", network_disabled=True)
        try:
            container.start()
            status = container.wait()["StatusCode"]
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        assert status == 0, f"samtools view exited {status}: {logs}"
        with open(os.path.join(directory, "view.sam"), encoding="ascii") as handle:
            lines = handle.read().splitlines()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return ([line for line in lines if line.startswith("@")],
            [line for line in lines if not line.startswith("@")])


def without_pg(header: list[str]) -> list[str]:
    return [line for line in header if not line.startswith("@PG")]


def test_samtools_merge_fan_in_equals_the_pairwise_tree(sc, pipe, docker_client, aligner_image):
    records = sam_records(3000)
    rdd = sc.parallelize(records, 13)  # 13 BAM files: round 1 merges 7 and 6, then 2
    with pipe.map_binary(rdd, aligner_image, SORT) as directory:
        assert len(os.listdir(directory)) == 13
        bams = sc.binaryFiles(directory).sortByKey().cache()
        pairwise = pipe.reduce_binary(bams, aligner_image, PAIRWISE)
        listed = pipe.reduce_binary(bams, aligner_image, LISTED, max_fan_in=8)
        globbed = pipe.reduce_binary(bams, aligner_image, GLOBBED, max_fan_in=8)
        bams.unpersist()

    header, expected = samtools_view(docker_client, aligner_image, pairwise)
    assert sorted(expected) == sorted(records)  # every record, as simulated
    order = list(CHROMOSOMES)
    keys = [(order.index(line.split("\t")[2]), int(line.split("\t")[3])) for line in expected]
    assert keys == sorted(keys)  # coordinate-sorted
    assert without_pg(header)[0].startswith("@HD\tVN:1.6\tSO:coordinate")
    for merged in (listed, globbed):
        fan_in_header, fan_in_records = samtools_view(docker_client, aligner_image, merged)
        assert fan_in_records == expected  # the same records, ties in the same order
        assert without_pg(fan_in_header) == without_pg(header)
