"""The rollout policy of one environment: the `analysis` object of its stack config."""

from __future__ import annotations

import itertools
import os
import re
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rollout.core.analysis_model import (
    AnalysisSpec,
    EnvName,
    parse_analysis,
    parse_provider,
    provider_credentials,
)
from rollout.core.durations import parse_duration
from rollout.core.errors import InvalidInput

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


# Query parameters whose names (split at -, _, . and camelCase humps) say they carry a credential.
_TOKEN_WORDS = frozenset({
    "token", "key", "apikey", "secret", "signature", "sig", "password", "passwd", "auth",
    "authorization", "credential", "credentials",
})
_TOKEN_ENDINGS = ("token", "secret", "password", "signature")


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&"):
        name, equals, value = item.partition("=")
        if item:
            pairs.append((name, value if equals else None))
    return pairs


def _token_like(name: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", unquote_plus(name)).lower()
    return any(word in _TOKEN_WORDS or word.endswith(_TOKEN_ENDINGS)
               for word in re.split(r"[-_.\s]+", words))


def url_credentials(url: str) -> list[str]:
    """What in a URL is a credential: userinfo (user:password@) and token-like query parameters."""
    parts = urlsplit(url)
    found = ["userinfo (user:password@)"] if "@" in parts.netloc else []
    found += [f"query parameter {name!r}" for name, _ in _query_pairs(parts.query)
              if _token_like(name)]
    return found


def redact_url(url: str, *, path: bool = True) -> str:
    """The one way a webhook URL is shown: userinfo, query values and fragment become ***, and so
    does the path unless `path` (a URL from the environment is secret as a whole)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    _userinfo, at, host = parts.netloc.rpartition("@")
    shown = f"{parts.scheme}://{'***@' if at else ''}{host}"
    shown += parts.path if path or not parts.path.strip("/") else "/***"
    if parts.query:
        shown += "?" + "&".join("***" if value is None else f"{name}=***"
                                for name, value in _query_pairs(parts.query))
    return shown + ("#***" if parts.fragment else "")


def url_secrets(url: str, *, path: bool = True) -> list[str]:
    """The parts of `url` that redact_url hides, longest first, to scrub them from other text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    pairs = _query_pairs(parts.query)
    userinfo = parts.netloc.rpartition("@")[0]
    hidden = [userinfo, *userinfo.split(":", 1), parts.fragment]
    hidden += [value if value is not None else name for name, value in pairs]
    if not path:
        hidden += [parts.path, *parts.path.split("/")]
    # Shorter pieces (a page number, "hooks") are no secret and would blank unrelated text.
    found = {piece for text in hidden for piece in (text, unquote_plus(text)) if len(piece) >= 6}
    return sorted(found, key=len, reverse=True)


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


class Webhook(_Model):
    """A hook's URL is written in the stack file (`url`), or, when it carries a credential, read
    from the environment variable that `urlEnv` names each time the hook is called."""

    name: str = Field(min_length=1)
    type: HookType
    url: str | None = Field(default=None, pattern=r"^https?://")
    url_env: EnvName | None = Field(default=None, alias="urlEnv")
    timeout: str = "10s"
    retries: int = Field(default=2, ge=0, le=10)
    metadata: dict[str, str] = Field(default_factory=dict)

    _check = field_validator("timeout")(lambda v: _duration(v))

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
    # How long a confirm-* gate may keep answering no, and a manual pause wait for
    # `rollout approve`, before the rollout is reverted (outcome aborted: no verdict).
    gate_timeout: str = Field(default="1h", alias="gateTimeout")
    pause_timeout: str = Field(default="24h", alias="pauseTimeout")
    skip_analysis: bool = Field(default=False, alias="skipAnalysis")
    # What an interval without data counts as (never a pass), and how many inconclusive
    # intervals in a row a step may wait through before each further one counts as failed.
    on_no_data: Literal["fail", "inconclusive"] = Field(default="inconclusive", alias="onNoData")
    max_inconclusive: int = Field(default=3, alias="maxInconclusive", ge=1, le=100)
    # Validated by rollout.analysis (parse_analysis), which owns their schema.
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=lambda: {"kind": "threshold"})
    provider: dict[str, Any] = Field(default_factory=dict)
    bearer_token_env: EnvName | None = Field(default=None, alias="bearerTokenEnv")
    webhooks: list[Webhook] = Field(default_factory=list)
    slack_webhook_env: EnvName | None = Field(default=None, alias="slackWebhookEnv")

    _intervals = field_validator("interval", "ready_timeout", "gate_timeout",
                                 "pause_timeout")(lambda v: _duration(v))

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


def analysis_spec(policy: Policy, *, key: str = "canary-service:analysis",
                  default_address: str | None = None) -> AnalysisSpec:
    """The metric analysis part of the policy, with secrets taken from the environment;
    `default_address` is the Prometheus to ask when the policy names none."""
    provider = dict(policy.provider)
    if "address" not in provider and default_address:
        provider["address"] = default_address
    if policy.bearer_token_env:
        if "bearerTokenEnv" in provider:
            raise InvalidInput(
                f"{key} sets bearerTokenEnv both at its top level and in provider",
                hint=f"keep one: {key}.provider.bearerTokenEnv or {key}.bearerTokenEnv",
            )
        if not os.environ.get(policy.bearer_token_env):
            raise InvalidInput(
                f"{key}.bearerTokenEnv names ${policy.bearer_token_env}, which is not set",
                hint=f"export {policy.bearer_token_env}=<token> before running the rollout",
            )
        provider["bearerTokenEnv"] = policy.bearer_token_env
    spec = parse_analysis(
        {"interval": policy.interval, "threshold": policy.threshold,
         "onNoData": policy.on_no_data, "maxInconclusive": policy.max_inconclusive,
         "metrics": policy.metrics, "templates": policy.templates, "judge": policy.judge,
         "provider": provider},
        where=key,
    )
    # Read now only to fail before anything changes; the provider reads them again when built.
    provider_credentials(spec.provider, where=f"{key}.provider")
    return spec


def _pauses_on_steps(policy: Policy, *, key: str) -> None:
    """A pause at a weight the schedule never sets would silently be no human gate at all."""
    from rollout.core.schedule import traffic_weights

    weights = traffic_weights(policy)
    stray = sorted({p.weight for p in policy.pauses} - set(weights))
    if stray:
        raise InvalidInput(
            f"{key}.pauses: the schedule never sets weight {', '.join(map(str, stray))}, so "
            f"that pause would never happen (the schedule's weights: "
            f"{', '.join(map(str, weights))})",
            hint="pause at one of the schedule's weights, or add the weight to stepWeights",
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
        ) from None  # the cause would show the input, which may hold a secret
    _pauses_on_steps(policy, key=key)
    if not policy.skip_analysis:
        analysis_spec(policy, key=key)
    elif policy.provider:
        # Unused, but copied into the journal with the rest of the stack config all the same.
        parse_provider(policy.provider, where=f"{key}.provider")
    return policy
