#!/usr/bin/env bash
# Builds flywheel's base image from Debian packages, for machines that reach a Debian mirror
# but no image registry (air gaps, CI runners behind a proxy). The result is a local
# python:3.11-equivalent image: Debian bookworm (glibc 2.36, python3 3.11.2, python3-venv,
# ca-certificates), nothing else. Both Dockerfiles take it with
#   flywheel image build --base-image localhost/flywheel-base:bookworm
#
# Usage (as root):  docker/bootstrap-base.sh [IMAGE] [MIRROR]
#   IMAGE   default localhost/flywheel-base:bookworm
#   MIRROR  default http://deb.debian.org/debian
# Idempotent: an existing IMAGE is kept (delete it with `podman rmi IMAGE` to rebuild).
# Needs debootstrap and podman (docker/engine-setup.sh installs both).
set -euo pipefail

IMAGE="${1:-localhost/flywheel-base:bookworm}"
MIRROR="${2:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates

if podman image exists "$IMAGE"; then
  echo "base image $IMAGE exists; kept"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root; run as root (sudo $0)" >&2; exit 1; }

ROOTFS="$(mktemp -d /var/tmp/flywheel-base.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"
# The image is a base to build on: apt's lists and caches are not needed in it.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
cat > "$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES

tar --numeric-owner -C "$ROOTFS" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$IMAGE"
podman run --rm "$IMAGE" python3 -c 'import sys, venv, ssl; print("base python", sys.version.split()[0])'
