"""Hot reload under load, graceful shutdown on SIGTERM, and the CLI's options."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import threading
import time

import pytest

from flywheel.serving.errors import ServingError
from flywheel.serving.background import BackgroundServer
from flywheel.serving.server import ServeConfig
from tests.serving.conftest import PENGUIN, call, push_copy, start_serve_cli


def test_hot_reload_under_load_loses_no_request(registry_with_model, trained_model_dir):
    registry, home = registry_with_model
    config = ServeConfig(registry=registry.root, home=home, port=0, poll_seconds=0.05, max_wait_ms=2.0)
    results: list[tuple[float, int, int | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    with BackgroundServer(config) as background:
        url = f"{background.url}/v1/models/penguins:predict"

        def client():
            while not stop.is_set():
                status, body, _ = call(url, {"instances": [PENGUIN]})
                with lock:
                    results.append((time.monotonic(), status, body.get("model_version") if status == 200 else None))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        version = push_copy(registry, trained_model_dir, "reload")
        registry.set_serving("penguins", version, reason="test push")
        swapped_by = time.monotonic()
        deadline = swapped_by + 60
        while background.server.store.serving().version != version and time.monotonic() < deadline:
            time.sleep(0.02)
        swapped = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        metrics_version = background.server.metrics.sample("flywheel_serving_model_version", {"model": "penguins"})

    assert background.server.store.serving().version == version == 2
    assert len(results) > 50
    assert [s for _, s, _ in results if s != 200] == []  # every request during the swap answered
    before = {v for t, _, v in results if t < swapped_by}
    after = [v for t, _, v in results if t > swapped + 0.3]  # margin: requests already in flight at the swap
    assert before == {1}
    assert after and set(after) == {2}  # once swapped, requests see the new version
    assert metrics_version == 2


def test_rollback_of_the_alias_is_picked_up(registry_with_model, trained_model_dir):
    registry, home = registry_with_model
    version = push_copy(registry, trained_model_dir, "rollback")
    registry.set_serving("penguins", version)
    config = ServeConfig(registry=registry.root, home=home, port=0, poll_seconds=0.05)
    with BackgroundServer(config) as background:
        assert call(f"{background.url}/readyz")[1]["version"] == version
        registry.set_serving("penguins", 1, reason="rollback")
        deadline = time.monotonic() + 30
        while background.server.store.serving().version != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        _, body, _ = call(f"{background.url}/v1/models/penguins:predict", {"instances": [PENGUIN]})
    assert body["model_version"] == 1


def _wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_the_watch_thread_survives_a_damaged_alias_and_model_json(registry_with_model, trained_model_dir):
    registry, home = registry_with_model
    broken = push_copy(registry, trained_model_dir, "broken")
    with open(os.path.join(registry.version_dir("penguins", broken), "model.json"), "w") as f:
        f.write("[]")
    good = push_copy(registry, trained_model_dir, "good")
    alias = os.path.join(registry.model_dir("penguins"), "serving.json")
    config = ServeConfig(registry=registry.root, home=home, port=0, poll_seconds=0.05)
    with BackgroundServer(config) as background:
        errors = lambda: background.server.metrics.sample(  # noqa: E731
            "flywheel_serving_reload_errors_total", {"model": "penguins"}
        )
        with open(alias, "w") as f:
            f.write('{"version": null}')
        assert _wait_for(lambda: errors() >= 1)
        registry.set_serving("penguins", broken)
        assert _wait_for(lambda: errors() >= 2)
        assert background.server._watcher.is_alive()  # noqa: SLF001
        assert call(f"{background.url}/readyz")[1]["version"] == 1
        registry.set_serving("penguins", good, reason="rollback to a good version")
        assert _wait_for(lambda: background.server.store.serving().version == good)
        _, text, _ = call(f"{background.url}/metrics")
    assert 'flywheel_serving_reloads_total{model="penguins"} 2.0' in text
    assert re.search(r'flywheel_serving_reload_errors_total\{model="penguins"\} [2-9]', text)


def test_sigterm_finishes_in_flight_requests_then_exits_0(registry_with_model):
    registry, home = registry_with_model
    process, port, lines = start_serve_cli(registry.root, home)
    body = json.dumps({"instances": [PENGUIN]}).encode()
    head = (
        f"POST /v1/models/penguins:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        # A slow client: the server is handling this request (reading its body) when SIGTERM arrives.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(head + body[:10])
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while True:  # the listener closes soon after SIGTERM: no new connections
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                except OSError:
                    break
                if time.monotonic() > deadline:
                    pytest.fail("the server still accepts connections 15 s after SIGTERM")
                time.sleep(0.05)
            slow.sendall(body[10:])
            answer = slow.makefile("rb").read()
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", answer
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["model_version"] == 1
    assert process.returncode == 0, "".join(lines) + out
    assert "Shutting down" in out and "Stopped" in out


def _parse(argv):
    from flywheel.cli import serve_commands

    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    serve_commands.register(parser.add_subparsers(dest="command"))
    return serve_commands.config_from_args(parser.parse_args(argv))


def test_cli_defaults_bind_loopback_and_use_the_home_registry(tmp_path):
    config = _parse(["--home", str(tmp_path), "serve"])
    assert config.host == "127.0.0.1" and config.port == 8501 and config.batching
    assert config.registry == os.path.join(str(tmp_path), "registry") and config.home == str(tmp_path)
    assert not _parse(["--home", str(tmp_path), "serve", "--no-batching"]).batching


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--log-sample-rate", "1.5"], "'log_sample_rate' serving option must be in [0, 1]. Got 1.5"),
        (["--max-batch-size", "0"], "'max_batch_size' serving option must be >= 1"),
        (["--max-body-bytes", "10"], "'max_body_bytes' serving option must be >= 1024"),
    ],
)
def test_cli_rejects_options_out_of_range(tmp_path, option, message):
    with pytest.raises(ServingError, match=re.escape(message)):
        _parse(["--home", str(tmp_path), "serve", *option])


def test_cli_reports_a_taken_port_as_one_line(registry_with_model):
    registry, home = registry_with_model
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        config = ServeConfig(registry=registry.root, home=home, port=port)
        with pytest.raises(ServingError, match=f"Cannot listen on 127.0.0.1:{port}"):
            BackgroundServer(config).start()


def test_evicted_versions_are_freed_after_a_swap(registry_with_model, trained_model_dir):
    import weakref

    registry, home = registry_with_model
    config = ServeConfig(registry=registry.root, home=home, port=0, poll_seconds=0.05, max_loaded_versions=1)
    with BackgroundServer(config) as background:
        first = weakref.ref(background.server.store.serving())
        registry.set_serving("penguins", push_copy(registry, trained_model_dir, "evict"))
        deadline = time.monotonic() + 30
        while background.server.store.serving().version == 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert background.server.store.serving().version == 2
        assert [e["version"] for e in background.server.store.status()] == ["2"]
        deadline = time.monotonic() + 30
        while first() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first() is None  # version 1 was dropped and its memory reclaimed, not frozen forever
