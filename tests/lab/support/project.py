"""Throwaway copies of the project for lab tests: own stack, own namespace, same program."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from rollout.adapters.paths import project_root
from rollout.adapters.project import project_copy
from rollout.app.api import Rollouts

PREFIX = "canary-service"


def make_project(tmp: Path, *, base: str = "lab", overrides: dict[str, Any] | None = None,
                 stack: str | None = None) -> tuple[Path, str, str]:
    """Copies Pulumi.yaml and stacks/Pulumi.<base>.yaml into `tmp` under a fresh stack name."""
    root = project_root()
    project_copy(tmp)
    stack = stack or f"it-{uuid.uuid4().hex[:6]}"
    namespace = f"{stack}-ns"
    config = yaml.safe_load((root / "stacks" / f"Pulumi.{base}.yaml").read_text())
    values = config["config"]
    values[f"{PREFIX}:namespace"] = namespace
    for key, value in (overrides or {}).items():
        values[f"{PREFIX}:{key}"] = value
    (tmp / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp, stack, namespace


def rollouts(project: Path, stack: str, **kwargs: Any) -> Rollouts:
    return Rollouts(stack=stack, project_dir=project, **kwargs)
