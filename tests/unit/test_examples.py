"""The pipeline examples keep no rollout state on runners: it lives in each stack's cluster
(stateStore: cluster), so nothing caches or points at a journal directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PIPELINES = [EXAMPLES / "github-actions" / "rollout.yml", EXAMPLES / "gitlab-ci" / ".gitlab-ci.yml"]


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [str(key), *_strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [str(node)]


def _cached_paths(pipeline: dict[str, Any]) -> list[str]:
    """What a pipeline keeps between jobs: GitHub's actions/cache steps, GitLab's caches."""
    found: list[str] = []
    for job in pipeline.get("jobs", {}).values():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/cache"):
                found += str(step["with"]["path"]).split()
    for job in pipeline.values():
        if isinstance(job, dict) and "cache" in job:
            caches = job["cache"] if isinstance(job["cache"], list) else [job["cache"]]
            found += [path for cache in caches for path in cache.get("paths", [])]
    return found


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.parent.name)
def test_a_pipeline_keeps_no_rollout_state_on_its_runners(path: Path) -> None:
    pipeline = yaml.safe_load(path.read_text())
    assert "CANARY_JOURNAL_DIR" not in path.read_text()
    cached = _cached_paths(pipeline)
    assert cached, "the pinned tools are cached"
    assert all("canary-rollout" in p for p in cached), cached
    commands = "\n".join(_strings(pipeline))
    assert "rollout run --stack staging" in commands
    assert "rollout release --from staging --to prod" in commands
