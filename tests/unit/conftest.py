"""Unit tests never reach a real cluster, even when the lab happens to be up: KUBECONFIG
points at a closed port, so a test that strays into the cluster store fails loudly."""

from __future__ import annotations

import pytest

NOWHERE = """apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: nobody, user: {}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
"""


@pytest.fixture(autouse=True)
def _no_cluster(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path_factory.getbasetemp() / "kubeconfig-nowhere"
    if not path.exists():
        path.write_text(NOWHERE)
    monkeypatch.setenv("KUBECONFIG", str(path))
