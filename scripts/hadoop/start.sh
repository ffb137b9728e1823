#!/usr/bin/env bash
# Start a single-node Hadoop 3.4.1 mini cluster (HDFS + WebHDFS + YARN) in one
# background JVM, built from Maven Central artifacts. Only binds 127.0.0.1.
#
#   eval "$(scripts/hadoop/start.sh)"      # exports HADOOP_CONF_DIR etc.
#   scripts/hadoop/start.sh [hadoop.key=value ...]   # extra Configuration
#   scripts/hadoop/stop.sh
#
# stdout: only `export ...` lines (safe to eval); progress goes to stderr.
# Idempotent: if the cluster in $LOFN_HADOOP_RUN_DIR is already up, it just
# prints the exports again.
#
# Environment (all optional):
#   LOFN_HADOOP_CACHE      jars/classpath/compiled launcher
#                          (default ${XDG_CACHE_HOME:-~/.cache}/lofn/hadoop)
#   LOFN_HADOOP_RUN_DIR    pid, logs, HDFS/YARN data, HADOOP_CONF_DIR
#                          (default ${TMPDIR:-/tmp}/lofn-hadoop)
#   LOFN_HADOOP_HEAP       cluster JVM -Xmx (default 1g)
#   LOFN_HADOOP_JAVA_OPTS  extra JVM options for the cluster JVM
#   LOFN_HADOOP_START_TIMEOUT  seconds (default 240)
#   LOFN_HADOOP_NN_PORT, LOFN_HADOOP_NN_HTTP_PORT, LOFN_HADOOP_RM_PORT,
#   LOFN_HADOOP_RM_SCHEDULER_PORT, LOFN_HADOOP_RM_TRACKER_PORT,
#   LOFN_HADOOP_RM_ADMIN_PORT, LOFN_HADOOP_RM_WEBAPP_PORT
#                          fixed ports; unset/0 = pick free ones
#   LOFN_HADOOP_NM_MEMORY_MB (8192), LOFN_HADOOP_NM_VCORES (4)
#   LOFN_PYTHON            python with pyspark, used to write spark-yarn.conf
#                          (default <repo>/.venv/bin/python if present)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${LOFN_HADOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lofn/hadoop}
RUN=${LOFN_HADOOP_RUN_DIR:-${TMPDIR:-/tmp}/lofn-hadoop}
HEAP=${LOFN_HADOOP_HEAP:-1g}
TIMEOUT=${LOFN_HADOOP_START_TIMEOUT:-240}
CONF_DIR=$RUN/conf
PID_FILE=$RUN/pid
LOG=$RUN/cluster.log

log() { echo "lofn-hadoop: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- java ----
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  :
else
  command -v java >/dev/null || die "java not found (need JDK 11+; tested with 17)"
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
fi
# YARN containers run "$JAVA_HOME/bin/java"; the NodeManager passes its own
# JAVA_HOME through (yarn.nodemanager.env-whitelist), so it must be exported.
export JAVA_HOME
JAVA=$JAVA_HOME/bin/java
JAVAC=$JAVA_HOME/bin/javac
[[ -x "$JAVAC" ]] || die "javac not found in $JAVA_HOME (need a JDK, not a JRE)"

print_exports() {
  cat "$CONF_DIR/cluster.env"
}

# ------------------------------------------------------- already running ----
if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  if [[ -f "$RUN/ready" ]]; then
    log "already running (pid $(cat "$PID_FILE")), run dir $RUN"
    print_exports
    exit 0
  fi
  die "pid $(cat "$PID_FILE") is running but not ready; run stop.sh first"
fi

# ------------------------------------------------------------ classpath ----
mkdir -p "$CACHE"
POM_KEY=$(sha256sum "$HERE/pom.xml" | cut -c1-12)
CP_FILE=$CACHE/classpath-$POM_KEY.txt
cp_complete() {
  [[ -s "$CP_FILE" ]] || return 1
  local jar
  while IFS= read -r -d: jar || [[ -n "$jar" ]]; do
    [[ -f "$jar" ]] || return 1
  done < "$CP_FILE"
}
if ! cp_complete; then
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch jars)"
  log "resolving Hadoop jars from Maven Central into $CACHE/m2 (first run only)..."
  t0=$(date +%s)
  if ! mvn -B -q -f "$HERE/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
      dependency:build-classpath -Dmdep.outputFile="$CP_FILE.tmp.$$" \
      > "$CACHE/mvn.log" 2>&1; then
    tail -n 30 "$CACHE/mvn.log" >&2
    die "maven failed; full log in $CACHE/mvn.log"
  fi
  mv "$CP_FILE.tmp.$$" "$CP_FILE"
  log "jars resolved in $(( $(date +%s) - t0 ))s"
fi
CP=$(cat "$CP_FILE")

# -------------------------------------------------------------- launcher ----
SRC_KEY=$( (cat "$HERE/LofnMiniCluster.java"; echo "$POM_KEY"; "$JAVA" -version 2>&1) \
  | sha256sum | cut -c1-12)
CLASSES=$CACHE/launcher-$SRC_KEY
if [[ ! -f "$CLASSES/LofnMiniCluster.class" ]]; then
  log "compiling launcher..."
  rm -rf "$CLASSES.tmp.$$"
  mkdir -p "$CLASSES.tmp.$$"
  if ! "$JAVAC" -nowarn -cp "$CP" -d "$CLASSES.tmp.$$" \
      "$HERE/LofnMiniCluster.java" > "$CACHE/javac.log" 2>&1; then
    cat "$CACHE/javac.log" >&2
    die "javac failed"
  fi
  # A concurrent start.sh may have won the race; keep its copy.
  mv -T "$CLASSES.tmp.$$" "$CLASSES" 2>/dev/null || rm -rf "$CLASSES.tmp.$$"
fi

# ----------------------------------------------------------------- start ----
# Leftovers of a crashed run (stale pid/data) are wiped: data is throwaway.
# Only a directory we created (marker file) or an empty one is ever wiped.
if [[ -e "$RUN" ]]; then
  if [[ -f "$RUN/.lofn-hadoop-run" ]]; then
    rm -rf "$RUN"
  elif [[ -n "$(ls -A "$RUN" 2>/dev/null)" ]]; then
    die "$RUN exists, is not empty and was not made by start.sh; refusing to wipe it"
  fi
fi
mkdir -p "$RUN/tmp" "$CONF_DIR"
touch "$RUN/.lofn-hadoop-run"

# Hadoop 3.4 on JDK 17: Guice/cglib (YARN web apps), JAXB (WebHDFS/Jersey)
# and a few others need reflective access to java.base internals.
JDK_OPTS=(
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.lang.invoke=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/sun.nio.cs=ALL-UNNAMED
  --add-opens=java.base/sun.security.action=ALL-UNNAMED
  --add-opens=java.base/sun.util.calendar=ALL-UNNAMED
  --add-exports=java.base/sun.net.dns=ALL-UNNAMED
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
)
if [[ "$("$JAVA" -version 2>&1 | head -1)" =~ \"1\.8 ]]; then JDK_OPTS=(); fi

cat > "$RUN/log4j.properties" <<'EOF'
log4j.rootLogger=INFO,stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} %-5p %c{2} - %m%n
EOF

ARGS=(
  "$RUN" "$CONF_DIR"
  "lofn.nn.port=${LOFN_HADOOP_NN_PORT:-0}"
  "lofn.nn.http.port=${LOFN_HADOOP_NN_HTTP_PORT:-0}"
  "lofn.rm.port=${LOFN_HADOOP_RM_PORT:-0}"
  "lofn.rm.scheduler.port=${LOFN_HADOOP_RM_SCHEDULER_PORT:-0}"
  "lofn.rm.tracker.port=${LOFN_HADOOP_RM_TRACKER_PORT:-0}"
  "lofn.rm.admin.port=${LOFN_HADOOP_RM_ADMIN_PORT:-0}"
  "lofn.rm.webapp.port=${LOFN_HADOOP_RM_WEBAPP_PORT:-0}"
  "yarn.minicluster.yarn.nodemanager.resource.memory-mb=${LOFN_HADOOP_NM_MEMORY_MB:-8192}"
  "yarn.nodemanager.resource.cpu-vcores=${LOFN_HADOOP_NM_VCORES:-4}"
  "yarn.scheduler.maximum-allocation-mb=${LOFN_HADOOP_NM_MEMORY_MB:-8192}"
  "yarn.scheduler.maximum-allocation-vcores=${LOFN_HADOOP_NM_VCORES:-4}"
  "$@"
)

log "starting cluster (log: $LOG)..."
T0=$EPOCHREALTIME
cd "$RUN"
# setsid: own session, so a Ctrl-C/SIGHUP aimed at the caller's terminal or
# process group does not take the cluster down. Not a group leader here, so
# setsid execs in place and $! is the JVM's pid.
# Serial GC + C1 only: lower RSS and less JIT CPU on a 2-core box.
# shellcheck disable=SC2086
setsid "$JAVA" -Xmx"$HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  "${JDK_OPTS[@]}" ${LOFN_HADOOP_JAVA_OPTS:-} \
  -Djava.io.tmpdir="$RUN/tmp" \
  -Dtest.build.data="$RUN/data" \
  -Dlog4j.configuration="file:$RUN/log4j.properties" \
  -Djava.net.preferIPv4Stack=true \
  -cp "$CLASSES:$CP" LofnMiniCluster "${ARGS[@]}" \
  > "$LOG" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$PID_FILE"
cd - >/dev/null

fail() {
  tail -n 40 "$LOG" >&2 || true
  log "ERROR: $*; see $LOG"
  kill "$PID" 2>/dev/null || true
  exit 1
}

deadline=$(( $(date +%s) + TIMEOUT ))
until [[ -f "$RUN/ready" ]]; do
  kill -0 "$PID" 2>/dev/null || fail "cluster JVM exited during start-up"
  (( $(date +%s) < deadline )) || fail "not ready after ${TIMEOUT}s"
  sleep 0.5
done
# shellcheck disable=SC1091
source "$CONF_DIR/cluster.env"

# Independent readiness check over HTTP, as a client would see it.
CURL=(curl -sf --noproxy '*' --max-time 10)
until "${CURL[@]}" "$LOFN_WEBHDFS_URL/webhdfs/v1/?op=GETFILESTATUS&user.name=root" \
      | grep -q '"type":"DIRECTORY"'; do
  (( $(date +%s) < deadline )) || fail "WebHDFS not answering at $LOFN_WEBHDFS_URL"
  sleep 0.5
done
until "${CURL[@]}" "$LOFN_YARN_RM_URL/ws/v1/cluster/info" | grep -q '"state":"STARTED"' \
   && "${CURL[@]}" "$LOFN_YARN_RM_URL/ws/v1/cluster/nodes?states=RUNNING" \
      | grep -q '"state":"RUNNING"'; do
  (( $(date +%s) < deadline )) || fail "YARN RM/NodeManager not ready at $LOFN_YARN_RM_URL"
  sleep 0.5
done

# --------------------------------------------------- spark-on-yarn conf ----
PY=${LOFN_PYTHON:-$HERE/../../.venv/bin/python}
if [[ -x "$PY" ]] && SPARK_DIR=$("$PY" -c \
    'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null) \
    && [[ -d "$SPARK_DIR/jars" ]]; then
  PY_ABS=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
  cat > "$CONF_DIR/spark-yarn.conf" <<EOF
# spark-submit --properties-file $CONF_DIR/spark-yarn.conf ...
spark.master                          yarn
spark.submit.deployMode               client
# NodeManager is on this host: use the jars in place (no zip/upload/localize).
spark.yarn.jars                       local:$SPARK_DIR/jars/*
# Keep driver, AM and executors on loopback ("vm" resolves to 127.0.0.1, so
# Spark would otherwise pick the first non-loopback interface address).
spark.driver.host                     127.0.0.1
spark.driver.bindAddress              127.0.0.1
spark.yarn.appMasterEnv.SPARK_LOCAL_IP 127.0.0.1
spark.executorEnv.SPARK_LOCAL_IP      127.0.0.1
spark.pyspark.python                  $PY_ABS
spark.pyspark.driver.python           $PY_ABS
spark.executor.instances              2
spark.executor.cores                  1
spark.executor.memory                 512m
spark.yarn.am.memory                  512m
spark.ui.enabled                      false
EOF
  {
    echo "export LOFN_SPARK_YARN_CONF='$CONF_DIR/spark-yarn.conf'"
    # pip-installed spark-submit finds SPARK_HOME via \$PYSPARK_PYTHON (else
    # the first python3 on PATH, which may lack pyspark).
    echo "export PYSPARK_PYTHON='$PY_ABS'"
    # Silences "hostname vm resolves to a loopback address; using <eth0 ip>".
    echo "export SPARK_LOCAL_IP=127.0.0.1"
  } >> "$CONF_DIR/cluster.env"
fi

T1=$EPOCHREALTIME
log "ready in $(( (${T1//[.,]/} - ${T0//[.,]/}) / 1000 ))ms (pid $PID, run dir $RUN)"
print_exports
