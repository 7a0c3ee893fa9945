"""Alert rules files: validation messages, the documented example, and the sinks."""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from flywheel.monitoring.rules import RuleError, load_rules, notify, parse_duration, parse_rules
from flywheel.monitoring.store import Alert
from tests.conftest import REPO


def _rules(**rule):
    return {"rules": [{"name": "r", "metric": "drifted_share", "threshold": 0.3, **rule}]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            _rules(metric="drift_score"),
            r"Unknown metric 'drift_score' in rule 'r'; use one of \[.*'accuracy'.*\] or 'drift.<feature>'",
        ),
        (_rules(threshold="high"), r"'rule 'r'.threshold' must be a finite number. Got 'high' instead"),
        (
            _rules(action="page"),
            r"Unknown action 'page' in rule 'r'; use one of \['log', 'file', 'webhook', 'retrain', 'rollback'\]",
        ),
        (_rules(comparison="=>"), r"comparison' must be one of \['>', '>=', '<', '<='\]. Got '=>'"),
        (_rules(cooldown="soon"), r"cooldown' must be a positive duration such as 90s, 15m, 1h or 2d"),
        (_rules(action="retrain"), r"action 'retrain' but the file has no 'retrain:' section"),
        (_rules(action="webhook"), r"'sinks.webhook.url' is not set"),
        ({"rules": [{"metric": "accuracy", "threshold": 0.9}]}, r"'rules\[0\].name' must be a non-empty string"),
        ({"rules": [{"name": "r", "metric": "accuracy"}]}, r"rule 'r' needs a 'threshold'"),
        (
            {"drift": {"numeric": {"test": "chi2"}}},
            r"In 'drift.numeric': The drift test for a numeric feature must be one of",
        ),
        ({"drift": {"categorical": {"threshold": 2}}}, r"p-value and must lie in \(0, 1\). Got 2"),
        ({"rules": [], "alerts": []}, r"Unknown key\(s\) \['alerts'\] in 'the rules file'"),
        ({"sinks": {"webhook": {"url": "ftp://x"}}}, r"must be an http:// or https:// URL with a host. Got 'ftp://x'"),
        ({"retrain": {"pipeline": "p.py", "max_runs": 0}}, r"'retrain.max_runs' must be an integer >= 1. Got 0"),
        ({"rules": [_rules()["rules"][0], _rules()["rules"][0]]}, r"Rule names must be unique .* repeated: \['r'\]"),
        ({"sinks": {"file": {"pth": "a.jsonl"}}}, r"Unknown key\(s\) \['pth'\] in 'sinks.file'; allowed: \['path'\]"),
        ({"sinks": {"file": {"path": 5}}}, r"'sinks.file.path' must be a non-empty string such as alerts.jsonl. Got 5"),
        ({"sinks": {"file": {"path": ""}}}, r"'sinks.file.path' must be a non-empty string"),
        ({"retrain": {"pipeline": "p.py", "host": 5}}, r"'retrain.host' must be a non-empty string such as https://"),
        ({"retrain": {"pipeline": "p.py", "image": ["x"]}}, r"'retrain.image' must be a non-empty string"),
        ({"retrain": {"pipeline": "p.py", "parameters": {1: "x"}}}, r"'retrain.parameters' keys must be parameter names"),
        ({"rules": [], 5: "x"}, r"Unknown key\(s\) \[5\] in 'the rules file'"),
        (_rules(metric=["accuracy"]), r"'rule 'r'.metric' must be a string"),
        (_rules(comparison=[">"]), r"comparison' must be one of \['>', '>=', '<', '<='\]. Got \['>'\]"),
        ({"rollback": {"metric": {"a": 1}}}, r"'rollback.metric' must be one of \['accuracy', 'balanced_accuracy'\]"),
        ({"drift": {"features": {3: {"test": "ks"}}}}, r"'drift.features' keys must be feature names"),
        ({"sinks": {"webhook": {"url": "http://user:pw@hooks.example.com/x"}}}, r"must not carry a user name or password"),
        ({"sinks": {"webhook": {"url": "http://169.254.169.254/latest"}}}, r"link-local or cloud metadata address"),
        ({"sinks": {"webhook": {"url": "http://[fe80::1]/x"}}}, r"link-local or cloud metadata address"),
        ({"sinks": {"webhook": {"url": "http://metadata.google.internal/x"}}}, r"link-local or cloud metadata"),
        ({"sinks": {"webhook": {"url": "http:///nohost"}}}, r"must be an http:// or https:// URL with a host"),
        ({"sinks": {"webhook": {"url": "http://h:99999/x"}}}, r"is not a valid URL"),
        ({"sinks": {"webhook": {"url": "http://h/x", "allow_link_local": "yes"}}}, r"must be true or false"),
    ],
)
def test_invalid_rules_are_explained(document, message):
    with pytest.raises(RuleError, match=message):
        parse_rules(document)


def test_defaults_and_durations():
    config = parse_rules(
        {"window": "30m", "rules": [{"name": "acc", "metric": "accuracy", "threshold": 0.9, "cooldown": "2h"}]}
    )
    rule = config.rules[0]
    assert (rule.comparison, rule.window_s, rule.cooldown_s, rule.action) == ("<", 1800.0, 7200.0, "log")
    assert rule.fires(0.85) and not rule.fires(0.95) and not rule.fires(None)
    assert parse_rules(_rules()).rules[0].comparison == ">="
    assert (
        parse_rules({"rules": [{"name": "f", "metric": "drift.island", "threshold": 1}]}).rules[0].metric
        == "drift.island"
    )
    assert [parse_duration(v) for v in ("90s", "15m", "1h", "2d", 5)] == [90, 900, 3600, 172800, 5]


def test_the_documented_example_is_valid():
    config = load_rules(os.path.join(REPO, "examples", "alerts.yaml"))
    assert [r.action for r in config.rules] == ["retrain", "webhook", "file"]
    assert config.retrain.max_runs == 2 and config.retrain.period_s == 86400
    assert config.drift.numeric == ("ks", 0.01) and config.drift.features["year"] == ("psi", 0.25)
    assert config.rollback.margin == 0.05


def test_link_local_webhooks_pass_only_when_allowed():
    url = "http://169.254.169.254/hook"
    config = parse_rules({"sinks": {"webhook": {"url": url, "allow_link_local": True}}})
    assert config.webhook_url == url and config.webhook_allow_link_local


def test_a_non_utf8_rules_file_is_a_clear_error(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("rules:\n  - name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RuleError, match=r"is not UTF-8 text \(byte \d+: b'\\xe9'\); save it as UTF-8"):
        load_rules(str(latin))
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    with pytest.raises(RuleError, match="No rules file at"):
        load_rules(str(directory))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(RuleError, match="No rules file at .*examples/alerts.yaml"):
        load_rules(str(tmp_path / "nope.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(RuleError, match="is not valid YAML"):
        load_rules(str(broken))


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def _alert():
    return Alert(
        id=7,
        ts=1.0,
        rule="r",
        model="m",
        version=2,
        metric="drifted_share",
        value=0.5,
        threshold=0.3,
        action="webhook",
        message="drifted_share = 0.5 >= 0.3",
        evidence={"drifted": [{"feature": "x"}]},
    )


def test_webhook_file_and_log_sinks(hook_server, tmp_path, capsys):
    url, handler = hook_server
    config = parse_rules({"sinks": {"webhook": {"url": url}, "file": {"path": "out/alerts.jsonl"}}})
    outcome = notify(_alert(), ("webhook", "file"), config, str(tmp_path))
    assert outcome == {"log": "ok", "webhook": "ok", "file": "ok"}
    content_type, body = handler.received[0]
    assert content_type == "application/json" and body["id"] == 7 and body["evidence"]["drifted"][0]["feature"] == "x"
    lines = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["rule"] == "r"
    assert "flywheel alert #7 [r] model m v2" in capsys.readouterr().err


def test_failing_webhook_is_reported_not_raised(hook_server, tmp_path):
    url, handler = hook_server
    handler.status = 500
    config = parse_rules({"sinks": {"webhook": {"url": url, "timeout_s": 2}}})
    outcome = notify(_alert(), ("webhook",), config, str(tmp_path))
    assert outcome["log"] == "ok" and outcome["webhook"].startswith("failed: HTTPError") and "500" in outcome["webhook"]
    refused = parse_rules({"sinks": {"webhook": {"url": "http://127.0.0.1:9/none", "timeout_s": 2}}})
    assert notify(_alert(), ("webhook",), refused, str(tmp_path))["webhook"].startswith("failed: URLError")


def test_a_webhook_redirect_is_not_followed(tmp_path):
    target_hits = []

    class Target(_Hook):
        received = target_hits

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{target.server_address[1]}/elsewhere")
            self.end_headers()

        def log_message(self, *args):
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    redirect = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (target, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = parse_rules({"sinks": {"webhook": {"url": f"http://127.0.0.1:{redirect.server_address[1]}/hook"}}})
        outcome = notify(_alert(), ("webhook",), config, str(tmp_path))
    finally:
        for server in (target, redirect):
            server.shutdown()
            server.server_close()
    assert outcome["webhook"].startswith("failed: WebhookError") and "redirects are not followed" in outcome["webhook"]
    assert target_hits == []


def test_a_webhook_name_that_resolves_to_link_local_is_refused_when_sent(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
    )
    config = parse_rules({"sinks": {"webhook": {"url": "http://hooks.example.com/x"}}})
    outcome = notify(_alert(), ("webhook",), config, str(tmp_path))
    assert "resolves to 169.254.169.254" in outcome["webhook"]
