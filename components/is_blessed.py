"""is_blessed: the blessing's verdict as an output parameter, for ``If`` (push only a blessed model).

Reads the ``ModelBlessing`` the way ``push`` does (its ``blessed`` property, else
``blessing.json``), so a pipeline can skip ``push`` when the model is not
blessed: locally the push node is SKIPPED, on Kubeflow the KFP UI shows it
skipped by its condition. ``push`` still checks the blessing itself, for
pipelines that call it directly.
"""

from __future__ import annotations

from flywheel.dsl.artifacts import ModelBlessing
from flywheel.dsl.component import Input, Output, component


@component(resources={"cpu": "100m", "memory": "128Mi", "memory_limit": "256Mi"})
def is_blessed(blessing: Input[ModelBlessing], blessed: Output[bool]) -> None:
    """Sets ``blessed`` to whether ``evaluate`` blessed the model."""
    from flywheel.components.push import _read_blessing

    verdict, reasons = _read_blessing(blessing)
    print(f"blessed: {verdict}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    blessed.set(verdict)
