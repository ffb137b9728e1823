#!/usr/bin/env bash
# Build the aligner image lofn/aligner:bookworm locally, without a registry.
#
#   bash example/advanced/build_image.sh [--force]
#
# A Debian bookworm root filesystem made with
#   debootstrap --variant=minbase --include=samtools,minimap2,bwa bookworm
# is streamed as a tar archive into the Docker engine through the Docker SDK
# (the equivalent of `tar -C rootfs -c . | docker import - lofn/aligner:bookworm`).
# Nothing is done when the image exists, unless --force is given. Needs root
# (debootstrap, which is installed with apt-get when missing) and network
# access to a Debian mirror (LOFN_DEBIAN_MIRROR, default deb.debian.org).
# The root filesystem's temp directory is removed on every exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
IMAGE=${LOFN_ALIGNER_IMAGE:-lofn/aligner:bookworm}
MIRROR=${LOFN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=samtools,minimap2,bwa
PY=${LOFN_VENV:-$ROOT/.venv}/bin/python

log() { printf '[build_image] %s\n' "$*" >&2; }
die() { printf '[build_image] ERROR: %s\n' "$*" >&2; exit 1; }

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (use --force)" ;;
    esac
done

[ -x "$PY" ] || die "$PY is missing: run 'bash scripts/dev.sh setup' first"

image_exists() {
    "$PY" - "$IMAGE" <<'EOF'
import sys

import docker

try:
    docker.from_env().images.get(sys.argv[1])
except docker.errors.ImageNotFound:
    sys.exit(1)
EOF
}

if [ "$force" -eq 0 ] && image_exists; then
    log "$IMAGE exists (use --force to rebuild)"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run this script as root"
if ! command -v debootstrap >/dev/null; then
    log "apt-get install debootstrap"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

start=$(date +%s.%N)
work=$(mktemp -d "${TMPDIR:-/tmp}/aligner-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

log "debootstrap --variant=minbase --include=$PACKAGES $SUITE ($MIRROR)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
# what an image does not need: downloaded packages, package lists, logs
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/var/log/* "$rootfs"/debootstrap
boot=$(date +%s.%N)

log "importing the root filesystem as $IMAGE"
# the Python program is an argument: its standard input is the tar stream
import_program=$(cat <<'EOF'
import sys

import docker

image = sys.argv[1]
repository, _, tag = image.rpartition(":")


def chunks(stream=sys.stdin.buffer, size=1 << 20):
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


client = docker.from_env(timeout=600)
# POST /images/create?fromSrc=- with the tar stream as the body: `docker import`
client.api.import_image_from_stream(
    chunks(), repository=repository, tag=tag,
    changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LABEL org.lofn.image=aligner", 'CMD ["/bin/bash"]'])
client.images.get(image)  # raises if the import did not produce it
EOF
)
tar --numeric-owner -C "$rootfs" -c . | "$PY" -c "$import_program" "$IMAGE"
end=$(date +%s.%N)

versions=$("$PY" - "$IMAGE" <<'EOF' || die "$IMAGE does not run minimap2, samtools and bwa"
import sys

import docker

out = docker.from_env().containers.run(
    sys.argv[1], ["sh", "-c", "minimap2 --version; samtools --version | head -n 1;"
                  " bwa 2>&1 | grep Version"], remove=True)
print(" ".join(out.decode().split()))
EOF
)
log "built $IMAGE ($versions)"
awk -v a="$start" -v b="$boot" -v c="$end" 'BEGIN {
    printf "[build_image] debootstrap %.0f s, import %.0f s, total %.0f s\n", b - a, c - b, c - a }' >&2
