#!/usr/bin/env python3
"""Count words with lofn: awk in a busybox container per partition, merged in a tree.

Run it with spark-submit (the image is built by ``scripts/dev.sh setup``)::

    spark-submit --master 'local[*]' example/word_count.py INPUT.txt [-o counts.tsv]

The map counts the words of each partition; the reduce merges two count
tables into one, sorted by count, so it can be applied pairwise in any order.
"""

import argparse

from pyspark import SparkConf, SparkContext

from lofn.api import DockerPipe

IMAGE = "lofn/busybox"

# "word<TAB>count" for every word of the partition, lower-cased.
MAP_COMMAND = (
    "awk '{ $0 = tolower($0); gsub(/[^a-z0-9]+/, \" \");"
    " for (i = 1; i <= NF; i++) n[$i]++ }"
    " END { for (w in n) print w \"\\t\" n[w] }'"
    " /shared/input.txt > /shared/output.txt"
)
# Sum the counts of two tables; the output has the input's format.
REDUCE_COMMAND = (
    "tab=$(printf '\\t');"
    " awk -F \"$tab\" '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'"
    " /shared/input.txt | sort -t \"$tab\" -k2,2nr -k1,1 > /shared/output.txt"
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_file", help="a text file to count the words of")
    parser.add_argument("-o", "--output", default="word_counts.tsv",
                        help="where to write 'word<TAB>count' lines (default %(default)s)")
    parser.add_argument("-p", "--partitions", type=int, default=8,
                        help="number of partitions (default %(default)s)")
    parser.add_argument("-n", "--top", type=int, default=10,
                        help="how many of the most frequent words to print")
    arguments = parser.parse_args()

    sc = SparkContext(conf=SparkConf().setAppName("lofn word count"))
    sc.setLogLevel("ERROR")
    try:
        rdd = sc.textFile(arguments.input_file, minPartitions=arguments.partitions)
        pipe = DockerPipe(SparkConf())
        counts = pipe.map(rdd=rdd, image_name=IMAGE, command=MAP_COMMAND)
        result = pipe.reduce(rdd=counts, image_name=IMAGE, command=REDUCE_COMMAND)
    finally:
        sc.stop()

    with open(arguments.output, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in result)
    print(f"{len(result)} distinct words in {arguments.input_file}; "
          f"the {arguments.top} most frequent:")
    for line in result[:arguments.top]:
        word, count = line.split("\t")
        print(f"{int(count):8d}  {word}")
    print(f"all counts written to {arguments.output}")


if __name__ == "__main__":
    main()
