#!/usr/bin/env bash
# End-to-end check of the mini cluster: HdfsCLI over WebHDFS, then a PySpark
# job on YARN (client mode) whose executors import a module shipped with
# --py-files. Starts the cluster if needed and stops it again if it did.
#
#   scripts/hadoop/smoke.sh            (LOFN_PYTHON as for start.sh)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${LOFN_PYTHON:-$HERE/../../.venv/bin/python}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
SPARK_SUBMIT=$(dirname "$PY")/spark-submit
RUN=${LOFN_HADOOP_RUN_DIR:-${TMPDIR:-/tmp}/lofn-hadoop}
ms() { echo $(( (${EPOCHREALTIME//[.,]/} - ${1//[.,]/}) / 1000 )); }

started=0
if ! [[ -f "$RUN/ready" && -f "$RUN/pid" ]] || ! kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
  started=1
fi
WORK=$(mktemp -d)
cleanup() {
  rm -rf "$WORK"
  if (( started )); then "$HERE/stop.sh"; fi
}
trap cleanup EXIT

t=$EPOCHREALTIME
eval "$("$HERE/start.sh")"
echo "start: $(ms "$t") ms"

t=$EPOCHREALTIME
"$PY" - "$LOFN_WEBHDFS_URL" <<'EOF'
import sys
from hdfs import InsecureClient
c = InsecureClient(sys.argv[1], user="root")
base = "/lofn-smoke"
c.makedirs(base + "/sub")
c.write(base + "/sub/a.txt", data=b"hello\n" * 1000, overwrite=True)
assert sorted(c.list(base)) == ["sub"], c.list(base)
assert c.list(base + "/sub") == ["a.txt"]
with c.read(base + "/sub/a.txt") as r:
    assert r.read() == b"hello\n" * 1000
assert c.delete(base, recursive=True)
assert c.status(base, strict=False) is None
print("hdfs: makedirs/write/list/read/delete OK")
EOF
echo "hdfs: $(ms "$t") ms"

mkdir -p "$WORK/pkg/lofn_smoke_mod"
echo 'VALUE = 42' > "$WORK/pkg/lofn_smoke_mod/__init__.py"
(cd "$WORK/pkg" && "$PY" -m zipfile -c "$WORK/mod.zip" lofn_smoke_mod)
cat > "$WORK/job.py" <<'EOF'
import getpass, sys
from pyspark import SparkContext
sc = SparkContext()
total = sc.parallelize(range(100), 4).map(lambda x: x * x).sum()
def probe(_):
    import lofn_smoke_mod
    yield (lofn_smoke_mod.VALUE, getpass.getuser(), sys.executable)
print("SMOKE", total, sorted(set(sc.parallelize(range(2), 2).mapPartitions(probe).collect())))
sc.stop()
EOF
t=$EPOCHREALTIME
"$SPARK_SUBMIT" --properties-file "$LOFN_SPARK_YARN_CONF" \
  --py-files "$WORK/mod.zip" "$WORK/job.py" > "$WORK/out" 2> "$WORK/err" || {
  tail -n 40 "$WORK/err" >&2; echo "spark-submit failed" >&2; exit 1; }
grep '^SMOKE' "$WORK/out"
grep -q '^SMOKE 328350 \[(42, ' "$WORK/out" || { echo "unexpected result" >&2; exit 1; }
echo "spark-submit --master yarn: $(ms "$t") ms"
echo "cluster JVM RSS: $(ps -o rss= -p "$(cat "$RUN/pid")") kB"
echo "smoke OK"
