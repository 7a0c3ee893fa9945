"""Recording a node that did not run because an ``If`` condition was false (state SKIPPED).

Kept beside ``store.py`` (which it extends through the store's own execution helpers) so that
module stays small.
"""

from __future__ import annotations

from typing import Any

from flywheel.metadata.store import MetadataStore, RunRecord, now_ms
from flywheel.metadata.values import set_value


def record_skipped(
    store: MetadataStore, run: RunRecord, node_id: str, component: str, *,
    parameters: dict[str, Any], code_fingerprint: str, reason: str,
) -> int:
    """Records ``node_id`` SKIPPED: an MLMD execution CANCELED with ``skipped`` set, no inputs or outputs.

    ``reason`` is its ``error`` (``runs show`` and the dashboard print it); ``MetadataStore``
    reads such an execution back with state ``SKIPPED``.
    """
    with store.locked() as mlmd:
        execution = store._new_execution(  # noqa: SLF001 - this module extends the store
            mlmd, run, node_id, component, store._pb.Execution.CANCELED, parameters=parameters,  # noqa: SLF001
            cache_key="", code_fingerprint=code_fingerprint, log_path="", details={"skipped": reason},
        )
        set_value(execution.custom_properties, "end_ms", now_ms())
        set_value(execution.custom_properties, "error", reason)
        set_value(execution.custom_properties, "skipped", True)
        execution_id, _, _ = mlmd.put_execution(execution, [], store._run_contexts(mlmd, run))  # noqa: SLF001
        return execution_id
