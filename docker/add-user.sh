#!/bin/sh
# The final stage of both images: the flywheel user (fixed numeric uid = gid, no login, no
# password) and the directories it owns.  Usage: add-user.sh UID [EXTRA_DIR...]
set -eu
uid="$1"; shift
groupadd --system --gid "$uid" flywheel
useradd --system --uid "$uid" --gid "$uid" --home-dir /var/lib/flywheel --no-create-home \
  --shell /usr/sbin/nologin flywheel
mkdir -p /var/lib/flywheel "$@"
chown "$uid:$uid" /var/lib/flywheel
chmod 1777 /tmp
