"""Throwaway copies of the project for lab tests: own stack, own namespace, same program."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.adapters.paths import install_root
from rollout.adapters.project import project_copy
from rollout.adapters.stack import StackAdapter
from rollout.app.api import Rollouts
from rollout.lab import kube

PREFIX = "demo"


def make_project(tmp: Path, *, base: str = "lab", overrides: dict[str, Any] | None = None,
                 stack: str | None = None) -> tuple[Path, str, str]:
    """Copies Pulumi.yaml and stacks/Pulumi.<base>.yaml into `tmp` under a fresh stack name."""
    root = install_root()
    project_copy(tmp)
    stack = stack or f"it-{uuid.uuid4().hex[:6]}"
    namespace = f"{stack}-ns"
    config = yaml.safe_load((root / "stacks" / f"Pulumi.{base}.yaml").read_text())
    values = config["config"]
    values[f"{PREFIX}:namespace"] = namespace
    # The driver tests read the journal file as it is written: they choose the file store;
    # the cluster store has tests of its own (test_state_store, the two-clone tests).
    values[f"{PREFIX}:stateStore"] = "file"
    for key, value in (overrides or {}).items():
        values[f"{PREFIX}:{key}"] = value
    (tmp / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp, stack, namespace


def rollouts(project: Path, stack: str, **kwargs: Any) -> Rollouts:
    return Rollouts(stack=stack, project_dir=project, **kwargs)


def discard(stack: StackAdapter, namespace: str, kubeconfig: Path) -> None:
    """Ends a test's stack fast: forgets it in the Pulumi backend and lets the namespace
    controller delete its objects in the background. `pulumi destroy` waits for every object
    to go (10-20 s a stack); the tests of destroy itself still run it."""
    stack.stack(create=False).workspace.remove_stack(stack.stack_name, force=True)
    api = kube.api_client(kubeconfig)
    try:
        client.CoreV1Api(api).delete_namespace(namespace, _request_timeout=30)
    except ApiException as err:
        if err.status != 404:
            raise
    finally:
        api.close()
