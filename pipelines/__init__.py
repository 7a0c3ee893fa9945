"""Pipeline definitions, installed as flywheel.pipelines, and the steps they share."""

from __future__ import annotations

from typing import Any


def evaluate_and_push(
    examples: Any, model: Any, *, registry: Any, model_name: Any, infra_blessing: Any = None, **evaluate_params: Any
) -> Any:
    """The usual tail of a training pipeline: ``evaluate`` the model, ``push`` it if blessed.

    Call it inside a ``@pipeline`` function, like a component; the tasks are
    named ``evaluate`` and ``push`` as if written out. ``evaluate_params`` go to
    ``evaluate`` (thresholds, max_regression, slice_features, label, ...).
    ``infra_blessing`` (an ``infra_validate`` output) makes push need it too.

    Returns:
        The ``evaluate`` task.
    """
    from flywheel.components.evaluate import evaluate
    from flywheel.components.push import push

    evaluated = evaluate(examples=examples, model=model, registry=registry, model_name=model_name, **evaluate_params)
    infra = {} if infra_blessing is None else {"infra_blessing": infra_blessing}
    push(model=model, blessing=evaluated.outputs["blessing"], registry=registry, model_name=model_name, **infra)
    return evaluated
