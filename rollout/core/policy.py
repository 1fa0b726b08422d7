"""The rollout policy of one environment: the `analysis` object of its stack config."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from rollout.core.analysis_model import (
    ANALYSIS_RULES,
    PROVIDER_RULES,
    AnalysisSpec,
    EnvName,
    ProviderSpec,
    parse_analysis,
    parse_provider,
    provider_credentials,
)
from rollout.core.config_errors import config_problems, validate_config
from rollout.core.config_model import ConfigModel, Duration
from rollout.core.durations import parse_duration
from rollout.core.errors import InvalidInput, Problem, SettingsError
from rollout.core.redaction import MASK
from rollout.core.redaction import redact_url as redact_url
from rollout.core.redaction import url_credentials as url_credentials
from rollout.core.redaction import url_secrets as url_secrets

HookType = Literal[
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
    "confirm-promotion", "post-rollout", "rollback", "event",
]
# What a user sees for a bad value where the type alone says too little (config_errors).
POLICY_RULES = {
    "webhooks.url": "must be an http(s) URL, e.g. https://hooks.example.internal/run",
}


class Pause(ConfigModel):
    """Stop at a weight: for `duration`, or until `rollout approve` when none is given."""

    weight: int = Field(ge=1, le=100)
    duration: Duration | None = None


def url_from_env(variable: str, *, key: str, what: str = "the webhook URL") -> str:
    """A URL held by an environment variable: set, and http(s). Its value is never shown."""
    url = os.environ.get(variable, "").strip()
    if not url:
        raise InvalidInput(f"{key} names ${variable}, which is not set",
                           hint=f"export {variable}=<{what}> before running the rollout")
    if not re.match(r"^https?://[^\s/?#]+\S*$", url):
        raise InvalidInput(f"${variable} (named by {key}) does not hold an http(s) URL",
                           hint=f"set {variable} to {what}, starting with https:// or http://")
    return url


class Webhook(ConfigModel):
    """A hook's URL is written in the stack file (`url`), or, when it carries a credential, read
    from the environment variable that `urlEnv` names each time the hook is called."""

    name: str = Field(min_length=1)
    type: HookType
    url: str | None = Field(default=None, pattern=r"^https?://")
    url_env: EnvName | None = None
    timeout: Duration = "10s"
    retries: int = Field(default=2, ge=0, le=10)
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_url_without_credentials(self) -> Webhook:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(f"webhook {self.name!r} needs exactly one of url and urlEnv "
                             "(the name of an environment variable that holds the URL)")
        if self.url is not None and (found := url_credentials(self.url)):
            raise ValueError(
                f"webhook {self.name!r}: its url carries credentials ({', '.join(found)}), "
                "which must not be written in the stack file (it would be copied into git and "
                "the rollout journal); export the whole URL in an environment variable and "
                "give urlEnv: ENV_VAR instead of url")
        return self

    def resolved_url(self) -> str:
        """The URL to call, read from the environment at each call when the hook has urlEnv."""
        if self.url is not None:
            return self.url
        assert self.url_env is not None
        return url_from_env(self.url_env, key=f"webhook {self.name!r} urlEnv")

    def shown(self, url: str) -> str:
        return redact_url(url, path=self.url is not None)

    def scrubbed(self, text: str, url: str) -> str:
        """`text` (an error, an answer) with every part of `url` that is not shown hidden."""
        text = text.replace(url, self.shown(url))
        for secret in url_secrets(url, path=self.url is not None):
            text = text.replace(secret, "***")
        return text


class Policy(ConfigModel):
    interval: Duration = "30s"
    threshold: int = Field(default=1, ge=1)
    step_weight: int | None = Field(default=None, ge=1, le=100)
    max_weight: int = Field(default=50, ge=1, le=100)
    step_weights: list[int] | None = None
    step_weight_promotion: int | None = Field(default=None, ge=1, le=100)
    iterations: int | None = Field(default=None, ge=1)
    pauses: list[Pause] = Field(default_factory=list)
    canary_replicas: int | None = Field(default=None, ge=1)
    ready_timeout: Duration = "5m"
    # How long a confirm-* gate may keep answering no, and a manual pause wait for
    # `rollout approve`, before the rollout is reverted (outcome aborted: no verdict).
    gate_timeout: Duration = "1h"
    pause_timeout: Duration = "24h"
    skip_analysis: bool = False
    # What an interval without data counts as (never a pass), and how many inconclusive
    # intervals in a row a step may wait through before each further one counts as failed.
    on_no_data: Literal["fail", "inconclusive"] = "inconclusive"
    max_inconclusive: int = Field(default=3, ge=1, le=100)
    # Validated by rollout.analysis (parse_analysis), which owns their schema.
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=lambda: {"kind": "threshold"})
    provider: dict[str, Any] = Field(default_factory=dict)
    bearer_token_env: EnvName | None = None
    webhooks: list[Webhook] = Field(default_factory=list)
    slack_webhook_env: EnvName | None = None

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
    def gate_timeout_seconds(self) -> float:
        return parse_duration(self.gate_timeout)

    @property
    def pause_timeout_seconds(self) -> float:
        return parse_duration(self.pause_timeout)

    @property
    def ready_timeout_seconds(self) -> float:
        return parse_duration(self.ready_timeout)


def _hint(key: str) -> str:
    return f"fix {key} in stacks/Pulumi.<stack>.yaml (schema: README, 'Rollout policy')"


def analysis_spec(policy: Policy, *, key: str = "demo:analysis",
                  default_address: str | None = None) -> AnalysisSpec:
    """The metric analysis part of the policy, with secrets taken from the environment;
    `default_address` is the Prometheus to ask when the policy names none."""
    data = _analysis_data(policy, key=key, default_address=default_address)
    if policy.bearer_token_env and not os.environ.get(policy.bearer_token_env):
        raise InvalidInput(
            f"{key}.bearerTokenEnv names ${policy.bearer_token_env}, which is not set",
            hint=f"export {policy.bearer_token_env}=<token> before running the rollout",
        )
    spec = parse_analysis(data, where=key, hint=_hint(key))
    # Read now only to fail before anything changes; the provider reads them again when built.
    provider_credentials(spec.provider, where=f"{key}.provider")
    return spec


def _analysis_data(policy: Policy, *, key: str,
                   default_address: str | None = None) -> dict[str, Any]:
    provider = dict(policy.provider)
    if "address" not in provider and default_address:
        provider["address"] = default_address
    if policy.bearer_token_env:
        if "bearerTokenEnv" in provider:
            raise SettingsError([Problem(
                f"{key}.bearerTokenEnv",
                f"is set both at its top level and in provider; keep one: "
                f"{key}.provider.bearerTokenEnv or {key}.bearerTokenEnv", MASK,
            )], hint=_hint(key))
        provider["bearerTokenEnv"] = policy.bearer_token_env
    return {"interval": policy.interval, "threshold": policy.threshold,
            "onNoData": policy.on_no_data, "maxInconclusive": policy.max_inconclusive,
            "metrics": policy.metrics, "templates": policy.templates, "judge": policy.judge,
            "provider": provider}


def _pause_problems(policy: Policy, *, key: str) -> list[Problem]:
    """A pause at a weight the schedule never sets would silently be no human gate at all."""
    from rollout.core.schedule import traffic_weights

    weights = traffic_weights(policy)
    listed = ", ".join(map(str, weights))
    return [
        Problem(f"{key}.pauses[{index}].weight",
                f"the schedule never sets weight {pause.weight}, so that pause would never "
                f"happen (the schedule's weights: {listed}); pause at one of them, or add "
                f"{pause.weight} to stepWeights", pause.weight)
        for index, pause in enumerate(policy.pauses)
        if pause.weight not in weights
    ]


def _unchecked_analysis_problems(raw: object, *, key: str,
                                 found: list[Problem]) -> list[Problem]:
    """When the policy itself is refused, the problems of its analysis part all the same, so
    that one run lists every problem; those under a key already reported are left out."""
    if not isinstance(raw, Mapping):
        return []
    model: type[ConfigModel]
    if raw.get("skipAnalysis", raw.get("skip_analysis")) not in (None, False):
        model, where, rules = ProviderSpec, f"{key}.provider", PROVIDER_RULES
        data = raw.get("provider")
    else:
        model, where, rules = AnalysisSpec, key, ANALYSIS_RULES
        owned = {info.alias or name for name, info in AnalysisSpec.model_fields.items()}
        owned |= set(AnalysisSpec.model_fields)
        data = {name: value for name, value in raw.items() if name in owned}
    try:
        model.model_validate({} if data is None else data)
    except ValidationError as err:
        reported = [p.key for p in found if p.key != key]
        return [p for p in config_problems(err, model=model, key=where, rules=rules)
                if not any(p.key == r or p.key.startswith((f"{r}.", f"{r}[")) for r in reported)]
    return []


def load_policy(raw: Mapping[str, Any] | None, *,
                key: str = "demo:analysis") -> Policy:
    """Validates the policy and its analysis; a SettingsError lists every problem, each naming
    its config key, its value (never a secret) and what is allowed."""
    hint = _hint(key)
    try:
        policy = validate_config(Policy, {} if raw is None else raw, key=key,
                                 rules=POLICY_RULES, hint=hint)
    except SettingsError as err:
        more = _unchecked_analysis_problems(raw, key=key, found=err.problems)
        raise SettingsError([*err.problems, *more], hint=hint) from None
    problems = _pause_problems(policy, key=key)
    try:
        if not policy.skip_analysis:
            parse_analysis(_analysis_data(policy, key=key), where=key)
        elif policy.provider:
            # Unused, but copied into the journal with the rest of the stack config all the same.
            parse_provider(policy.provider, where=f"{key}.provider")
    except SettingsError as err:
        problems += err.problems
    if problems:
        raise SettingsError(problems, hint=hint)
    if not policy.skip_analysis:
        analysis_spec(policy, key=key)  # every variable it names must be set
    return policy
