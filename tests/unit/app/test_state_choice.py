"""Which state store a stack's rollouts use: its `stateStore` setting, read from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.adapters.cluster_store import ClusterStore
from rollout.adapters.journal import Journal
from rollout.app.api import Rollouts
from rollout.core.errors import InfrastructureError, InvalidInput


def project(tmp_path: Path, config: str) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: canary-service\nruntime: python\n"
                                      "stackConfigDir: stacks\n")
    (root / "stacks" / "Pulumi.prod.yaml").write_text(
        f"config:\n  demo:stableVersion: v1\n{config}")
    return root


@pytest.fixture(autouse=True)
def _journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # KUBECONFIG points at a closed port for every unit test (tests/unit/conftest.py).
    monkeypatch.setenv("CANARY_JOURNAL_DIR", str(tmp_path / "journal"))


def test_the_cluster_unless_the_stack_says_file(tmp_path: Path) -> None:
    default = Rollouts(stack="prod", project_dir=project(tmp_path, "  demo:app: web\n"))
    assert isinstance(default.journal, ClusterStore)
    assert default.journal.where == "CanaryRollout default/prod-demo"
    root = project(tmp_path / "files", "  demo:stateStore: file\n")
    assert isinstance(Rollouts(stack="prod", project_dir=root).journal, Journal)


def test_the_cluster_store_lives_in_the_stack_namespace(tmp_path: Path) -> None:
    root = project(tmp_path, "  demo:stateStore: cluster\n"
                             "  demo:namespace: shop\n")
    store = Rollouts(stack="prod", project_dir=root).journal
    assert isinstance(store, ClusterStore)
    assert store.where == "CanaryRollout shop/prod-demo"


def test_an_explicit_journal_directory_is_always_files(tmp_path: Path) -> None:
    root = project(tmp_path, "  demo:stateStore: cluster\n")
    assert isinstance(Rollouts(stack="prod", project_dir=root,
                               journal_directory=tmp_path / "j").journal, Journal)


def test_a_bad_store_name_is_refused_naming_the_key(tmp_path: Path) -> None:
    root = project(tmp_path, "  demo:stateStore: etcd\n")
    with pytest.raises(InvalidInput) as err:
        _ = Rollouts(stack="prod", project_dir=root).journal
    assert "demo:stateStore = 'etcd'" in str(err.value)


def test_an_unknown_context_is_an_infrastructure_error_naming_it(tmp_path: Path) -> None:
    root = project(tmp_path, "  demo:stateStore: cluster\n"
                             "  kubernetes:context: elsewhere\n")
    with pytest.raises(InfrastructureError) as err:
        _ = Rollouts(stack="prod", project_dir=root).journal
    assert "elsewhere" in str(err.value)


# -- many services per stack ----------------------------------------------------------------


def test_each_service_has_its_own_state(tmp_path: Path) -> None:
    root = project(tmp_path, "  demo:stateStore: file\n"
                             "  cart:stableVersion: v3\n"
                             "  cart:namespace: shop\n")
    demo = Rollouts(stack="prod", service="demo", project_dir=root).journal
    cart = Rollouts(stack="prod", service="cart", project_dir=root).journal
    assert isinstance(demo, Journal) and demo.path.name == "prod.demo.json"
    # cart keeps the default store, in its own namespace, in a CanaryRollout of its own.
    assert isinstance(cart, ClusterStore) and cart.where == "CanaryRollout shop/prod-cart"


def test_a_stack_of_several_services_needs_service(tmp_path: Path) -> None:
    root = project(tmp_path, "  cart:stableVersion: v3\n")
    with pytest.raises(InvalidInput) as err:
        _ = Rollouts(stack="prod", project_dir=root).journal
    assert "stack prod has 2 canary services: cart, demo" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        _ = Rollouts(stack="prod", service="payments", project_dir=root).journal
    assert "no canary service 'payments'" in str(err.value)
