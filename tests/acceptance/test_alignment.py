"""Acceptance: the distributed alignment holds exactly the alignments of one serial run.

The genomics example (``example/advanced``) counts simulated reads in one
container, cuts each partition's reads from the mounted FASTQ files and
aligns them with minimap2 in a container (``map_binary``; warm containers
in the script by default, fresh ones here in-process), sorts with samtools
in the same container, and merges all the BAM files with one ``samtools
merge`` in one more container, which mounts their directory (a second
``map_binary``). The serial
baseline runs the same command once over all reads in one container. The two
BAM files must have the same ``@HD`` and ``@SQ`` header lines and the same
``samtools view`` records once sorted by read name; ``@PG`` lines differ (they
hold command lines and random ID suffixes) and are not compared.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.acceptance.conftest import EXAMPLE, PAIRS

pytestmark = [pytest.mark.acceptance, pytest.mark.integration]


@pytest.fixture(scope="module")
def serial_bam(genomics, genomics_data, aligner_image):
    """The baseline: the pipeline's command once over all reads, in one container, 2 threads."""
    _, prepare = genomics
    path = os.path.join(genomics_data["dir"], "serial.bam")
    prepare.serial_align(genomics_data["dir"], path, threads=2, image=aligner_image)
    return path


def _check_equal_to_serial(align, prepare, image, serial_bam, distributed, partitions):
    header, _ = prepare.sam_view(distributed, image)
    aligned_by = [line for line in header if line.startswith("@PG\tID:minimap2")]
    # every partition was aligned by its own minimap2, and all of them were merged
    assert len(aligned_by) == partitions, aligned_by

    result = prepare.compare(serial_bam, distributed, image)
    assert result["records"] >= 2 * PAIRS  # every read, plus supplementary alignments
    assert result["mapped"] > 0.95 * result["records"]
    assert result["header_equal"], "the @HD and @SQ lines differ"
    assert result["records_equal"], (
        f"{result['differences']} of {result['records']} records differ; first: "
        f"{result['first_differences']}")
    with open(distributed, "rb") as handle:
        assert align.bam_summary(handle.read())["records"] == result["records"]
    return result


def test_distributed_alignment_equals_serial(sc, genomics, genomics_data, aligner_image,
                                             serial_bam, workdir):
    """In this session's Spark context, a fresh container for each of 13 partitions."""
    align, prepare = genomics
    merged = align.run_pipeline(sc, genomics_data["reads_1"], genomics_data["reads_2"],
                                genomics_data["ref"], partitions=13, threads=2,
                                image=aligner_image, reuse_containers=False)
    distributed = os.path.join(workdir, "distributed.bam")
    with open(distributed, "wb") as handle:
        handle.write(merged)
    _check_equal_to_serial(align, prepare, aligner_image, serial_bam, distributed, 13)


def test_the_example_script_equals_serial(genomics, genomics_data, aligner_image, serial_bam,
                                          workdir):
    """``spark-submit align.py`` as a user runs it: warm containers (its default), 8 partitions.

    Its own Spark application, so that its warm containers end with it (the
    per-test check then finds none left).
    """
    align, prepare = genomics
    distributed = os.path.join(workdir, "aligned.bam")
    submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    result = subprocess.run(
        [submit, "--master", "local[2]", str(EXAMPLE / "align.py"), genomics_data["reads_1"],
         genomics_data["reads_2"], genomics_data["ref"], "-o", distributed, "-p", "8",
         "-t", "1", "--image", aligner_image],
        capture_output=True, text=True, timeout=600)  # PYSPARK_PYTHON: tests/conftest.py
    assert result.returncode == 0, result.stderr[-3000:]
    compared = _check_equal_to_serial(align, prepare, aligner_image, serial_bam, distributed, 8)
    assert f"{compared['records']} records" in result.stdout, result.stdout


def _fastq(path, names, end="\n"):
    with open(path, "w", encoding="ascii") as handle:
        # quality lines that start with '@' (Phred 31) and '+' (Phred 10)
        handle.write("\n".join(f"@{name}\nACGT\n+\n@+II" for name in names) + end)


def _cut(sc, align, image, reads_1, reads_2, partitions):
    """What each partition's container cuts from both files: [(mate 1 text, mate 2 text)]."""
    from lofn.api import DockerPipe

    volumes, fastq = align.reads_volumes(reads_1, reads_2)
    pipe = DockerPipe(sc.getConf(), volumes=volumes)
    lines = align.count_lines(sc, pipe, image, fastq, [])
    ranges = align.read_ranges(lines, partitions, (reads_1, reads_2))
    command = (f"{align.cut_command(*fastq)} && cat /shared/input_1.fq > /shared/output.bin"
               " && echo === >> /shared/output.bin && cat /shared/input_2.fq >> /shared/output.bin")
    with pipe.map_binary(sc.parallelize(ranges, len(ranges)), image, command) as directory:
        outputs = sorted(sc.binaryFiles(directory).collect())
    return [tuple(data.decode().split("===\n")) for _, data in outputs]


@pytest.mark.parametrize(("names_2", "message"), [
    (["r0/2", "r1/2", "rX/2", "r3/2", "r4/2"],
     r"FASTQ read 2 \(line 9\): mates @r2/1 and @rX/2 differ: the files are not paired"),
    (["r0/2", "r1/2", "r2/2", "r3/2"], "hold the same number of 4-line records"),
])
def test_unpaired_files_are_refused(sc, genomics, aligner_image, workdir, names_2, message):
    align, _ = genomics
    reads_1, reads_2 = (os.path.join(workdir, f"reads_{mate}.fq") for mate in (1, 2))
    _fastq(reads_1, [f"r{i}/1" for i in range(5)])
    _fastq(reads_2, names_2)
    with pytest.raises(Exception, match=message):
        _cut(sc, align, aligner_image, reads_1, reads_2, 2)


def test_a_record_of_other_than_four_lines_is_refused(sc, genomics, aligner_image, workdir):
    align, _ = genomics
    reads_1, reads_2 = (os.path.join(workdir, f"reads_{mate}.fq") for mate in (1, 2))
    _fastq(reads_1, [f"r{i}/1" for i in range(4)])
    with open(reads_2, "w", encoding="ascii") as handle:  # record 1 lost its '+' line
        handle.write("@r0/2\nACGT\n+\nIIII\n@r1/2\nACGT\nIIII\n@r2/2\nACGT\n+\nIIII\nA\n"
                     "@r3/2\nACGT\n+\nIIII\n")
    with pytest.raises(Exception, match=r"FASTQ read 1 \(line 7\): not a FASTQ record"):
        _cut(sc, align, aligner_image, reads_1, reads_2, 1)


def test_partitions_hold_whole_records_of_both_files(sc, genomics, aligner_image, workdir):
    align, _ = genomics
    reads_1, reads_2 = (os.path.join(workdir, f"reads_{mate}.fq") for mate in (1, 2))
    _fastq(reads_1, [f"r{i}/1" for i in range(7)])
    _fastq(reads_2, [f"r{i}/2 length=4" for i in range(7)], end="")  # no last newline
    parts = _cut(sc, align, aligner_image, reads_1, reads_2, 3)
    # reads 0-1, 2-3, 4-6: 7 * 3 // 3 == 7
    assert [text_1.count("\n") for text_1, _ in parts] == [8, 8, 12]
    with open(reads_1, encoding="ascii") as one, open(reads_2, encoding="ascii") as two:
        assert "".join(text_1 for text_1, _ in parts) == one.read()
        assert "".join(text_2 for _, text_2 in parts) == two.read()


def test_read_ranges_leave_no_partition_empty(genomics):
    align, _ = genomics
    names = ("one.fq", "two.fq")
    assert align.read_ranges((8, 8), 5, names) == ["1 4", "5 4"]
    assert align.read_ranges((40, 40), 3, names) == ["1 12", "13 12", "25 16"]
    with pytest.raises(ValueError, match=r"one\.fq has 9 lines and two\.fq 9"):
        align.read_ranges((9, 9), 2, names)
