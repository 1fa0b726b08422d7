"""Analysis configuration as users write it: metrics, judge and metric provider."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from rollout.core.config_errors import validate_config
from rollout.core.config_model import ConfigModel
from rollout.core.config_model import PositiveDuration as Duration
from rollout.core.durations import format_duration, parse_duration
from rollout.core.errors import InvalidInput
from rollout.core.values import check_variable

Direction = Literal["higher-is-worse", "lower-is-worse", "either"]
# What an interval without data counts as: a failed check, or an inconclusive one (the step
# waits; more than maxInconclusive in a row fail it). Never a pass.
NoData = Literal["fail", "inconclusive"]

BUILTIN_METRICS = ("request-success-rate", "request-duration")
BUILTIN_DIRECTIONS: dict[str, Direction] = {
    "request-success-rate": "lower-is-worse",
    "request-duration": "higher-is-worse",
}


def _value_error(exc: InvalidInput) -> ValueError:
    # pydantic reports only ValueErrors as a field's problem; keep the message and its fix.
    return ValueError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)


MetricName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class ThresholdRange(ConfigModel):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class MetricSpec(ConfigModel):
    name: MetricName
    query: str | None = None
    template_ref: str | None = None
    threshold_range: ThresholdRange | None = None
    interval: Duration | None = None
    direction: Direction | None = None
    critical: bool = False
    weight: float = Field(default=1.0, gt=0)
    min_effect: float | None = Field(default=None, ge=0)
    on_no_data: NoData | None = None
    on_error: Literal["fail"] = "fail"
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("on_no_data", mode="before")
    @classmethod
    def _no_ignore(cls, value: object) -> object:
        if value == "ignore":
            raise ValueError(
                "onNoData: ignore is no longer accepted, because no data is never a pass; "
                "use inconclusive (the step waits, and fails after maxInconclusive intervals "
                "in a row) or fail"
            )
        return value

    @field_validator("variables")
    @classmethod
    def _safe_variables(cls, variables: dict[str, str]) -> dict[str, str]:
        for name, value in variables.items():
            try:
                check_variable(name, value)
            except InvalidInput as exc:
                raise _value_error(exc) from None
        return variables

    @model_validator(mode="after")
    def _has_a_query(self) -> MetricSpec:
        if self.query is not None and self.template_ref is not None:
            raise ValueError(f"metric {self.name!r} sets both query and templateRef; keep one")
        if self.query is None and self.template_ref is None and not self.builtin:
            raise ValueError(
                f"metric {self.name!r} needs a query or a templateRef "
                f"(only {', '.join(BUILTIN_METRICS)} are built in)"
            )
        return self

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_METRICS and self.query is None and self.template_ref is None

    @property
    def worse(self) -> Direction:
        """The direction in which a change is a regression."""
        if self.direction is not None:
            return self.direction
        return BUILTIN_DIRECTIONS.get(self.name, "either") if self.builtin else "either"


class JudgeSpec(ConfigModel):
    kind: Literal["threshold", "comparative", "sequential"] = "threshold"
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)
    min_effect: float = Field(default=0.01, ge=0)
    confidence: float = Field(default=0.98, gt=0, lt=1)
    step: Duration = "30s"
    slow_request_ms: float | None = Field(default=None, gt=0)
    prior_scale: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _scores_ordered(self) -> JudgeSpec:
        if self.marginal_score > self.pass_score:
            raise ValueError(
                f"marginalScore {self.marginal_score} is above passScore {self.pass_score}"
            )
        return self


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_NOT_IN_THE_STACK_FILE = (
    "must not be written in the stack file (it would be copied into git and the rollout journal)"
)


def _env_name(value: str) -> str:
    # The message never repeats the value: a user who wrote the secret itself here would see it.
    if not _ENV_NAME.match(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and _, not starting "
            "with a digit), not the secret itself"
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


def _refuse_inline(data: object, keys: tuple[str, ...], *, name: str, fix: str) -> None:
    if isinstance(data, Mapping) and any(key in data for key in keys):
        raise ValueError(f"{name} {_NOT_IN_THE_STACK_FILE}; {fix}")


class BasicAuth(ConfigModel):
    username: str = Field(min_length=1)
    password_env: EnvName

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: object) -> object:
        _refuse_inline(
            data, ("password",), name="basicAuth.password",
            fix="give basicAuth.passwordEnv: ENV_VAR, the name of an environment variable "
            "that holds the password",
        )
        return data


class ProviderSpec(ConfigModel):
    """Where the metrics are and how to reach them; credentials are named by `*Env` only."""

    kind: Literal["prometheus", "nop"] = "prometheus"
    address: str = Field(default="http://127.0.0.1:9090", pattern=r"^https?://[^\s/]+(/\S*)?$")
    bearer_token_env: EnvName | None = None
    basic_auth: BasicAuth | None = None
    headers_env: dict[Annotated[str, Field(pattern=_HEADER_NAME)], EnvName] = Field(
        default_factory=dict
    )
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0, le=30)

    @field_validator("address")
    @classmethod
    def _no_userinfo(cls, address: str) -> str:
        if "@" in urlsplit(address).netloc:
            raise ValueError(
                f"address carries credentials (user:password@), which {_NOT_IN_THE_STACK_FILE}"
                " or be printed with the address; give basicAuth: {username: ..., "
                "passwordEnv: ENV_VAR} instead (also when the address comes from "
                "$CANARY_PROMETHEUS_URL)"
            )
        return address

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: object) -> object:
        _refuse_inline(
            data, ("bearerToken", "bearer_token"), name="bearerToken",
            fix="give bearerTokenEnv: ENV_VAR, the name of an environment variable that "
            "holds the token",
        )
        _refuse_inline(
            data, ("headers",), name="headers",
            fix="give headersEnv: {Header-Name: ENV_VAR}, naming for each header the "
            "environment variable that holds its value",
        )
        return data

    @model_validator(mode="after")
    def _one_of_each(self) -> ProviderSpec:
        if self.bearer_token_env is not None and self.basic_auth is not None:
            raise ValueError("set bearerTokenEnv or basicAuth, not both")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("set caFile or insecureSkipVerify, not both")
        return self


class ProviderCredentials(BaseModel):
    """The secrets a provider sends, read from the environment as it is built; never stored."""

    # Not a ConfigModel: built in code from the environment, never validated from config.
    model_config = ConfigDict(frozen=True)

    bearer_token: SecretStr | None = None
    basic_auth: tuple[str, SecretStr] | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)


def provider_credentials(
    spec: ProviderSpec, *, where: str = "analysis.provider"
) -> ProviderCredentials:
    """Reads every variable the spec names; one that is unset or empty is an error naming it."""

    def read(key: str, variable: str) -> SecretStr:
        value = os.environ.get(variable)
        if not value:
            raise InvalidInput(
                f"{where}.{key} names ${variable}, which is not set",
                hint=f"export {variable}=<secret> before running the rollout",
            )
        return SecretStr(value)

    basic = spec.basic_auth
    token = spec.bearer_token_env
    return ProviderCredentials(
        bearer_token=read("bearerTokenEnv", token) if token else None,
        basic_auth=(basic.username, read("basicAuth.passwordEnv", basic.password_env))
        if basic
        else None,
        headers={
            name: read(f"headersEnv.{name}", variable)
            for name, variable in spec.headers_env.items()
        },
    )


# What a user sees for a bad value where the type alone says too little (config_errors).
PROVIDER_RULES = {
    "address": "must be an http(s) URL without credentials, e.g. http://prometheus:9090",
    "headersEnv[key]": "header names may contain only letters, digits and !#$%&'*+.^_`|~-",
}
ANALYSIS_RULES = {
    "metrics.name": (
        "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
        "with a letter or digit, at most 63 characters"
    ),
    **{f"provider.{path}": rule for path, rule in PROVIDER_RULES.items()},
}


def parse_provider(
    data: Mapping[str, object], *, where: str = "analysis.provider", hint: str | None = None
) -> ProviderSpec:
    """Validates a provider alone, e.g. one that skipAnalysis leaves unused but still stored;
    a SettingsError lists every problem."""
    return validate_config(ProviderSpec, data, key=where, rules=PROVIDER_RULES, hint=hint)


class AnalysisSpec(ConfigModel):
    interval: Duration = "1m"
    threshold: int = Field(default=1, ge=1)
    on_no_data: NoData = "inconclusive"
    max_inconclusive: int = Field(default=3, ge=1, le=100)
    metrics: list[MetricSpec] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    provider: ProviderSpec = Field(default_factory=ProviderSpec)

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisSpec:
        names = [metric.name for metric in self.metrics]
        if dupes := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"metric names must be unique; repeated: {', '.join(dupes)}")
        for metric in self.metrics:
            if metric.template_ref is not None and metric.template_ref not in self.templates:
                known = ", ".join(sorted(self.templates)) or "none defined"
                raise ValueError(
                    f"metric {metric.name!r} refers to template {metric.template_ref!r}, "
                    f"which is not in templates ({known})"
                )
            if self.judge.kind != "comparative" and metric.threshold_range is None:
                use = "for the threshold judge" if self.judge.kind == "threshold" else (
                    "; with the sequential judge, metrics are absolute guards only"
                )
                raise ValueError(
                    f"metric {metric.name!r} needs a thresholdRange (min and/or max) {use}"
                )
        if self.judge.kind != "sequential" and not self.metrics:
            raise ValueError(f"the {self.judge.kind} judge needs at least one metric")
        if self.judge.kind == "comparative":
            self._can_fail()
        return self

    def _can_fail(self) -> None:
        """Refuse a comparative policy that could never show a regression in time.

        Samples add up over the rollout, and a step waits (inconclusive) until they are enough
        for Mann-Whitney to reach p < alpha; waiting more than maxInconclusive intervals fails
        the step. So the samples of maxInconclusive + 1 intervals must be enough.
        """
        from rollout.core.mann_whitney import samples_needed

        interval, step = parse_duration(self.interval), parse_duration(self.judge.step)
        per_interval = int(interval // step)
        intervals = self.max_inconclusive + 1
        for metric in self.metrics:
            needed = samples_needed(self.judge.alpha, metric.worse)
            if per_interval * intervals >= needed:
                continue
            smallest = math.ceil(needed / intervals) * step
            raise ValueError(
                f"the comparative judge takes {per_interval} sample(s) a side per interval "
                f"(interval {self.interval} / judge.step {self.judge.step}), "
                f"{per_interval * intervals} in the {intervals} intervals a step may wait "
                f"(maxInconclusive {self.max_inconclusive} + 1); Mann-Whitney needs "
                f"{needed} a side to ever show {metric.name!r} worse at alpha "
                f"{self.judge.alpha:g}, so the judge could never fail a canary in time. Set "
                f"interval to at least {format_duration(smallest)}, or raise maxInconclusive "
                f"(keep judge.step at least 2x the Prometheus scrape interval)"
            )

    def interval_of(self, metric: MetricSpec) -> str:
        return metric.interval or self.interval

    def no_data_of(self, metric: MetricSpec) -> NoData:
        return metric.on_no_data or self.on_no_data


def parse_analysis(
    data: Mapping[str, object], *, where: str = "analysis", hint: str | None = None
) -> AnalysisSpec:
    """Validate user config; a SettingsError lists every problem, naming its key in `where`."""
    return validate_config(AnalysisSpec, data, key=where, rules=ANALYSIS_RULES, hint=hint)
