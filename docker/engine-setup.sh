#!/usr/bin/env bash
# Installs and configures the daemonless container engine CI (and a user without Docker)
# builds and runs flywheel's images with: Debian's podman, buildah, runc and debootstrap.
#
# Usage (as root, on Debian bookworm):  docker/engine-setup.sh
# Idempotent: installs only what is missing; writes /etc/containers/containers.conf.d/flywheel.conf.
#
# Why the configuration: on hosts where the kernel refuses raising rlimits inside user
# namespaces (CI sandboxes), crun and podman's default ulimits fail with EPERM. runc with
# explicit ulimits works there and everywhere else.
set -euo pipefail

CONF=/etc/containers/containers.conf.d/flywheel.conf
missing=()
for tool in podman buildah runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" = 0 ] && [ -f "$CONF" ]; then
  echo "podman, buildah, runc, debootstrap installed; $CONF present"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "error: installing ${missing[*]:-the engine configuration} needs root; run as root (sudo $0)" >&2; exit 1; }

if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    podman buildah runc debootstrap uidmap fuse-overlayfs ca-certificates
fi

mkdir -p /etc/containers/containers.conf.d
cat > "$CONF" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
echo "podman $(podman --version | awk '{print $3}'), buildah $(buildah --version | awk '{print $3}'), runtime runc"
