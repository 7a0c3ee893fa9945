#!/bin/sh
# The builder stage of both images: /opt/venv with the pins IMAGE needs (/src/IMAGE.lock, a
# copy of docker/IMAGE.lock, which flywheel/image_requirements.py derives from requirements.lock),
# then flywheel itself, then the cuts that make the image small. Run by docker/Dockerfile and
# docker/Dockerfile.serving:
#   build-venv.sh deps IMAGE     (layer cached until docker/IMAGE.lock changes)
#   build-venv.sh project        (flywheel from /src)
set -eu

step="$1"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# Extra CA certificates (a corporate proxy's) dropped into docker/ca-certificates/*.crt:
# trusted by pip in this stage only; nothing of them reaches the final image.
if ls /tmp/extra-ca/*.crt >/dev/null 2>&1; then
  cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca/*.crt > /tmp/pip-ca.pem
  export PIP_CERT=/tmp/pip-ca.pem
fi

if [ "$step" = deps ]; then
  image="$2"
  # pyfarmhash (a TFDV dependency) has no wheel: its sdist needs g++ and Python's headers.
  include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  tools="g++ binutils"
  [ -f "$include/Python.h" ] || tools="$tools python3-dev"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $tools
  python3 -m venv /opt/venv
  echo "installing $(grep -c '==' "/src/$image.lock") pins for the $image image"
  # --no-deps: the lock is complete; --no-compile: .pyc files are ~0.5 GB, see benchmarks/RESULTS.md.
  /opt/venv/bin/pip install --no-deps --no-compile -r "/src/$image.lock"
  site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # C headers for building TensorFlow custom ops (0.4 GB) and the packages' own test suites.
  rm -rf "$site/tensorflow/include"
  find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -path "$site/*/*" -exec rm -rf {} +
  # TensorFlow's debug symbols (0.2 GB). Only TensorFlow's own libraries: stripping a library
  # auditwheel rewrote with patchelf (numpy.libs, scipy.libs, ...) breaks it ("ELF load command
  # address/offset not page-aligned").
  for lib in "$site"/tensorflow/libtensorflow_cc.so.2 "$site"/tensorflow/libtensorflow_framework.so.2; do
    [ ! -f "$lib" ] || strip --strip-unneeded "$lib"
  done
elif [ "$step" = project ]; then
  /opt/venv/bin/pip install --no-deps --no-build-isolation /src
  /opt/venv/bin/python -c "import flywheel.cli, flywheel.kubeflow.entrypoint"
else
  echo "usage: build-venv.sh deps IMAGE | project" >&2
  exit 2
fi
