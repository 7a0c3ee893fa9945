"""Rollback: serving returns to the previous blessed version, by hand or by itself.

Every registry version was blessed (push publishes only blessed models), so
"the previous blessed version" is the version that served before the current
one (the alias's ``previous_version``), else the newest version below it.

Automatic rollback watches a version that became serving by a push (not by a
rollback, so two versions never ping-pong): once it has ``min_labels``
feedback labels since it started serving, its live accuracy (or balanced
accuracy) is compared with the previous version's - live over that version's
own labels when it has ``min_labels`` of them, else its blessed evaluation
number from ``version.json``. Worse by more than ``margin``: the alias moves
back, and a Rollback row and an alert say so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from flywheel.errors import FlywheelError
from flywheel.monitoring.rules import RollbackSettings
from flywheel.monitoring.store import Alert, MonitorStore, Rollback
from flywheel.registry import ModelRegistry

ROLLBACK_REASON_PREFIX = "rollback"
AUTO_ROLLBACK_RULE = "auto-rollback"


class RollbackError(FlywheelError):
    """A rollback cannot be done (no previous version, unknown version, nothing serves)."""


def previous_version(registry: ModelRegistry, model: str) -> int | None:
    """The version to return to: the one that served before, else the newest older one."""
    current = registry.serving_version(model)
    previous = (registry.serving_info(model) or {}).get("previous_version")
    versions = registry.versions(model)
    if isinstance(previous, int) and not isinstance(previous, bool) and previous in versions and previous != current:
        return previous
    older = [v for v in versions if current is not None and v < current]
    return max(older) if older else None


def rollback(
    registry: ModelRegistry,
    store: MonitorStore,
    model: str,
    *,
    to: int | None = None,
    automatic: bool = False,
    reason: str = "",
    now: float,
) -> Rollback:
    """Points serving at ``to`` (default: the previous version) and records it.

    Raises:
        RollbackError: nothing serves, no previous version, or ``to`` is not a
            version of the model.
    """
    versions = registry.versions(model)
    try:
        current = registry.serving_version(model)
    except FlywheelError as exc:
        if to is None or to not in versions:
            raise RollbackError(f"{exc} (pass --to with one of the versions)") from exc
        return _repoint_damaged_alias(registry, store, model, to, reason=reason, automatic=automatic, now=now)
    if not versions:
        raise RollbackError(f"Model '{model}' has no versions in {registry.root}; check --registry and the model name.")
    if current is None:
        raise RollbackError(
            f"No version of '{model}' serves in {registry.root}, so there is nothing to roll back from."
        )
    if to is None:
        to = previous_version(registry, model)
        if to is None:
            raise RollbackError(
                f"Model '{model}' has no version before v{current} to roll back to (versions: {versions}); pass --to VERSION."
            )
    if to not in versions:
        raise RollbackError(f"Model '{model}' has no version {to}; versions: {versions}. Pass one of them with --to.")
    if to == current:
        raise RollbackError(f"Version {to} of '{model}' already serves; nothing to do.")
    why = reason or ("automatic" if automatic else "by hand")
    registry.set_serving(model, to, reason=f"{ROLLBACK_REASON_PREFIX} from v{current}: {why}")
    record = Rollback(ts=now, model=model, from_version=current, to_version=to, automatic=automatic, reason=why)
    record.id = store.add_rollback(record)
    return record


def _repoint_damaged_alias(
    registry: ModelRegistry, store: MonitorStore, model: str, to: int, *, reason: str, automatic: bool, now: float
) -> Rollback:
    why = reason or ("automatic" if automatic else "by hand")
    try:
        registry.set_serving(model, to, reason=f"{ROLLBACK_REASON_PREFIX} from a damaged alias: {why}")
    except ValueError as exc:  # the alias is not even JSON, so its history cannot be carried over
        raise RollbackError(
            f"The serving alias of '{model}' in {registry.root} cannot be read ({exc}); move its serving.json "
            f"aside and run `flywheel rollback {model} --to {to}` again."
        ) from exc
    record = Rollback(ts=now, model=model, from_version=0, to_version=to, automatic=automatic, reason=why)
    record.id = store.add_rollback(record)
    return record


def parse_iso(value: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def live_metric(labeled: Sequence[Any], metric: str) -> float:
    """Accuracy or balanced accuracy (mean recall over the classes present) of labeled predictions."""
    if metric == "accuracy":
        return sum(p.prediction == p.label for p in labeled) / len(labeled)
    recalls = []
    for cls in sorted({p.label for p in labeled}):
        rows = [p for p in labeled if p.label == cls]
        recalls.append(sum(p.prediction == cls for p in rows) / len(rows))
    return sum(recalls) / len(recalls)


def watch_new_version(
    registry: ModelRegistry,
    store: MonitorStore,
    model: str,
    labeled: Sequence[Any],
    settings: RollbackSettings,
    *,
    now: float,
) -> tuple[Rollback | None, dict[str, Any]]:
    """Rolls the serving version back if it degrades against the previous one.

    Args:
        labeled: ``LabeledPrediction``s of the model (any versions, any time).

    Returns:
        (the Rollback if one happened, what was compared - for the log).
    """
    current = registry.serving_version(model)
    if current is None:
        return None, {"skipped": "nothing serves"}
    info = registry.serving_info(model)
    if str(info.get("reason", "")).startswith(ROLLBACK_REASON_PREFIX):
        return None, {"skipped": f"v{current} serves because of a rollback; it is not watched"}
    previous = previous_version(registry, model)
    if previous is None:
        return None, {"skipped": f"v{current} has no previous version"}
    since = parse_iso(info.get("updated_at")) or 0.0
    mine = [p for p in labeled if p.version == current and p.ts >= since]
    if len(mine) < settings.min_labels:
        return None, {
            "skipped": f"v{current} has {len(mine)} feedback labels since it started serving (needs {settings.min_labels})"
        }
    live = live_metric(mine, settings.metric)
    theirs = [p for p in labeled if p.version == previous]
    if len(theirs) >= settings.min_labels:
        baseline, basis = live_metric(theirs, settings.metric), f"v{previous} live over {len(theirs)} labels"
    else:
        blessed = registry.version_info(model, previous).get("metrics", {}).get(settings.metric)
        if blessed is None:
            return None, {
                "skipped": f"v{previous} has neither {settings.min_labels} live labels nor a blessed {settings.metric}"
            }
        baseline, basis = float(blessed), f"v{previous} blessed evaluation"
    evidence = {
        "metric": settings.metric,
        "live": round(live, 6),
        "labels": len(mine),
        "baseline": round(baseline, 6),
        "baseline_basis": basis,
        "margin": settings.margin,
        "from_version": current,
        "to_version": previous,
    }
    if live >= baseline - settings.margin:
        return None, {"kept": evidence}
    message = (
        f"v{current} live {settings.metric} {live:.4f} over {len(mine)} labels is below {basis} "
        f"{baseline:.4f} - margin {settings.margin:g}; serving rolled back to v{previous}"
    )
    record = rollback(registry, store, model, to=previous, automatic=True, reason=message, now=now)
    alert = Alert(
        ts=now,
        rule=AUTO_ROLLBACK_RULE,
        model=model,
        version=current,
        metric=settings.metric,
        value=live,
        threshold=baseline - settings.margin,
        action="rollback",
        message=message,
        evidence={**evidence, "rollback_id": record.id},
    )
    alert.id = store.add_alert(alert)
    return record, {"rolled_back": evidence, "alert_id": alert.id}
