"""The rollout policy of one environment: the `analysis` object of its stack config."""

from __future__ import annotations

import itertools
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rollout.analysis import AnalysisSpec, parse_analysis
from rollout.durations import parse_duration
from rollout.errors import InvalidInput

DEFAULT_PROMETHEUS = "http://127.0.0.1:16090"
HookType = Literal[
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
    "confirm-promotion", "post-rollout", "rollback", "event",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _duration(value: str) -> str:
    parse_duration(value)
    return value


class Pause(_Model):
    """Stop at a weight: for `duration`, or until `rollout approve` when none is given."""

    weight: int = Field(ge=1, le=100)
    duration: str | None = None

    _check = field_validator("duration")(lambda v: v if v is None else _duration(v))


class Webhook(_Model):
    name: str = Field(min_length=1)
    type: HookType
    url: str = Field(pattern=r"^https?://")
    timeout: str = "10s"
    retries: int = Field(default=2, ge=0, le=10)
    metadata: dict[str, str] = Field(default_factory=dict)

    _check = field_validator("timeout")(lambda v: _duration(v))


class Policy(_Model):
    interval: str = "30s"
    threshold: int = Field(default=1, ge=1)
    step_weight: int | None = Field(default=None, alias="stepWeight", ge=1, le=100)
    max_weight: int = Field(default=50, alias="maxWeight", ge=1, le=100)
    step_weights: list[int] | None = Field(default=None, alias="stepWeights")
    step_weight_promotion: int | None = Field(
        default=None, alias="stepWeightPromotion", ge=1, le=100)
    iterations: int | None = Field(default=None, ge=1)
    pauses: list[Pause] = Field(default_factory=list)
    canary_replicas: int | None = Field(default=None, alias="canaryReplicas", ge=1)
    ready_timeout: str = Field(default="5m", alias="readyTimeout")
    skip_analysis: bool = Field(default=False, alias="skipAnalysis")
    # Validated by rollout.analysis (parse_analysis), which owns their schema.
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=lambda: {"kind": "threshold"})
    provider: dict[str, Any] = Field(default_factory=dict)
    bearer_token_env: str | None = Field(default=None, alias="bearerTokenEnv")
    webhooks: list[Webhook] = Field(default_factory=list)
    slack_webhook_env: str | None = Field(default=None, alias="slackWebhookEnv")

    _intervals = field_validator("interval", "ready_timeout")(lambda v: _duration(v))

    @field_validator("step_weights")
    @classmethod
    def _increasing(cls, weights: list[int] | None) -> list[int] | None:
        if weights is None:
            return None
        if not weights or any(not 1 <= w <= 100 for w in weights):
            raise ValueError("stepWeights must be a non-empty list of weights from 1 to 100")
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"stepWeights {weights} must increase strictly")
        return weights

    @model_validator(mode="after")
    def _one_schedule(self) -> Policy:
        chosen = [self.step_weight is not None, self.step_weights is not None,
                  self.iterations is not None]
        if sum(chosen) > 1:
            raise ValueError("choose one of stepWeight (+maxWeight), stepWeights or iterations")
        if self.step_weight is not None and self.step_weight > self.max_weight:
            raise ValueError(f"stepWeight {self.step_weight} exceeds maxWeight {self.max_weight}")
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def ready_timeout_seconds(self) -> float:
        return parse_duration(self.ready_timeout)


def analysis_spec(policy: Policy, *, key: str = "canary-service:analysis") -> AnalysisSpec:
    """The metric analysis part of the policy, with secrets taken from the environment."""
    provider = dict(policy.provider)
    provider.setdefault("address", os.environ.get("CANARY_PROMETHEUS_URL", DEFAULT_PROMETHEUS))
    if policy.bearer_token_env:
        token = os.environ.get(policy.bearer_token_env)
        if not token:
            raise InvalidInput(
                f"{key}.bearerTokenEnv names ${policy.bearer_token_env}, which is not set",
                hint=f"export {policy.bearer_token_env}=<token> before running the rollout",
            )
        provider["bearerToken"] = token
    return parse_analysis(
        {"interval": policy.interval, "threshold": policy.threshold,
         "metrics": policy.metrics, "templates": policy.templates, "judge": policy.judge,
         "provider": provider},
        where=key,
    )


def load_policy(raw: dict[str, Any] | None, *, key: str = "canary-service:analysis") -> Policy:
    """Validates the policy; every problem names its config key and what is allowed."""
    try:
        policy = Policy.model_validate(raw or {})
    except ValidationError as err:
        problems = []
        for item in err.errors():
            where = ".".join(str(p) for p in item["loc"])
            where = f"{key}.{where}" if where else key
            problems.append(f"{where}: {item['msg']}")
        raise InvalidInput(
            "invalid rollout policy:\n  " + "\n  ".join(problems),
            hint=f"fix {key} in stacks/Pulumi.<stack>.yaml (schema: README, 'Rollout policy')",
        ) from err
    if not policy.skip_analysis:
        analysis_spec(policy, key=key)
    return policy
