"""Acceptance: the distributed alignment holds exactly the alignments of one serial run.

The genomics example (``example/advanced``) pairs simulated reads, aligns
each partition with minimap2 in its own container (``map_binary`` with a
``map_udf``), sorts with samtools in the same container, and merges all the
BAM files with one ``samtools merge`` in one more container, which mounts
their directory (a second ``map_binary``). The serial
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


def _fastq(path, names):
    with open(path, "w", encoding="ascii") as handle:
        for name in names:
            # quality lines that start with '@' (Phred 31) and '+' (Phred 10)
            handle.write(f"@{name}\nACGT\n+\n@+II\n")


@pytest.mark.parametrize(("names_2", "message"), [
    (["r0/2", "r1/2", "rX/2", "r3/2", "r4/2"], "differ: the files are not paired"),
    (["r0/2", "r1/2", "r2/2", "r3/2"], "hold the same number of 4-line records"),
])
def test_unpaired_files_are_refused(sc, genomics, workdir, names_2, message):
    align, _ = genomics
    reads_1, reads_2 = (os.path.join(workdir, f"reads_{mate}.fq") for mate in (1, 2))
    _fastq(reads_1, [f"r{i}/1" for i in range(5)])
    _fastq(reads_2, names_2)
    fastq = [align.read_fastq(sc, path) for path in (reads_1, reads_2)]
    try:
        with pytest.raises(Exception, match=message):
            align.pair_reads(sc, *fastq, 3).collect()
    finally:
        for rdd in fastq:
            rdd.unpersist()


def test_pairs_hold_whole_records_of_both_files(sc, genomics, workdir):
    align, _ = genomics
    reads_1, reads_2 = (os.path.join(workdir, f"reads_{mate}.fq") for mate in (1, 2))
    _fastq(reads_1, [f"r{i}/1" for i in range(7)])
    _fastq(reads_2, [f"r{i}/2" for i in range(7)])
    fastq = [align.read_fastq(sc, path) for path in (reads_1, reads_2)]
    pairs = align.pair_reads(sc, *fastq, 3).glom().collect()
    for rdd in fastq:
        rdd.unpersist()
    # Spark split each file (7 records of 18 bytes) in two, inside record 4
    assert fastq[0].getNumPartitions() == fastq[1].getNumPartitions() == 2
    assert [len(partition) for partition in pairs] == [1, 1, 1]
    texts_1 = "".join(text_1 for [(text_1, _)] in pairs)
    texts_2 = "".join(text_2 for [(_, text_2)] in pairs)
    with open(reads_1, encoding="ascii") as one, open(reads_2, encoding="ascii") as two:
        assert (texts_1, texts_2) == (one.read(), two.read())
