#!/usr/bin/env bash
# Make this machine able to run the container test (idempotent, safe to run every time):
#   1. podman, runc and debootstrap from Debian's packages (apt-get only when one is missing);
#   2. the base image localhost/base: a Debian bookworm (python3 = 3.11) made by debootstrap,
#      cached as a tarball under $SSD_SAGEMAKER_CACHE (default ~/.cache/ssd-sagemaker) so a
#      machine whose podman storage was wiped re-imports it in seconds instead of ~40 s.
# Needs root (apt-get, debootstrap, rootful podman). Exits 3 when it cannot run here at all.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-localhost/base}"
CACHE="${SSD_SAGEMAKER_CACHE:-$HOME/.cache/ssd-sagemaker}"
TARBALL="$CACHE/debian-bookworm-minbase.tar.gz"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { echo "prepare.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "cannot run: not root (apt-get, debootstrap and rootful podman need root)"
    exit 3
fi

missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get > /dev/null; then
        log "cannot run: ${missing[*]} missing and no apt-get to install them"
        exit 3
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq podman runc debootstrap > /dev/null
fi

if podman image exists "$BASE_IMAGE"; then
    log "$BASE_IMAGE present"
    exit 0
fi

mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
    root="$(mktemp -d /var/tmp/ssd-sagemaker-base.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    log "debootstrap bookworm into $root (about 40 s)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # What debootstrap downloaded is not part of the system: keep the base small.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -czf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
fi
log "importing $TARBALL as $BASE_IMAGE"
podman import --quiet "$TARBALL" "$BASE_IMAGE" > /dev/null
log "$BASE_IMAGE ready"
