"""Turns a policy into the list of traffic steps a rollout walks. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from rollout.core.durations import parse_duration
from rollout.core.policy import Policy


@dataclass(frozen=True)
class Step:
    weight: int
    # None: go on after analysis; 0.0: wait for `rollout approve`; > 0: wait that many seconds.
    pause_seconds: float | None = None


def traffic_weights(policy: Policy) -> list[int]:
    if policy.step_weights is not None:
        return list(policy.step_weights)
    if policy.iterations is not None:
        # Blue/green: all traffic switches only after N passing checks at weight 0.
        return [0] * policy.iterations
    step = policy.step_weight or 10
    weights = list(range(step, policy.max_weight + 1, step))
    return weights or [policy.max_weight]


def build_schedule(policy: Policy) -> list[Step]:
    pauses = {p.weight: parse_duration(p.duration) if p.duration else 0.0 for p in policy.pauses}
    return [Step(weight=w, pause_seconds=pauses.get(w)) for w in traffic_weights(policy)]


def promotion_weights(policy: Policy, max_weight: int) -> list[int]:
    """Canary weights while traffic goes back to the (now promoted) primary."""
    if not policy.step_weight_promotion:
        return [0]
    weights = list(range(max_weight - policy.step_weight_promotion, 0,
                         -policy.step_weight_promotion))
    return [*weights, 0]
