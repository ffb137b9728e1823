"""Acceptance: the distributed alignment holds exactly the alignments of one serial run.

The genomics example (``example/advanced``) pairs simulated reads, aligns
each partition with minimap2 in its own container (``map_binary`` with a
``map_udf``), sorts with samtools in the same container, and merges the BAM
files pairwise with ``samtools merge`` (``reduce_binary``). The serial
baseline runs the same command once over all reads in one container. The two
BAM files must have the same ``@HD`` and ``@SQ`` header lines and the same
``samtools view`` records once sorted by read name; ``@PG`` lines differ (they
hold command lines and random ID suffixes) and are not compared.
"""

from __future__ import annotations

import os

import pytest

from tests.acceptance.conftest import PAIRS

pytestmark = [pytest.mark.acceptance, pytest.mark.integration]


@pytest.fixture(scope="module")
def serial_bam(genomics, genomics_data, aligner_image):
    """The baseline: the pipeline's command once over all reads, in one container, 2 threads."""
    _, prepare = genomics
    path = os.path.join(genomics_data["dir"], "serial.bam")
    prepare.serial_align(genomics_data["dir"], path, threads=2, image=aligner_image)
    return path


@pytest.mark.parametrize(("partitions", "threads"), [(8, 1), (13, 2)])
def test_distributed_alignment_equals_serial(sc, genomics, genomics_data, aligner_image,
                                             serial_bam, workdir, partitions, threads):
    align, prepare = genomics
    merged = align.run_pipeline(sc, genomics_data["reads_1"], genomics_data["reads_2"],
                                genomics_data["ref"], partitions=partitions, threads=threads,
                                image=aligner_image)
    distributed = os.path.join(workdir, "distributed.bam")
    with open(distributed, "wb") as handle:
        handle.write(merged)

    header, _ = prepare.sam_view(distributed, aligner_image)
    aligned_by = [line for line in header if line.startswith("@PG\tID:minimap2")]
    # every partition was aligned in its own container, and all of them were merged
    assert len(aligned_by) == partitions, aligned_by

    result = prepare.compare(serial_bam, distributed, aligner_image)
    assert result["records"] >= 2 * PAIRS  # every read, plus supplementary alignments
    assert result["mapped"] > 0.95 * result["records"]
    assert result["header_equal"], "the @HD and @SQ lines differ"
    assert result["records_equal"], (
        f"{result['differences']} of {result['records']} records differ; first: "
        f"{result['first_differences']}")
    assert align.bam_summary(merged)["records"] == result["records"]
