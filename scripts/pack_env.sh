#!/usr/bin/env bash
# Pack lofn and its dependencies (not pyspark: Spark ships its own) into a
# relocatable virtualenv archive for YARN executors:
#
#   bash scripts/pack_env.sh lofn-env.tar.gz [PYTHON]
#   spark-submit --master yarn --archives lofn-env.tar.gz#lofn-env \
#       --conf spark.pyspark.python=./lofn-env/bin/python \
#       --conf spark.pyspark.driver.python="$(command -v python3)" job.py
#
# PYTHON (default /usr/bin/python3) must exist at the same path on every node:
# the packed environment links to it.
set -euo pipefail
out=${1:?usage: pack_env.sh OUTPUT.tar.gz [PYTHON]}
python=${2:-/usr/bin/python3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/env"
# build from a copy: pip would otherwise write build/ into the checkout
mkdir "$work/src"
cp -r "$root/lofn" "$root/pyproject.toml" "$root/README.md" "$root/LICENSE" "$work/src/"
"$work/env/bin/pip" install -q --disable-pip-version-check "$work/src"
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
tar -C "$work/env" -czf "$out" .
echo "$out"
