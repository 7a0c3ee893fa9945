"""Who may call the API (Host, Origin, content type), the logs switch, timeouts and log retention."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time

import pytest

from flywheel.serving.guard import host_allowed, origin_allowed
from flywheel.serving.logs import JsonlWriter
from tests.serving.conftest import PENGUIN, call, serving_one_version


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, trained_model_dir):
    """A server with the default access rules, short timeouts, and one extra allowed host and origin."""
    with serving_one_version(
        tmp_path_factory.mktemp("guarded"),
        trained_model_dir,
        allowed_hosts=("localhost", "serving.internal"),
        allowed_origins=("https://app.example.com",),
        idle_timeout_s=0.6,
        body_timeout_s=0.6,
    ) as background:
        yield background


def _raw(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for key, value in headers.items():
        connection.putheader(key, value)
    if body:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body or None)
    response = connection.getresponse()
    status, text = response.status, response.read().decode()
    connection.close()
    return status, json.loads(text)


PREDICT = "/v1/models/penguins:predict"
FEEDBACK = "/v1/models/penguins:feedback"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8501", 200),
        ("localhost", 200),
        ("[::1]:8501", 200),
        ("10.1.2.3", 200),  # an IP literal cannot be rebound
        ("SERVING.internal:8501", 200),
        ("evil.example", 421),
        ("localhost.evil.example", 421),
        ("", 421),
    ],
)
def test_the_host_header_must_name_this_server(guarded, host, status):
    body = json.dumps({"instances": [PENGUIN]}).encode()
    got, answer = _raw(guarded.server.port, "POST", PREDICT, {"Host": host, "Content-Type": "application/json"}, body)
    assert got == status, answer
    if status == 421:
        assert "does not answer for Host" in answer["error"] and "--allowed-host" in answer["error"]


def test_probes_answer_any_host(guarded):
    assert _raw(guarded.server.port, "GET", "/readyz", {"Host": "10.0.0.7:8501"})[0] == 200
    assert _raw(guarded.server.port, "GET", "/healthz", {"Host": "pod-name"})[0] == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://localhost:3000", 200),
        ("http://127.0.0.1:8080", 200),
        ("https://app.example.com", 200),
        ("https://evil.example", 403),
        ("null", 403),
        ("https://app.example.com.evil.example", 403),
    ],
)
def test_cross_site_browser_requests_are_refused(guarded, origin, status):
    got, answer, _ = call(f"{guarded.url}{PREDICT}", {"instances": [PENGUIN]}, headers={"Origin": origin})
    assert got == status, answer
    if status == 403:
        assert "Cross-site requests" in answer["error"] and "--allowed-origin" in answer["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_feedback_needs_a_json_content_type(guarded, content_type):
    body = json.dumps({"request_id": "r1", "labels": ["Adelie"]}).encode()
    status, answer, _ = call(f"{guarded.url}{FEEDBACK}", body, headers={"Content-Type": content_type})
    assert status == 415 and "Content-Type: application/json" in answer["error"] and content_type in answer["error"]
    _, predicted, _ = call(f"{guarded.url}{PREDICT}", {"instances": [PENGUIN]})
    status, answer, _ = call(f"{guarded.url}{FEEDBACK}", {"request_id": predicted["request_id"], "labels": ["Adelie"]})
    assert status == 200 and answer["recorded"] == 1


def test_the_logs_endpoint_is_off_unless_enabled(guarded):
    call(f"{guarded.url}{PREDICT}", {"instances": [PENGUIN]})
    status, answer, _ = call(f"{guarded.url}/v1/models/penguins/logs/requests")
    assert status == 404 and "--enable-logs-endpoint" in answer["error"]


def test_an_idle_or_trickling_connection_is_closed(guarded):
    for opening in (b"", b"POST /v1/models/penguins:predict HTTP/1.1\r\nHost: local"):
        sock = socket.create_connection(("127.0.0.1", guarded.server.port), timeout=10)
        sock.sendall(opening)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, not by the 10 s client timeout
        assert time.monotonic() - started < 8
        sock.close()


def test_a_body_that_never_finishes_is_408(guarded):
    sock = socket.create_connection(("127.0.0.1", guarded.server.port), timeout=10)
    sock.sendall(
        b"POST /v1/models/penguins:predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{\"instances\": ["
    )
    reply = sock.recv(4096).decode()
    sock.close()
    assert reply.startswith("HTTP/1.1 408") and "did not arrive within 0.6 s" in reply


def test_guard_rules_directly():
    assert host_allowed("LOCALHOST:80", ("localhost",)) and host_allowed("anything", ("*",))
    assert not host_allowed(None, ("localhost",)) and not host_allowed("rebind.example", ("localhost",))
    assert origin_allowed(None, ()) and origin_allowed("http://[::1]:9000", ())
    assert not origin_allowed("file://", ()) and not origin_allowed("javascript:alert(1)", ())


def _fill(writer: JsonlWriter, lines: int) -> None:
    for _ in range(lines):
        writer.write([{"ts": time.time(), "pad": "x" * 200}])


def test_log_retention_bounds_the_directory_by_size(tmp_path):
    writer = JsonlWriter(str(tmp_path), max_bytes=2000, retention_bytes=5000)
    _fill(writer, 200)  # ~45 kB written in ~2 kB files
    writer.close()
    files = sorted(os.listdir(tmp_path))
    total = sum(os.path.getsize(tmp_path / f) for f in files)
    assert total <= 5000 + 2300  # the limit over closed files, plus the open one
    assert writer.deleted_files >= 15
    newest = [json.loads(line) for line in open(tmp_path / files[-1], encoding="utf-8")]
    assert newest  # the newest lines survive


def test_log_retention_deletes_files_past_their_age(tmp_path):
    old = tmp_path / "20200101-000000-0000001-0000.jsonl"
    old.write_text('{"ts": 1}\n')
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    recent = tmp_path / "20200102-000000-0000001-0000.jsonl"
    recent.write_text('{"ts": 2}\n')
    writer = JsonlWriter(str(tmp_path), max_bytes=10_000, retention_s=86400)
    _fill(writer, 1)
    writer.close()
    assert not old.exists() and recent.exists() and len(os.listdir(tmp_path)) == 2


def test_no_retention_limit_deletes_nothing(tmp_path):
    writer = JsonlWriter(str(tmp_path), max_bytes=2000)
    _fill(writer, 100)
    writer.close()
    assert writer.deleted_files == 0 and sum(os.path.getsize(tmp_path / f) for f in os.listdir(tmp_path)) > 20000


def test_a_remote_monitor_is_told_to_enable_the_logs_endpoint(guarded):
    from flywheel.monitoring.monitor import HttpLogSource, LogSourceError

    with pytest.raises(LogSourceError, match="--enable-logs-endpoint"):
        HttpLogSource(guarded.url).requests("penguins", 0.0)
