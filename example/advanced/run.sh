#!/usr/bin/env bash
# The genomics example in one command, on local Spark:
#
#   bash example/advanced/run.sh [--data DIR] [--pairs N] [--genome-size N]
#                                [--partitions P] [--threads T] [--master URL] [--no-check]
#
# 1. set-up (scripts/dev.sh setup: Java, Docker, the virtualenv), 2. the image
# lofn/aligner:bookworm (build_image.sh, skipped when it exists), 3. simulated
# data and the reference index in DIR (prepare.py, skipped when done),
# 4. the pipeline (align.py) with spark-submit, writing DIR/aligned.bam, and
# 5. unless --no-check, one serial run of the same command over all reads and a
# comparison of the two BAM files' records (prepare.py --serial --compare).
#
# Defaults: DIR=${LOFN_GENOMICS_DATA:-/tmp/lofn-genomics}, 100000 pairs, a
# 2000000-base reference, 8 partitions, 1 minimap2 thread per container,
# master local[2].
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${LOFN_VENV:-$ROOT/.venv}
PY=$VENV/bin/python

data=${LOFN_GENOMICS_DATA:-${TMPDIR:-/tmp}/lofn-genomics}
pairs=100000
genome_size=2000000
partitions=8
threads=1
master='local[2]'
check=1

die() { printf '[run.sh] ERROR: %s\n' "$*" >&2; exit 1; }
step() { printf '\n[run.sh] %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --data) data=$2; shift ;;
        --pairs) pairs=$2; shift ;;
        --genome-size) genome_size=$2; shift ;;
        -p|--partitions) partitions=$2; shift ;;
        -t|--threads) threads=$2; shift ;;
        --master) master=$2; shift ;;
        --no-check) check=0 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

step "set-up (scripts/dev.sh setup)"
bash "$ROOT/scripts/dev.sh" setup
step "image lofn/aligner:bookworm"
bash "$HERE/build_image.sh"
step "data: $pairs read pairs from a $genome_size-base reference in $data"
"$PY" "$HERE/prepare.py" "$data" --pairs "$pairs" --genome-size "$genome_size"

export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY PATH=$VENV/bin:$PATH
step "align: spark-submit --master $master align.py (-p $partitions -t $threads)"
spark-submit --master "$master" --conf spark.log.level=ERROR "$HERE/align.py" \
    "$data/reads_1.fq" "$data/reads_2.fq" "$data/ref" -o "$data/aligned.bam" \
    -p "$partitions" -t "$threads"

if [ "$check" -eq 1 ]; then
    step "check: one serial run of the same command over all reads, then compare"
    "$PY" "$HERE/prepare.py" "$data" --pairs "$pairs" --genome-size "$genome_size" \
        --serial "$data/serial.bam" --threads "$threads" --compare "$data/aligned.bam"
fi
