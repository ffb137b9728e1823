"""Data flow beyond map/reduce: keyed reduce with combiner, downsampling."""

from __future__ import annotations

import pytest

from .helpers import MAP_COMMAND, REDUCE_COMMAND, make_text, parse_counts, python_counts

# one "word<TAB>1" line per word: the keyed reduce then does all the counting
SPLIT = ("awk '{ $0 = tolower($0); gsub(/[^a-z0-9]+/, \" \");"
         " for (i = 1; i <= NF; i++) print $i \"\\t\" 1 }' /shared/input.txt > /shared/output.txt")
SUM = ("awk -F '\\t' '{ n[$1] += $2 } END { for (w in n) print w \"\\t\" n[w] }'"
       " /shared/input.txt > /shared/output.txt")


def test_keyed_reduce_word_count_equals_global_reduce_and_python(sc, pipe, busybox):
    text = make_text(3000, seed=5)
    rdd = sc.parallelize(text, 6)
    pairs = pipe.map(rdd, busybox, SPLIT)
    keyed = pipe.reduce_by_key(pairs, busybox, SUM, num_partitions=4)
    assert keyed.getNumPartitions() == 4
    by_key = parse_counts(keyed.collect())
    assert by_key == python_counts(text)
    global_reduce = parse_counts(pipe.reduce(pipe.map(rdd, busybox, MAP_COMMAND), busybox,
                                             REDUCE_COMMAND))
    assert by_key == global_reduce


def test_combiner_shrinks_partitions_before_the_shuffle(sc, pipe, busybox):
    text = make_text(3000, seed=6)
    pairs = pipe.map(sc.parallelize(text, 5), busybox, SPLIT)
    combined = pipe.reduce_by_key(pairs, busybox, SUM, combiner=SUM, num_partitions=3)
    assert parse_counts(combined.collect()) == python_counts(text)
    # the combiner ran per input partition: at most one line per word and partition
    shuffled_lines = pipe.map(pairs, busybox, SUM).count()
    assert shuffled_lines < pairs.count()


def test_every_key_lands_in_one_partition_chosen_by_the_partitioner(sc, pipe, busybox):
    records = [f"k{i % 10}\tv{i}" for i in range(200)]

    def by_number(key):
        return int(key[1:])

    out = pipe.reduce_by_key(sc.parallelize(records, 4), busybox,
                             "cat /shared/input.txt > /shared/output.txt",
                             num_partitions=5, partition_func=by_number).glom().collect()
    for index, partition in enumerate(out):
        assert {int(line.split("\t")[0][1:]) % 5 for line in partition} <= {index}
    assert sorted(line for partition in out for line in partition) == sorted(records)


def test_sort_within_partitions_and_custom_key(sc, pipe, busybox):
    records = [f"{(i * 7919) % 101:03d},{i}" for i in range(300)]
    out = pipe.reduce_by_key(sc.parallelize(records, 3), busybox,
                             "cat /shared/input.txt > /shared/output.txt",
                             key=lambda record: record.split(",")[0], sort=True,
                             num_partitions=3).glom().collect()
    for partition in out:
        keys = [line.split(",")[0] for line in partition]
        assert keys == sorted(keys)
    assert sorted(line for partition in out for line in partition) == sorted(records)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_partitions": 0}, "num_partitions must be a positive whole number, got 0"),
    ({"key": "first"}, "key must be a function, got 'first'"),
    ({"partition_func": 3}, "partition_func must be a function, got 3"),
])
def test_bad_keyed_arguments(sc, pipe, busybox, kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        pipe.reduce_by_key(sc.parallelize(["a\t1"], 1), busybox, "true", **kwargs)


def test_downsampling_is_seeded_and_reproducible(sc, pipe, busybox):
    rdd = sc.parallelize([f"line {i}" for i in range(5000)], 4)
    command = "cat /shared/input.txt > /shared/output.txt"
    first = pipe.map(rdd, busybox, command, sample=0.05, sample_seed=7).collect()
    again = pipe.map(rdd, busybox, command, sample=0.05, sample_seed=7).collect()
    other = pipe.map(rdd, busybox, command, sample=0.05, sample_seed=8).collect()
    assert first == again != other
    assert 100 < len(first) < 400 and set(first) <= set(rdd.collect())
    reduced = pipe.reduce(rdd, busybox, "sort /shared/input.txt > /shared/output.txt",
                          sample=0.05, sample_seed=7)
    assert reduced == sorted(first)


@pytest.mark.parametrize("sample", [0, 1.5, "half", True])
def test_bad_sample_is_rejected(sc, pipe, busybox, sample):
    with pytest.raises(ValueError, match="sample must be a fraction in"):
        pipe.map(sc.parallelize(["a"], 1), busybox, "true", sample=sample)
