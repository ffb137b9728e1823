#!/usr/bin/env python3
"""Prepare the genomics example: simulate the data, then index the reference once.

    python example/advanced/prepare.py DATA_DIR [--genome-size 2000000] [--pairs 100000]

writes ``DATA_DIR/reads_1.fq``, ``DATA_DIR/reads_2.fq`` and the reference
directory ``DATA_DIR/ref/`` (``ref.fa``, its minimap2 index ``ref.mmi`` and
``ref.fa.fai``), which the pipeline mounts read-only at ``/ref`` in every
container. The index is built in the aligner image (``lofn/aligner:bookworm``,
see ``build_image.sh``) through the Docker SDK. A second run with the same
arguments does nothing. The module also runs the serial baseline:
:func:`serial_align` aligns all reads in one container with the same command
as each partition of the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import simulate  # noqa: E402

IMAGE = "lofn/aligner:bookworm"
# -x sr: the preset the pipeline maps with; a prebuilt index keeps its k-mer and window sizes
INDEX_COMMAND = "minimap2 -x sr -d /ref/ref.mmi /ref/ref.fa && samtools faidx /ref/ref.fa"
FILES = ("reads_1.fq", "reads_2.fq", "ref/ref.fa", "ref/ref.fa.fai", "ref/ref.mmi")


def _client():
    import docker

    return docker.from_env(timeout=600)


def run_in_image(command: str, volumes: dict, image: str = IMAGE) -> str:
    """Run ``sh -c command`` in ``image`` as the calling user; return its output, or raise."""
    import docker

    client = _client()
    container = client.containers.create(
        image, ["sh", "-c", command], volumes=volumes, user=f"{os.getuid()}:{os.getgid()}",
        labels={"org.lofn.example": "genomics"}, network_disabled=True)
    try:
        container.start()
        status = container.wait()["StatusCode"]
        logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    if status != 0:
        raise RuntimeError(f"{command!r} in {image} exited {status}:\n{logs[-3000:]}")
    return logs


def prepare(data_dir: str, genome_size: int = 2_000_000, pairs: int = 100_000, seed: int = 1,
            image: str = IMAGE, force: bool = False) -> dict[str, float]:
    """Simulate and index into ``data_dir`` unless done with the same parameters.

    Returns the seconds spent simulating and indexing (0 for a step skipped).
    """
    data_dir = os.path.abspath(data_dir)
    params = {"genome_size": genome_size, "pairs": pairs, "seed": seed}
    stamp = os.path.join(data_dir, "params.json")
    done = (not force and os.path.exists(stamp)
            and all(os.path.exists(os.path.join(data_dir, name)) for name in FILES))
    if done:
        with open(stamp, encoding="utf-8") as handle:
            done = json.load(handle) == params
    if done:
        return {"simulate": 0.0, "index": 0.0}
    if os.path.exists(stamp):
        os.remove(stamp)
    start = time.monotonic()
    simulate.simulate(data_dir, genome_size=genome_size, pairs=pairs, seed=seed)
    simulated = time.monotonic()
    ref_dir = os.path.join(data_dir, "ref")
    for name in ("ref.mmi", "ref.fa.fai"):
        if os.path.exists(os.path.join(ref_dir, name)):
            os.remove(os.path.join(ref_dir, name))
    run_in_image(INDEX_COMMAND, {ref_dir: {"bind": "/ref", "mode": "rw"}}, image)
    indexed = time.monotonic()
    with open(stamp, "w", encoding="utf-8") as handle:
        json.dump(params, handle)
    return {"simulate": simulated - start, "index": indexed - simulated}


def serial_align(data_dir: str, output: str, threads: int, ref_dir: str | None = None,
                 image: str = IMAGE) -> float:
    """Align all reads of ``data_dir`` in one container; write the sorted BAM to ``output``.

    The command is the pipeline's (:func:`align.align_command`), run on the
    whole FASTQ files instead of one partition's. Returns the wall time in
    seconds of the container run.
    """
    import align

    data_dir = os.path.abspath(data_dir)
    ref_dir = os.path.abspath(ref_dir or os.path.join(data_dir, "ref"))
    work = tempfile.mkdtemp(prefix="genomics-serial-")
    try:
        command = align.align_command(threads, "/data/reads_1.fq", "/data/reads_2.fq")
        start = time.monotonic()
        run_in_image(command, {data_dir: {"bind": "/data", "mode": "ro"},
                               ref_dir: {"bind": "/ref", "mode": "ro"},
                               work: {"bind": "/shared", "mode": "rw"}}, image)
        seconds = time.monotonic() - start
        shutil.move(os.path.join(work, "output.bin"), output)
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sam_view(bam: str, image: str = IMAGE) -> tuple[list[str], list[str]]:
    """``samtools view -h`` of a BAM file: (header lines, records sorted by read name).

    Records are sorted as whole lines, so by read name, then by flag, and so on.
    """
    bam = os.path.abspath(bam)
    work = tempfile.mkdtemp(prefix="genomics-view-")
    try:
        run_in_image(f"samtools view -h --no-PG -o /shared/view.sam /data/{os.path.basename(bam)}",
                     {os.path.dirname(bam): {"bind": "/data", "mode": "ro"},
                      work: {"bind": "/shared", "mode": "rw"}}, image)
        with open(os.path.join(work, "view.sam"), encoding="ascii") as handle:
            lines = handle.read().splitlines()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = [line for line in lines if line.startswith("@")]
    return header, sorted(line for line in lines if not line.startswith("@"))


# @PG and @CO lines hold command lines (and the random ID suffixes samtools merge
# adds to clashing @PG IDs); @HD (version, sort order) and @SQ (the reference) must match.
KEPT_HEADER = ("@HD", "@SQ")


def compare(serial_bam: str, distributed_bam: str, image: str = IMAGE) -> dict:
    """Compare two BAM files: same @HD/@SQ lines, and the same records once sorted by name."""
    serial_header, serial = sam_view(serial_bam, image)
    header, records = sam_view(distributed_bam, image)
    kept = [line for line in serial_header if line.startswith(KEPT_HEADER)]
    differences = [(i, a, b) for i, (a, b) in enumerate(zip(serial, records, strict=False))
                   if a != b]
    mapped = sum(1 for line in serial if not int(line.split("\t", 2)[1]) & 0x4)
    return {
        "records": len(serial), "distributed_records": len(records), "mapped": mapped,
        "header_equal": kept == [line for line in header if line.startswith(KEPT_HEADER)],
        "records_equal": serial == records,
        "differences": len(differences) + abs(len(serial) - len(records)),
        "first_differences": differences[:3],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--genome-size", type=int, default=2_000_000,
                        help="reference size in bases (default %(default)s)")
    parser.add_argument("--pairs", type=int, default=100_000,
                        help="number of read pairs (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--force", action="store_true", help="simulate and index again")
    parser.add_argument("--serial", metavar="BAM",
                        help="then align all reads in one container into BAM (the baseline)")
    parser.add_argument("--threads", type=int, default=2,
                        help="minimap2 threads for --serial (default %(default)s)")
    parser.add_argument("--compare", metavar="BAM",
                        help="then compare BAM with the serial baseline (needs --serial)")
    args = parser.parse_args(argv)
    if args.compare and not args.serial:
        parser.error("--compare needs --serial")
    seconds = prepare(args.data_dir, args.genome_size, args.pairs, args.seed, args.image,
                      args.force)
    if seconds["simulate"] or seconds["index"]:
        print(f"prepared {args.data_dir}: simulated in {seconds['simulate']:.1f} s, "
              f"indexed in {seconds['index']:.1f} s", flush=True)
    else:
        print(f"{args.data_dir} is prepared already", flush=True)
    if args.serial:
        took = serial_align(args.data_dir, args.serial, args.threads, image=args.image)
        print(f"serial alignment with {args.threads} threads: {took:.1f} s -> {args.serial}",
              flush=True)
    if args.compare:
        result = compare(args.serial, args.compare, args.image)
        same = result["header_equal"] and result["records_equal"]
        print(f"{args.compare} vs the serial run: {result['records']} records "
              f"({result['mapped']} mapped) in the serial BAM, {result['distributed_records']} "
              f"in the distributed one: "
              + ("identical (@HD, @SQ and every record)" if same else
                 f"{result['differences']} records differ, @HD/@SQ "
                 f"{'equal' if result['header_equal'] else 'differ'}"))
        for index, expected, got in result["first_differences"]:
            print(f"  record {index}:\n    serial      {expected}\n    distributed {got}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
