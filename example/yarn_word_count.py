#!/usr/bin/env python3
"""Count words on YARN with lofn: text and a stop-word list on HDFS, results written locally.

The input text is read from HDFS with ``sc.textFile``. The HDFS directory
given by ``--stopwords-dir`` must hold ``stopwords.txt``: one lower-case
word per line, and no blank line (an empty pattern matches every word).
lofn mounts that directory at ``/ref`` in every container (downloaded once
per executor host), and the map drops the stop words with
``grep -v -w -f /ref/stopwords.txt``. Two jobs run in ``lofn/busybox``
containers:

* ``map`` + ``reduce``: word counts per partition, summed in a tree of
  merges, written to ``--output`` as ``word<TAB>count`` lines;
* ``map_binary`` + ``reduce_binary``: each partition gzipped on HDFS, the
  gzip files concatenated pairwise into one, written to ``--gzip-output``.

Ship lofn to the executors in a packed virtualenv and submit in client mode,
from a lofn checkout, with a Python that has pyspark and lofn installed as
the driver's Python::

    bash scripts/pack_env.sh lofn-env.tar.gz
    spark-submit --master yarn --deploy-mode client \\
        --archives lofn-env.tar.gz#lofn-env \\
        --conf spark.pyspark.python=./lofn-env/bin/python \\
        --conf spark.pyspark.driver.python="$(command -v python3)" \\
        example/yarn_word_count.py hdfs:///data/book.txt --stopwords-dir /ref

Every executor host needs a Docker engine and the image (``--image``). The
WebHDFS address is found in the Spark or Hadoop configuration
(``HADOOP_CONF_DIR``), unless ``--hdfs-url`` gives it. See docs/yarn.rst.
"""

import argparse
import gzip
import sys

from pyspark import SparkConf, SparkContext

from lofn import DockerPipe

# One word per line, lower-cased, without the stop words; then "word<TAB>count".
MAP_COMMAND = (
    "awk '{ $0 = tolower($0); gsub(/[^a-z0-9]+/, \" \");"
    " for (i = 1; i <= NF; i++) print $i }' /shared/input.txt"
    " | grep -v -w -f /ref/stopwords.txt"
    " | awk '{ n[$1]++ } END { for (w in n) print w \"\\t\" n[w] }' > /shared/output.txt"
)
# Sum two count tables; the output, sorted by count, has the input's format.
REDUCE_COMMAND = (
    "tab=$(printf '\\t');"
    " awk -F \"$tab\" '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'"
    " /shared/input.txt | sort -t \"$tab\" -k2,2nr -k1,1 > /shared/output.txt"
)
GZIP_COMMAND = "gzip -c /shared/input.txt > /shared/output.bin"
# Concatenated gzip members are one valid gzip stream.
CONCAT_COMMAND = "cat /shared/input_1.bin /shared/input_2.bin > /shared/output.bin"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="HDFS path of a text file, e.g. hdfs:///data/book.txt")
    parser.add_argument("--image", default="lofn/busybox",
                        help="Docker image with sh, awk, grep, sort and gzip "
                             "(default %(default)s)")
    parser.add_argument("--stopwords-dir", default="/ref",
                        help="HDFS directory holding stopwords.txt (default %(default)s)")
    parser.add_argument("--hdfs-url", default=None,
                        help="WebHDFS URL (http://namenode:9870) or HdfsCLI alias; "
                             "default: from the Spark or Hadoop configuration")
    parser.add_argument("-o", "--output", default="word_counts.tsv",
                        help="local file for 'word<TAB>count' lines (default %(default)s)")
    parser.add_argument("--gzip-output", default="text.gz",
                        help="local file for the merged gzip of the input (default %(default)s)")
    parser.add_argument("-p", "--partitions", type=int, default=8,
                        help="number of partitions (default %(default)s)")
    parser.add_argument("-n", "--top", type=int, default=10,
                        help="how many of the most frequent words to print")
    arguments = parser.parse_args()

    sc = SparkContext(conf=SparkConf().setAppName("lofn YARN word count"))
    sc.setLogLevel("ERROR")
    try:
        if not sc.master.startswith("yarn"):
            sys.exit(f"this example runs on YARN (volumes are HDFS paths); master is {sc.master}")
        pipe = DockerPipe(SparkConf(), hdfs_url=arguments.hdfs_url,
                          volumes={arguments.stopwords_dir: {"bind": "/ref", "mode": "ro"}})
        rdd = sc.textFile(arguments.input, minPartitions=arguments.partitions)

        counts = pipe.reduce(pipe.map(rdd, arguments.image, MAP_COMMAND),
                             arguments.image, REDUCE_COMMAND)

        with pipe.map_binary(rdd, arguments.image, GZIP_COMMAND) as directory:
            files = sc.binaryFiles(directory)  # part-00000.bin, ... on HDFS
            print(f"{files.count()} gzip files in hdfs://{directory}")
            merged = pipe.reduce_binary(files, arguments.image, CONCAT_COMMAND)
        # the HDFS directory is gone now
    finally:
        sc.stop()

    with open(arguments.output, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in counts)
    with open(arguments.gzip_output, "wb") as handle:
        handle.write(merged)
    print(f"{len(counts)} distinct words other than stop words in {arguments.input}; "
          f"the {arguments.top} most frequent:")
    for line in counts[:arguments.top]:
        word, count = line.split("\t")
        print(f"{int(count):8d}  {word}")
    print(f"all counts written to {arguments.output}")
    lines = gzip.decompress(merged).count(b"\n")
    print(f"wrote {arguments.gzip_output}: {len(merged)} bytes, {lines} lines")


if __name__ == "__main__":
    main()
