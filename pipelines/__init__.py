"""Pipeline definitions, installed as flywheel.pipelines, and the steps they share."""

from __future__ import annotations

from typing import Any


def evaluate_and_push(
    examples: Any,
    model: Any,
    *,
    registry: Any,
    model_name: Any,
    statistics: Any = None,
    schema: Any = None,
    infra_blessing: Any = None,
    skip_push_unless_blessed: bool = False,
    **evaluate_params: Any,
) -> Any:
    """The usual tail of a training pipeline: ``evaluate`` the model, ``push`` it if blessed.

    Call it inside a ``@pipeline`` function, like a component; the tasks are
    named ``evaluate`` and ``push`` as if written out. ``evaluate_params`` go to
    ``evaluate`` (thresholds, max_regression, slice_features, label, ...).
    ``push`` also gets ``examples`` and, when given, validate's ``statistics``
    and ``schema``: the version then carries its drift reference on a cluster too.

    With ``skip_push_unless_blessed`` an ``is_blessed`` task reads the verdict and
    ``push`` runs inside ``If(blessed == True)``: an unblessed model leaves ``push``
    SKIPPED (locally and in the KFP UI). Without it, ``push`` always runs and
    records ``pushed=False`` with the reason for an unblessed model.
    ``infra_blessing`` (an ``infra_validate`` output) makes push need it too.

    Returns:
        The ``evaluate`` task.
    """
    from flywheel.components.evaluate import evaluate
    from flywheel.components.is_blessed import is_blessed
    from flywheel.components.push import push
    from flywheel.dsl.control import If

    evaluated = evaluate(examples=examples, model=model, registry=registry, model_name=model_name, **evaluate_params)
    references = {
        k: v for k, v in (("statistics", statistics), ("schema", schema), ("infra_blessing", infra_blessing)) if v is not None
    }
    pushed = dict(model=model, registry=registry, model_name=model_name, examples=examples, **references)
    blessing = evaluated.outputs["blessing"]
    if not skip_push_unless_blessed:
        push(blessing=blessing, **pushed)
        return evaluated
    verdict = is_blessed(blessing=blessing)
    with If(verdict.values["blessed"] == True):  # noqa: E712 - builds the condition
        push(blessing=blessing, **pushed)
    return evaluated
