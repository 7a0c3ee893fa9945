"""Shared fixtures: every test gets its own flywheel home."""

from __future__ import annotations

import os
import sys

import pytest

from flywheel.home import Home

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    """A fresh project home, also exported as FLYWHEEL_HOME for subprocesses."""
    root = tmp_path / "flywheel-home"
    monkeypatch.setenv("FLYWHEEL_HOME", str(root))
    return Home(str(root)).ensure()


@pytest.fixture
def flywheel_cmd() -> list[str]:
    """The CLI as a subprocess command of this interpreter."""
    return [sys.executable, "-m", "flywheel"]


@pytest.fixture(scope="session")
def s3_server() -> str:
    """An S3 API (moto in server mode) on 127.0.0.1 with an ephemeral port; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "flywheel-test-key", "AWS_SECRET_ACCESS_KEY": "flywheel-test-secret-0123"}


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, request) -> str:
    """A fresh bucket on the loopback S3 server, with the environment pointing at it; its ``s3://`` URI.

    The endpoint and credentials are exported, so subprocesses reach the same bucket.
    """
    import re
    import uuid

    import boto3

    monkeypatch.setenv("FLYWHEEL_S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{stem}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **{
        "aws_access_key_id": S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }).create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
