#!/usr/bin/env bash
# Set up everything lofn needs on a fresh Debian machine, then run something.
#
#   bash scripts/dev.sh setup            # install and start what is missing
#   bash scripts/dev.sh example          # setup + the word-count example on local Spark
#   bash scripts/dev.sh test [PYTEST...] # setup + docs build + wheel check + lint + the tests
#
# What setup does, each step skipped when already done: Java 17 (a JDK) and
# Maven, Debian's busybox-static, debootstrap, docker-registry, podman and chromium
# (apt), a Docker engine (Debian's docker.io, dockerd started in the background) when
# none answers, a virtualenv in .venv with requirements.txt (pinned, with mypy and ruff)
# and lofn in editable mode, the Jupyter kernel "lofn" (that virtualenv's Python), and the
# example images, built locally without a registry.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LOFN_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
# Debian's python3, not one under /root: Spark executors may run as other
# users (yarn, nobody, a test user), and they must be able to run the venv.
BASE_PYTHON=${LOFN_PYTHON:-/usr/bin/python3}
DOCKERD_LOG=${LOFN_DOCKERD_LOG:-/var/log/lofn-dockerd.log}
cd "$ROOT"

log() { printf '[lofn setup] %s\n' "$*" >&2; }
die() { printf '[lofn setup] ERROR: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to install $*: run this script as root"
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

ensure_system_packages() {
    local missing=()
    # a JDK and Maven: the tests build a Hadoop mini cluster from Maven Central
    command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
    have_package busybox-static || missing+=(busybox-static)
    have_package debootstrap || missing+=(debootstrap)  # builds the genomics example image
    # a real registry on 127.0.0.1 for the image pull tests (never started as a service)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    have_package podman || missing+=(podman)  # lofn on Podman's Docker API (tests/cluster/test_podman.py)
    # a headless browser that opens 'lofn report' pages (tests/integration/test_report.py)
    command -v chromium >/dev/null || missing+=(chromium)
    [ -x "$BASE_PYTHON" ] || missing+=(python3)
    "$BASE_PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

ensure_venv() {
    local stamp=$VENV/.lofn-installed want
    want=$( (cat requirements.txt pyproject.toml; echo "$BASE_PYTHON") | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    if [ -e "$VENV" ] && [ "$(readlink -f "$VENV/bin/python")" != "$(readlink -f "$BASE_PYTHON")" ]; then
        log "recreating $VENV with $BASE_PYTHON"
        rm -rf "$VENV"
    fi
    [ -x "$PY" ] || { log "creating virtualenv $VENV"; "$BASE_PYTHON" -m venv "$VENV"; }
    log "installing requirements.txt and lofn into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt -e .
    echo "$want" > "$stamp"
}

# The Jupyter kernel "lofn": the virtualenv's Python, for example/lofn_tour.ipynb and its test
# (tests/acceptance/test_notebook.py). Written into the virtualenv (--sys-prefix), so a Jupyter
# started from it lists the kernel; written again only when it names another Python.
ensure_kernel() {
    local spec=$VENV/share/jupyter/kernels/lofn/kernel.json
    # the path itself, not where its symlink leads: the virtualenv is the link, not its target
    if [ -f "$spec" ] && "$PY" -c 'import json, sys
sys.exit(json.load(open(sys.argv[1]))["argv"][0] != sys.argv[2])' "$spec" "$PY" 2>/dev/null; then
        return
    fi
    log "installing the Jupyter kernel 'lofn' ($PY) into $VENV"
    # ipykernel writes the spec under a mkdtemp directory and leaves that directory behind
    local scratch
    scratch=$(mktemp -d)
    TMPDIR=$scratch "$PY" -m ipykernel install --sys-prefix --name lofn \
        --display-name "Python (lofn)" >/dev/null
    rm -rf "$scratch"
}

engine_answers() { "$PY" -c 'import docker; docker.from_env(timeout=5).ping()' 2>/dev/null; }

ensure_docker() {
    engine_answers && return
    command -v dockerd >/dev/null || apt_install docker.io
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and only root can start dockerd"
    # a daemon killed with its session leaves its pid file behind
    pgrep -x dockerd >/dev/null || rm -f /var/run/docker.pid
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # LOFN_DOCKERD_ARGS: extra flags, e.g. --iptables=false on a kernel without iptables
    # shellcheck disable=SC2086
    setsid nohup dockerd ${LOFN_DOCKERD_ARGS:-} >"$DOCKERD_LOG" 2>&1 < /dev/null &
    local pid=$!
    for _ in $(seq 1 60); do
        engine_answers && return
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    dockerd_cause
    die "dockerd did not answer within 60 s (log above: $DOCKERD_LOG)"
}

# Name the host condition behind a dockerd that would not start, when its log shows one.
dockerd_cause() {
    if grep -qiE 'iptables|nf_tables|NAT chain' "$DOCKERD_LOG"; then
        die "dockerd could not set up iptables: this kernel lacks the iptables or nf_tables" \
            "modules it needs for bridge networking; load them (modprobe ip_tables" \
            "iptable_nat) or start it without: LOFN_DOCKERD_ARGS=--iptables=false" \
            "(containers then get no outbound NAT)"
    fi
    if grep -qiE 'cgroup' "$DOCKERD_LOG"; then
        die "dockerd could not use this host's cgroups (see the log above: $DOCKERD_LOG);" \
            "grep cgroup /proc/self/mountinfo shows the layout"
    fi
    if grep -qiE 'overlay' "$DOCKERD_LOG"; then
        die "dockerd could not use the overlay filesystem (see the log above);" \
            "start it with LOFN_DOCKERD_ARGS=--storage-driver=vfs (slow, but works anywhere)"
    fi
}

# The built wheel in a fresh virtualenv, with its base dependencies only: no pyspark (an
# extra), so `import lofn` and `lofn --help` must work without it. Built from a copy of the
# sources: setuptools would otherwise reuse build/ in the checkout, stale files included.
check_wheel() (
    log "wheel: build, install into a fresh virtualenv without pyspark, import lofn, lofn --help"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/src"
    cp -r lofn pyproject.toml README.md LICENSE "$tmp/src/"
    "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$tmp/dist" "$tmp/src"
    "$BASE_PYTHON" -m venv "$tmp/venv"
    # --use-pep517: hdfs and docopt are sdists; no deprecated 'setup.py install' for them
    "$tmp/venv/bin/pip" install -q --disable-pip-version-check --use-pep517 \
        -c requirements.txt "$tmp"/dist/lofn-*.whl
    if "$tmp/venv/bin/python" -c 'import pyspark' 2>/dev/null; then
        die "the wheel's virtualenv has pyspark: the check would prove nothing"
    fi
    "$tmp/venv/bin/python" -c 'import lofn; print("import lofn:", lofn.__version__)'
    "$tmp/venv/bin/lofn" --help > "$tmp/help" || die "lofn --help failed without pyspark"
    echo "lofn --help: $(head -n 1 "$tmp/help")"
)

# ruff and mypy, configured in pyproject.toml; both run, and either failing fails the step.
lint() {
    log "lint: ruff check lofn tests; mypy"
    local failed=
    "$VENV/bin/ruff" check lofn tests || failed=1
    "$VENV/bin/mypy" || failed=1
    [ -z "$failed" ] || die "ruff or mypy found problems (above)"
}

setup() {
    ensure_system_packages
    ensure_venv
    ensure_kernel
    ensure_docker
    "$PY" scripts/build_images.py
    export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup)
        setup ;;
    example)
        setup
        input=${1:-/usr/share/common-licenses/GPL-3}
        [ -f "$input" ] || input=$ROOT/README.md
        "$VENV/bin/spark-submit" --master 'local[*]' --conf spark.log.level=ERROR example/word_count.py "$input" ;;
    test)
        setup
        log "building the docs with -W"
        "$PY" -m sphinx -W -q -b html docs docs/_build/html
        check_wheel
        lint
        log "pytest $*"
        "$PY" -m pytest "$@" ;;
    *)
        die "unknown command '$cmd': use setup, example or test" ;;
esac
