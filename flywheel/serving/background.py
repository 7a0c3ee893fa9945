"""A ``ModelServer`` on its own event loop in a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from flywheel.serving.config import ServeConfig
from flywheel.serving.server import ModelServer


class BackgroundServer:
    """A ``ModelServer`` on its own event loop in a thread (tests, benchmarks).

    Use as a context manager; ``url`` is ``http://host:port``.

    Args:
        config: The server configuration (``port=0`` picks a free port).
        ready_timeout: Seconds to wait for the first version to load.
    """

    def __init__(self, config: ServeConfig, *, ready_timeout: float = 120.0) -> None:
        self.config = config
        self.ready_timeout = ready_timeout
        self.server: ModelServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flywheel-serve-loop", daemon=True)

    @property
    def url(self) -> str:
        assert self.server is not None and self.server.port is not None
        return f"http://{self.config.host}:{self.server.port}"

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC API (for ``grpc.insecure_channel``); needs ``config.grpc_port`` set."""
        assert self.server is not None and self.server.grpc_port is not None
        return f"{self.config.host}:{self.server.grpc_port}"

    def start(self) -> BackgroundServer:
        self._thread.start()

        async def boot() -> None:
            self.server = ModelServer(self.config)
            await self.server.start()
            await self.server.wait_ready(self.ready_timeout)

        try:
            asyncio.run_coroutine_threadsafe(boot(), self._loop).result()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
