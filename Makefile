# The two commands of the README: `make demo` and `make test`.
# Both create .venv with Python 3.11 and install exactly requirements.lock (--no-deps:
# the lock is complete, so pip never resolves or backtracks), then the project itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock setup.py | cksum | cut -d' ' -f1)

.PHONY: install browser demo test bench clean engine base-image images image-locks

$(STAMP): requirements.lock setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "flywheel needs Python 3.11; set PYTHON=/path/to/python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/flywheel demo

# The dashboard tests drive Debian's headless Chromium through Playwright (never `playwright install`:
# it downloads a browser). Installed once; a no-op when /usr/bin/chromium exists.
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Container images, daemonless (podman/buildah; docs/containers.md). As root on Debian bookworm:
# installs and configures the engine, bootstraps the base from Debian packages (no image
# registry needed), builds both images. The engine's image store keeps every layer, so a
# rebuild after a code change reuses the dependency layers. CA_BUNDLE: certificates pip
# trusts inside the build (a proxy's CA); the host's bundle by default.
IMAGE_TAG := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' flywheel/__init__.py)
BASE_IMAGE ?= localhost/flywheel-base:bookworm
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)

engine:
	docker/engine-setup.sh

base-image: engine
	docker/bootstrap-base.sh $(BASE_IMAGE)

# Each image's pins, committed beside the Dockerfiles (flywheel/image_requirements.py); run
# after editing requirements.lock. `flywheel image build` refuses stale ones.
image-locks:
	$(PYTHON) flywheel/image_requirements.py --write requirements.lock

images: install base-image
	$(BIN)/flywheel image build --engine buildah --tag $(IMAGE_TAG) --base-image $(BASE_IMAGE) \
	  $(addprefix --ca-bundle ,$(CA_BUNDLE))

# tests/containers runs the compiled training pipeline in the images (podman), hence `images`.
test: install browser images
	$(BIN)/python -m pytest tests

bench: install
	$(BIN)/python benchmarks/orchestration_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
