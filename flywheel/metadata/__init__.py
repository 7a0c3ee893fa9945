"""ML Metadata: lineage records of runs, executions and artifacts."""

from flywheel.metadata.store import ArtifactRecord, ExecutionRecord, MetadataStore, RunRecord

__all__ = ["ArtifactRecord", "ExecutionRecord", "MetadataStore", "RunRecord"]
