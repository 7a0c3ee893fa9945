"""Monitoring: ``flywheel monitor``, ``flywheel alerts``, ``flywheel rollback``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from flywheel.cli.common import home_of
from flywheel.errors import ParameterError


def _home_flag(parser: argparse.ArgumentParser) -> None:
    # The CronJob passes --home after the subcommand; SUPPRESS keeps a top-level --home when this one is absent.
    parser.add_argument("--home", default=argparse.SUPPRESS, help="project home (same as the global --home)")


def register(subparsers: Any) -> None:
    monitor = subparsers.add_parser(
        "monitor",
        help="watch live traffic for drift and degraded accuracy; fire alerts",
        description="Compare the logged live window of each served model with its training data and "
        "its blessed evaluation, store drift checks, fire alert rules (log, file, webhook, retrain, "
        "rollback) and roll back a new version that degrades. Runs once (--once, for a CronJob) or in a loop.",
    )
    monitor.add_argument(
        "--once", action="store_true", help="one pass, then exit (exit 1 if a model could not be checked)"
    )
    monitor.add_argument(
        "--rules", metavar="FILE", help="alert rules YAML (see examples/alerts.yaml); default: drift checks only"
    )
    monitor.add_argument(
        "--registry", metavar="URI", help="model registry: a directory or s3://, gs:// URI (default: <home>/registry)"
    )
    monitor.add_argument("--model", action="append", metavar="NAME", help="only this model (repeatable; default: all)")
    monitor.add_argument(
        "--interval", type=float, default=300.0, metavar="S", help="seconds between passes in a loop (default 300)"
    )
    monitor.add_argument(
        "--window", metavar="DURATION", help="live window, e.g. 15m, 1h (default: the rules file's, else 1h)"
    )
    monitor.add_argument(
        "--endpoint", metavar="URL", help="read the request/feedback logs from a serving endpoint instead of the home"
    )
    monitor.add_argument(
        "--logs",
        metavar="URI",
        help="read every replica's logs under this shared root (s3://..., a mount; default: "
        "$FLYWHEEL_SERVING_LOG_URI, else the home)",
    )
    monitor.add_argument("--host", metavar="URL", help="start retraining runs on this Kubeflow Pipelines host")
    _home_flag(monitor)
    monitor.set_defaults(handler=run_monitor)

    alerts = subparsers.add_parser(
        "alerts",
        help="show fired alerts",
        description="Fired alerts, newest first, with their evidence and the run they started.",
    )
    alerts.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    alerts.add_argument("--model", metavar="NAME", help="only this model")
    alerts.add_argument("--json", action="store_true", help="print JSON")
    _home_flag(alerts)
    alerts.set_defaults(handler=show_alerts)

    back = subparsers.add_parser(
        "rollback",
        help="serve the previous version of a model again",
        description="Point a model's serving alias back at the previous version (or --to VERSION); recorded as a manual rollback.",
    )
    back.add_argument("model", metavar="MODEL", help="model name in the registry")
    back.add_argument("--to", type=int, metavar="VERSION", help="version to serve (default: the previous one)")
    back.add_argument("--registry", metavar="DIR", help="model registry (default: <home>/registry)")
    back.add_argument("--reason", default="", help="why (recorded)")
    _home_flag(back)
    back.set_defaults(handler=run_rollback)


def _registry(args: argparse.Namespace, home: Any) -> Any:
    from flywheel.registry import ModelRegistry

    return ModelRegistry(args.registry or home.registry)


def run_monitor(args: argparse.Namespace) -> int:
    import dataclasses

    from flywheel.monitoring.monitor import DirectoryLogSource, HttpLogSource, Monitor
    from flywheel.monitoring.rules import RulesConfig, load_rules, parse_duration

    if args.interval <= 0:
        raise ParameterError(f"--interval must be > 0 seconds; got {args.interval}.")
    home = home_of(args)
    config = load_rules(args.rules) if args.rules else RulesConfig()
    if args.host:
        if config.retrain is None:
            raise ParameterError(
                "--host starts retraining runs on Kubeflow, but the rules file has no 'retrain:' section."
            )
        config = dataclasses.replace(config, retrain=dataclasses.replace(config.retrain, host=args.host))
    window_s = parse_duration(args.window, field="--window") if args.window else None
    monitor = Monitor(
        home,
        _registry(args, home),
        config,
        models=args.model,
        window_s=window_s,
        source=HttpLogSource(args.endpoint) if args.endpoint else (DirectoryLogSource(args.logs) if args.logs else None),
    )
    if not monitor.registry.models() and not args.model:
        print(f"No models in {monitor.registry.root}; nothing to monitor.")
        return 0
    print(
        f"Monitoring {', '.join(args.model or monitor.registry.models())} ({len(config.rules)} rules from {config.source})",
        flush=True,
    )
    for reports in monitor.run_forever(args.interval, passes=1 if args.once else None):
        for report in reports:
            fired = ", ".join(f"#{a.id} {a.rule}" + (f" -> run {a.run_id}" if a.run_id else "") for a in report.alerts)
            status = report.error or (f"alerts: {fired}" if fired else "no alert")
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {report.model} v{report.version}: {status}", flush=True)
        if args.once:
            return 1 if any(r.error for r in reports) else 0
    return 0


def _fmt_ts(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def show_alerts(args: argparse.Namespace) -> int:
    import os

    from flywheel.monitoring.rules import alert_document
    from flywheel.monitoring.store import MonitorStore

    if args.limit < 1:
        raise ParameterError(f"--limit must be >= 1; got {args.limit}.")
    home = home_of(args)
    if not os.path.exists(os.path.join(home.root, "monitor.sqlite")):
        print(f"No alerts yet in {home.root}. Start the monitor with: flywheel monitor --once --rules FILE")
        return 0
    alerts = MonitorStore(home).alerts(model=args.model, limit=args.limit)
    if args.json:
        print(json.dumps([alert_document(a) for a in alerts], indent=2, default=str))
        return 0
    if not alerts:
        print("No alerts" + (f" for model '{args.model}'." if args.model else "."))
        return 0
    for alert in alerts:
        run = f"  run {alert.run_id}" if alert.run_id else ""
        print(
            f"#{alert.id}  {_fmt_ts(alert.ts)}  {alert.rule}  {alert.model} v{alert.version}  action {alert.action}{run}"
        )
        print(f"    {alert.message}")
        evidence = alert.evidence
        for item in evidence.get("drifted", []):
            print(
                f"    drifted  {item['feature']}: {item['test']} {item['statistic']:.4g} (threshold {item['threshold']:g})"
            )
        if "retrain" in evidence:
            print(f"    retrain  {json.dumps(evidence['retrain'], default=str)}")
        if "rollback" in evidence:
            print(f"    rollback {json.dumps(evidence['rollback'], default=str)}")
        if "live" in evidence:
            print(
                f"    live {evidence['metric']} {evidence['live']} over {evidence['labels']} labels "
                f"vs {evidence['baseline_basis']} {evidence['baseline']}"
            )
        failed = {k: v for k, v in evidence.get("sinks", {}).items() if v != "ok"}
        if failed:
            print(f"    sinks    {json.dumps(failed)}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from flywheel.monitoring.rollback import rollback
    from flywheel.monitoring.store import MonitorStore

    home = home_of(args)
    registry = _registry(args, home)
    record = rollback(
        registry, MonitorStore(home), args.model, to=args.to, automatic=False, reason=args.reason, now=time.time()
    )
    was = f"was v{record.from_version}" if record.from_version else "its alias was damaged"
    print(f"Model '{args.model}' now serves v{record.to_version} ({was}); rollback #{record.id} recorded.")
    return 0
