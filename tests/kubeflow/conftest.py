"""Fixtures: the fake KFP v2beta1 API server (tests/kfp_fake.py) and a closed port."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.kfp_fake import PREFIX, FakeKfpServer, FakeKfpState, Recorded

__all__ = ["PREFIX", "FakeKfpServer", "FakeKfpState", "Recorded", "closed_port_url", "kfp_server"]


@pytest.fixture
def kfp_server(tmp_path, monkeypatch) -> Iterator[FakeKfpServer]:
    """A fake KFP API; kfp.Client's context file is redirected so the user's is never read."""
    from kfp.client import client as kfp_client_module

    monkeypatch.setattr(kfp_client_module.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with FakeKfpServer() as server:
        yield server


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
