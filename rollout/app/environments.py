"""The pipeline view: per environment its stable version, last rollout and what can be released."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rollout.adapters.paths import project_root
from rollout.adapters.stack import stack_config_dir
from rollout.app.api import Rollouts
from rollout.app.promotion import approval_of, read_environment
from rollout.core.gates import Environment, PromotionPolicy, ReleaseCheck, evaluate, when
from rollout.core.state import RolloutState


@dataclass(frozen=True)
class EnvironmentView:
    """One row of the pipeline: the stack, and the release into it from its source, if any."""

    env: Environment
    source: str | None
    release: ReleaseCheck | None

    def to_dict(self) -> dict[str, Any]:
        env = self.env
        return {
            "stack": env.stack, "exists": env.exists, "image": env.image,
            "stableVersion": env.stable_version, "deployedImage": env.deployed_image,
            "lastRollout": _rollout(env.last_rollout),
            "inProgress": env.in_progress is not None,
            "releaseFrom": self.source,
            "release": self.release.to_dict() if self.release else None,
        }


def _rollout(state: RolloutState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {"id": state.rollout_id, "candidate": state.candidate, "stableBefore": state.stable,
            "phase": str(state.phase), "outcome": str(state.outcome) if state.outcome else None,
            "reason": state.reason, "startedAt": when(state.started_at),
            "updatedAt": when(state.updated_at)}


def stack_files(project_dir: Path) -> list[str]:
    """Stack names with a `Pulumi.<name>.yaml` in the project's stack config directory."""
    folder, ext = stack_config_dir(project_dir)
    sources = {}
    for path in folder.glob(f"Pulumi.*{ext}"):
        name = path.name[len("Pulumi."):-len(ext)]
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            data = None  # listed all the same; reading the stack says what is wrong with it
        config = (data.get("config") if isinstance(data, dict) else None) or {}
        if not isinstance(config, dict):
            config = {}
        promotion = next((v for k, v in config.items() if k.endswith(":promotion")), None)
        sources[name] = promotion.get("from") if isinstance(promotion, dict) else None
    return pipeline_order(sources)


def pipeline_order(sources: dict[str, str | None]) -> list[str]:
    """Stacks in release order (a stack after the one it takes releases from), else by name."""
    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        source = sources.get(name)
        if source is None or source not in sources or name in seen:
            return 0
        return 1 + depth(source, seen | {name})

    return sorted(sources, key=lambda name: (depth(name), name))


def ordered(names: list[str], sources: dict[str, str | None]) -> list[str]:
    """Sources before their targets, otherwise in the given order."""
    done: list[str] = []

    def visit(name: str, seen: tuple[str, ...]) -> None:
        if name in done or name in seen:
            return
        source = sources.get(name)
        if source in sources:
            visit(source, (*seen, name))
        done.append(name)

    for name in names:
        visit(name, ())
    return done


def predecessors(names: list[str], envs: dict[str, Environment], *, chain: bool
                 ) -> dict[str, str | None]:
    """Each stack's source: its promotion.from, else (with `chain`) the stack listed before."""
    sources: dict[str, str | None] = {}
    for i, name in enumerate(names):
        configured = envs[name].promotion.source if envs[name].promotion else None
        sources[name] = configured or (names[i - 1] if chain and i > 0 else None)
    return sources


def pipeline(stacks: list[str] | None = None, *, service: str | None = None,
             project_dir: Path | None = None, journal_directory: Path | None = None,
             clock: Callable[[], float] = time.time) -> list[EnvironmentView]:
    """Every environment of one service with the gates of the release into it (no side
    effects); `service` may be left out when the stacks have one."""
    folder = project_dir or project_root()
    names = stacks or stack_files(folder)

    def rollouts(name: str) -> Rollouts:
        return Rollouts(stack=name, service=service, project_dir=folder,
                        journal_directory=journal_directory)

    def read(name: str) -> Environment:
        return read_environment(rollouts(name))

    envs = {name: read(name) for name in names}
    sources = predecessors(names, envs, chain=stacks is not None)
    views = []
    for name in ordered(names, sources):
        env, source = envs[name], sources[name]
        check = None
        if source is not None and env.exists:
            origin = envs.get(source) or read(source)
            approval = approval_of(rollouts(name).journal, origin.stable_version)
            check = evaluate(origin, env, env.promotion or PromotionPolicy(), now=clock(),
                             approval=approval)
        views.append(EnvironmentView(env, source, check))
    return views
