#!/usr/bin/env python3
"""Binary outputs with lofn: gzip each partition, then merge the files pairwise.

This is the shape of a BAM pipeline (align per partition, ``samtools merge``
pairwise) with busybox tools::

    spark-submit --master 'local[*]' example/binary_merge.py INPUT.txt [-o merged.gz]

``map_binary`` is a context manager: inside the ``with`` block the per-partition
files exist (read them with ``sc.binaryFiles``); afterwards they are removed.
"""

import argparse
import gzip

from pyspark import SparkConf, SparkContext

from lofn.api import DockerPipe

IMAGE = "lofn/busybox"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_file")
    parser.add_argument("-o", "--output", default="merged.gz")
    parser.add_argument("-p", "--partitions", type=int, default=4)
    arguments = parser.parse_args()

    sc = SparkContext(conf=SparkConf().setAppName("lofn binary merge"))
    sc.setLogLevel("ERROR")
    try:
        rdd = sc.textFile(arguments.input_file, minPartitions=arguments.partitions)
        pipe = DockerPipe(SparkConf())
        with pipe.map_binary(rdd, IMAGE, "gzip -c /shared/input.txt > /shared/output.bin"
                             ) as directory:
            files = sc.binaryFiles(directory)
            print(f"{files.count()} gzip files in {directory}")
            # concatenated gzip members are one valid gzip stream
            merged = pipe.reduce_binary(
                files, IMAGE, "cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin")
    finally:
        sc.stop()

    with open(arguments.output, "wb") as handle:
        handle.write(merged)
    lines = gzip.decompress(merged).count(b"\n")
    print(f"wrote {arguments.output}: {len(merged)} bytes, {lines} lines")


if __name__ == "__main__":
    main()
