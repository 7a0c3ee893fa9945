"""Fixtures: the fake KFP v2beta1 API server (tests/kfp_fake.py); closed_port_url is in tests/conftest.py."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.kfp_fake import PREFIX, FakeKfpServer, FakeKfpState, Recorded

__all__ = ["PREFIX", "FakeKfpServer", "FakeKfpState", "Recorded", "kfp_server"]


@pytest.fixture
def kfp_server(tmp_path, monkeypatch) -> Iterator[FakeKfpServer]:
    """A fake KFP API; kfp.Client's context file is redirected so the user's is never read."""
    from kfp.client import client as kfp_client_module

    monkeypatch.setattr(kfp_client_module.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with FakeKfpServer() as server:
        yield server

