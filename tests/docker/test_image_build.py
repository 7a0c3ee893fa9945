"""flywheel.images and `flywheel image build`, without a Docker engine.

The "no engine" tests point DOCKER_HOST at a local unix socket nobody listens on, so
the outcome is the same on every machine. The build/push logic runs against a small
fake of the Docker SDK's low-level API.
"""

from __future__ import annotations

import argparse
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from flywheel import images
from flywheel.cli import image_commands
from flywheel.errors import FlywheelError

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def docker_engine_selected(monkeypatch):
    """engine="auto" means Docker in these tests (DOCKER_HOST set), whatever the machine has."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


@pytest.fixture
def closed_socket(tmp_path, monkeypatch):
    """DOCKER_HOST at a bound unix socket that never listens (connections are refused)."""
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield f"unix://{path}"
    sock.close()


def test_without_an_engine_build_fails_fast_with_one_clear_line(closed_socket):
    start = time.monotonic()
    with pytest.raises(images.DockerUnavailableError) as info:
        images.build_images(REPO, tag="0.1.0")
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"took {elapsed:.1f}s to notice there is no engine"
    message = str(info.value)
    assert message.startswith(f"No Docker engine reachable at {closed_socket}: ")
    assert message.endswith("start Docker or set DOCKER_HOST.")
    assert "refused" in message.lower()
    assert "\n" not in message
    assert isinstance(info.value, FlywheelError)


def test_a_missing_socket_is_reported_the_same_way(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing-here.sock")
    with pytest.raises(images.DockerUnavailableError, match="No Docker engine reachable at unix://"):
        images.build_images(REPO, tag="0.1.0", which=("serving",))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"tag": "0.1.0", "which": ("gpu",)}, "must name images among"),
        ({"tag": "0.1.0", "which": ()}, "must name images among"),
        ({"tag": "bad tag"}, "Got 'bad tag' instead"),
        ({"tag": "-x"}, "Got '-x' instead"),
        ({"tag": "0.1.0", "push": True}, "Pass --repository"),
        ({"tag": "0.1.0", "repository": "Registry.Example.com/ML"}, "lower-case"),
    ],
)
def test_bad_arguments_are_rejected_before_docker_is_contacted(monkeypatch, kwargs, expected):
    def fail_connect(**_):
        raise AssertionError("docker contacted before the arguments were checked")

    monkeypatch.setattr(images, "connect", fail_connect)
    with pytest.raises(images.ImageError, match=expected):
        images.build_images(REPO, **kwargs)


def test_a_context_without_the_dockerfiles_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "connect", lambda **_: pytest.fail("docker contacted"))
    with pytest.raises(images.ImageError, match="must hold docker/Dockerfile"):
        images.build_images(tmp_path, tag="0.1.0")


class FakeAPI:
    """The two calls of docker.APIClient that build_images uses, with canned streams."""

    def __init__(self, build_streams=None, push_streams=None):
        self.build_streams = build_streams or {}
        self.push_streams = push_streams or {}
        self.builds: list[dict] = []
        self.pushes: list[tuple[str, str]] = []

    def build(self, **kwargs):
        self.builds.append(kwargs)
        return iter(self.build_streams.get(kwargs["tag"], [{"stream": "Step 1/1 : FROM x\n"}]))

    def push(self, repository, tag=None, stream=False, decode=False):
        assert stream and decode
        self.pushes.append((repository, tag))
        return iter(self.push_streams.get(repository, [{"status": "Pushed", "id": "abc"}]))


class FakeClient:
    def __init__(self, api):
        self.api = api


def test_builds_both_images_in_order_and_streams_progress(monkeypatch):
    api = FakeAPI(build_streams={
        "flywheel:1.2.3": [{"stream": "Step 1/2 : FROM python\n"}, {"stream": "\n"},
                           {"aux": {"ID": "sha256:aa"}}, {"stream": "Successfully tagged flywheel:1.2.3\n"}],
    })
    monkeypatch.setattr(images, "connect", lambda **_: FakeClient(api))
    lines: list[str] = []
    refs = images.build_images(REPO, tag="1.2.3", progress=lines.append)
    assert refs == ["flywheel:1.2.3", "flywheel-serving:1.2.3"]
    assert [(b["tag"], b["dockerfile"]) for b in api.builds] == [
        ("flywheel:1.2.3", "docker/Dockerfile"), ("flywheel-serving:1.2.3", "docker/Dockerfile.serving")
    ]
    assert all(b["path"] == str(REPO) and b["decode"] for b in api.builds)
    assert lines[:4] == [
        "Building flywheel:1.2.3 from docker/Dockerfile with docker",
        "Step 1/2 : FROM python",
        "image id sha256:aa",
        "Successfully tagged flywheel:1.2.3",
    ]
    assert api.pushes == []


def test_push_uses_the_repository_prefix(monkeypatch):
    api = FakeAPI()
    monkeypatch.setattr(images, "connect", lambda **_: FakeClient(api))
    lines: list[str] = []
    refs = images.build_images(
        REPO, tag="0.1.0", push=True, which=("serving",), repository="reg.example.com:5000/ml/",
        progress=lines.append,
    )
    assert refs == ["reg.example.com:5000/ml/flywheel-serving:0.1.0"]
    assert api.pushes == [("reg.example.com:5000/ml/flywheel-serving", "0.1.0")]
    assert "abc: Pushed" in lines


def test_a_failing_build_step_raises_with_the_engine_message_and_context(monkeypatch):
    api = FakeAPI(build_streams={"flywheel:0.1.0": [
        {"stream": "Step 5/9 : RUN pip install --no-deps -r /tmp/runtime.lock\n"},
        {"error": "x", "errorDetail": {"message": "The command returned a non-zero code: 1"}},
    ]})
    monkeypatch.setattr(images, "connect", lambda **_: FakeClient(api))
    with pytest.raises(images.ImageError) as info:
        images.build_images(REPO, tag="0.1.0", progress=lambda line: None)
    assert str(info.value) == (
        "Building flywheel:0.1.0 from docker/Dockerfile failed at Step 5/9 : RUN pip install --no-deps -r "
        "/tmp/runtime.lock: The command returned a non-zero code: 1"
    )
    assert len(api.builds) == 1, "the serving image must not be built after a failure"


def test_a_refused_push_says_how_to_fix_it(monkeypatch):
    api = FakeAPI(push_streams={"reg.example.com/ml/flywheel": [{"error": "denied", "errorDetail": {"message": "denied: requested access to the resource is denied"}}]})
    monkeypatch.setattr(images, "connect", lambda **_: FakeClient(api))
    with pytest.raises(images.ImageError, match=r"Pushing reg.example.com/ml/flywheel:0.1.0 failed: denied.*docker login"):
        images.build_images(REPO, tag="0.1.0", push=True, which=("component",),
                            repository="reg.example.com/ml", progress=lambda line: None)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="flywheel")
    image_commands.register(root.add_subparsers(dest="command"))
    return root


def test_cli_image_build_only_serving(monkeypatch, capsys):
    api = FakeAPI()
    monkeypatch.setattr(images, "connect", lambda **_: FakeClient(api))
    args = parser().parse_args(["image", "build", "--only", "serving", "--tag", "2.0.0", "--context", str(REPO)])
    assert args.handler(args) == 0
    assert [b["tag"] for b in api.builds] == ["flywheel-serving:2.0.0"]
    assert "Built flywheel-serving:2.0.0" in capsys.readouterr().out


def test_cli_defaults_to_both_images_at_the_package_version():
    from flywheel import __version__

    args = parser().parse_args(["image", "build"])
    assert (args.tag, args.only, args.push, args.repository) == (__version__, None, False, "")
    with pytest.raises(SystemExit):
        parser().parse_args(["image", "build", "--only", "gpu"])


def test_cli_without_an_engine_raises_a_flywheel_error(closed_socket):
    args = parser().parse_args(["image", "build", "--context", str(REPO)])
    with pytest.raises(FlywheelError, match="No Docker engine reachable"):
        args.handler(args)


def test_cli_rejects_a_missing_context(tmp_path):
    args = parser().parse_args(["image", "build", "--context", str(tmp_path / "nope")])
    with pytest.raises(FlywheelError, match="--context must be an existing directory"):
        args.handler(args)


def test_importing_the_image_modules_does_not_import_docker():
    code = (
        "import sys, flywheel.images, flywheel.cli.image_commands; "
        "sys.exit(1 if 'docker' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _context(tmp_path):
    for name in ("docker/Dockerfile", "docker/Dockerfile.serving", "docker/component.lock", "docker/serving.lock",
                 "requirements.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO / name).read_text())
    return tmp_path


def test_image_pins_that_no_longer_match_the_lock_are_refused_before_any_engine_runs(tmp_path, monkeypatch):
    context = _context(tmp_path / "repo")
    lock = context / "requirements.lock"
    lock.write_text(lock.read_text().replace("\nnumpy==", "\nnumpy==0.0.1\n# was numpy=="))
    monkeypatch.setattr(images, "connect", lambda **_: pytest.fail("docker contacted"))
    with pytest.raises(images.ImageError, match=r"docker/component.lock and docker/serving.lock no longer match "
                                                r"requirements.lock .* run `make image-locks`"):
        images.build_images(context, tag="0.1.0")


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_base_image_build_args_and_ca_bundle_reach_the_build(tmp_path, monkeypatch):
    context = _context(tmp_path / "repo")
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text(PEM)
    seen: list[list[str]] = []

    class RecordingAPI(FakeAPI):
        def build(self, **kwargs):
            seen.append(sorted(p.name for p in (context / "docker" / "ca-certificates").glob("*.crt")))
            return super().build(**kwargs)

    api = RecordingAPI()
    monkeypatch.setattr(images, "connect", lambda **_: FakeClient(api))
    options = images.BuildOptions(
        base_image="localhost/flywheel-base:bookworm", build_args={"http_proxy": "http://proxy:3128"},
        ca_bundles=(str(bundle),),
    )
    images.build_images(context, tag="0.1.0", which=("component",), options=options, progress=lambda line: None)
    assert api.builds[0]["buildargs"] == {"http_proxy": "http://proxy:3128", "BASE_IMAGE": "localhost/flywheel-base:bookworm"}
    assert seen == [["flywheel-build-0.crt"]], "the CA bundle is in the context while the image builds"
    assert not list((context / "docker" / "ca-certificates").glob("*.crt")), "and gone afterwards"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (images.BuildOptions(engine="rkt"), "engine must be one of"),
        (images.BuildOptions(build_args={"BAD-NAME": "x"}), "Got name 'BAD-NAME'"),
        (images.BuildOptions(ca_bundles=("/nonexistent/ca.pem",)), "cannot be read"),
    ],
)
def test_bad_build_options_are_rejected_before_any_engine_runs(monkeypatch, options, expected):
    monkeypatch.setattr(images, "connect", lambda **_: pytest.fail("engine contacted"))
    with pytest.raises(images.ImageError, match=expected):
        images.build_images(REPO, tag="0.1.0", options=options)


def test_a_ca_bundle_without_certificates_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "connect", lambda **_: pytest.fail("engine contacted"))
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(images.ImageError, match="holds none"):
        images.build_images(REPO, tag="0.1.0", options=images.BuildOptions(ca_bundles=(str(tmp_path / "empty.pem"),)))


FAKE_BUILDAH = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls.log"
echo "STEP 1/3: FROM localhost/flywheel-base:bookworm AS builder"
echo "STEP 2/3: RUN /src/build-venv.sh deps component"
if [ -n "$FAIL" ]; then
  echo "ERROR: Could not find a version that satisfies the requirement pyfarmhash==0.3.2"
  echo 'error building at STEP "RUN /src/build-venv.sh deps component": exit status 1' 
  exit 1
fi
echo "STEP 3/3: COPY --from=builder /opt/venv /opt/venv"
"""


@pytest.fixture
def fake_buildah(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "buildah").write_text(FAKE_BUILDAH)
    (bin_dir / "buildah").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setattr(images, "DEFAULT_DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    return bin_dir / "calls.log"


def test_buildah_builds_daemonless_with_layers_and_build_args(fake_buildah, monkeypatch):
    lines: list[str] = []
    options = images.BuildOptions(base_image="localhost/flywheel-base:bookworm")  # engine auto -> buildah
    refs = images.build_images(REPO, tag="0.1.0", options=options, progress=lines.append)
    assert refs == ["flywheel:0.1.0", "flywheel-serving:0.1.0"]
    calls = fake_buildah.read_text().splitlines()
    assert calls == [
        f"bud --isolation chroot --layers -f docker/Dockerfile -t flywheel:0.1.0 --build-arg BASE_IMAGE=localhost/flywheel-base:bookworm {REPO}",
        f"bud --isolation chroot --layers -f docker/Dockerfile.serving -t flywheel-serving:0.1.0 --build-arg BASE_IMAGE=localhost/flywheel-base:bookworm {REPO}",
    ]
    assert "Building flywheel:0.1.0 from docker/Dockerfile with buildah" in lines
    assert "STEP 3/3: COPY --from=builder /opt/venv /opt/venv" in lines


def test_a_failed_buildah_step_is_reported_in_one_line(fake_buildah, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(images.ImageError) as info:
        images.build_images(REPO, tag="0.1.0", progress=lambda line: None)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "Building flywheel:0.1.0 from docker/Dockerfile failed at STEP 2/3: RUN /src/build-venv.sh deps component: "
    )
    assert message.endswith('error building at STEP "RUN /src/build-venv.sh deps component": exit status 1')
    assert len(fake_buildah.read_text().splitlines()) == 1, "the serving image is not built after a failure"


def test_auto_without_any_engine_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(images, "DEFAULT_DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(images.DockerUnavailableError, match="neither buildah nor podman on PATH"):
        images.build_images(REPO, tag="0.1.0")


def test_cli_passes_base_image_build_args_and_ca_bundles(monkeypatch, tmp_path):
    captured = {}
    monkeypatch.setattr(images, "build_images", lambda context, **kwargs: captured.update(kwargs) or ["flywheel:0.1.0"])
    args = parser().parse_args([
        "image", "build", "--engine", "podman", "--base-image", "localhost/flywheel-base:bookworm",
        "--build-arg", "PIP_INDEX_URL=https://mirror/simple", "--ca-bundle", "/etc/proxy.pem", "--context", str(REPO),
    ])
    assert args.handler(args) == 0
    assert captured["options"] == images.BuildOptions(
        engine="podman", base_image="localhost/flywheel-base:bookworm",
        build_args={"PIP_INDEX_URL": "https://mirror/simple"}, ca_bundles=("/etc/proxy.pem",),
    )
    bad = parser().parse_args(["image", "build", "--build-arg", "NOVALUE", "--context", str(REPO)])
    with pytest.raises(FlywheelError, match="--build-arg must be NAME=VALUE"):
        bad.handler(bad)
