"""Every test in tests/lab runs against the real local lab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.adapters.readback import ClusterReadback
from rollout.lab.lab import Lab
from tests.lab.support.service import Service, deployed_service


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="module")
def shared_service(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One deployed demo service with live traffic for a whole module: deploying one and
    waiting for its telemetry costs about 30 s, so the driver tests take turns on it."""
    with deployed_service(lab, tmp_path_factory.mktemp("service")) as service:
        yield service


@pytest.fixture
def service(shared_service: Service, tmp_path: Path) -> Iterator[Service]:
    """The module's service, idle, with a journal of this test's own; each test leaves it
    idle again (promoted or reverted) or fails."""
    service = shared_service.with_journal(tmp_path / "journal")
    live = ClusterReadback(app="demo", namespace=service.namespace, router="istio",
                           kubeconfig=str(service.lab.layout.kubeconfig)).live()
    assert (live.primary_weight, live.canary_weight, live.canary_replicas) == (100, 0, 0), live
    yield service
