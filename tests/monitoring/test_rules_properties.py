"""Property-based search over the rules schema: any document is either a valid config or a RuleError.

Documents are drawn the way a careless or hostile rules file looks: the real
keys of each section, with values of any YAML type (and, now and then, keys
that do not exist). Each property runs a fixed number of deterministic
examples so the suite stays fast and repeatable.
"""

from __future__ import annotations

import math
import urllib.parse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.monitoring.rules import (
    ACTIONS,
    COMPARISONS,
    METRICS,
    RuleError,
    RulesConfig,
    parse_rules,
)

SETTINGS = settings(
    max_examples=200, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1h", "15m", "0s", "-1h", "ks", "chi2", "psi", "accuracy", ">=", "http://x", "\x00"]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3)
    ),
    max_leaves=8,
)


def _section(keys: list[str], values=yaml_values):
    """Dicts over the real keys (any values), sometimes with one unknown key."""
    known = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))
    return st.one_of(known, st.builds(lambda d, k, v: {**d, k: v}, known, st.text(max_size=5), values), yaml_values)


rule_values = st.one_of(
    yaml_values,
    st.sampled_from(sorted(METRICS) + ["drift.x", "drift."]),
    st.sampled_from(list(COMPARISONS) + list(ACTIONS)),
    st.floats(min_value=0, max_value=1),
)
rules_documents = st.fixed_dictionaries(
    {},
    optional={
        "window": yaml_values,
        "drift": _section(["numeric", "categorical", "prediction", "features", "min_rows"]),
        "sinks": st.fixed_dictionaries(
            {},
            optional={
                "file": _section(["path"]),
                "webhook": _section(
                    ["url", "timeout_s", "allow_link_local"],
                    st.one_of(
                        yaml_values,
                        st.sampled_from(
                            [
                                "http://hooks.example.com/x",
                                "https://u:p@h/x",
                                "http://169.254.169.254/",
                                "http://[::ffff:169.254.169.254]/",
                                "gopher://h",
                                "http://h:0/x",
                                "http://h:-1/x",
                            ]
                        ),
                    ),
                ),
            },
        ),
        "retrain": _section(
            [
                "pipeline", "pipeline_name", "parameters", "max_runs", "period", "host", "namespace",
                "experiment", "service_account", "pipeline_root", "image", "registry_pvc",
            ]  # fmt: skip
        ),
        "rollback": _section(["metric", "margin", "min_labels"]),
        "rules": st.lists(
            _section(
                ["name", "metric", "threshold", "comparison", "window", "cooldown", "action", "notify", "min_rows"],
                rule_values,
            ),
            max_size=3,
        ),
    },
)


def _parse(document):
    try:
        return parse_rules(document)
    except RuleError as error:
        assert str(error), "a RuleError must say what is wrong"
        return None


def _check_valid(config: RulesConfig) -> None:
    """What the monitor relies on in a config parse_rules accepted."""
    assert config.window_s > 0 and math.isfinite(config.window_s)
    assert config.file_sink is None or (isinstance(config.file_sink, str) and config.file_sink)
    assert config.webhook_url is None or config.webhook_url.startswith(("http://", "https://"))
    if config.webhook_url is not None:
        assert urllib.parse.urlsplit(config.webhook_url).username is None
    assert config.webhook_timeout_s >= 0.1
    for rule in config.rules:
        assert rule.comparison in COMPARISONS and rule.action in ACTIONS
        assert math.isfinite(rule.threshold) and rule.window_s > 0 and rule.min_rows >= 0
        rule.fires(0.5)  # evaluating never raises
    if config.retrain is not None:
        for key in ("pipeline_name", "host", "namespace", "experiment", "service_account", "image"):
            value = getattr(config.retrain, key)
            assert value is None or isinstance(value, str)
        assert all(isinstance(k, str) for k in config.retrain.parameters)
        assert config.retrain.max_runs >= 1
    for test, threshold in (config.drift.numeric, config.drift.categorical, *config.drift.features.values()):
        assert isinstance(test, str) and math.isfinite(threshold)


@SETTINGS
@given(st.one_of(rules_documents, yaml_values))
def test_any_rules_document_is_a_valid_config_or_a_rule_error(document):
    config = _parse(document)
    if config is not None:
        _check_valid(config)
