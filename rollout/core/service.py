"""The stack configuration of one canary service, validated into a typed model (no Pulumi here)."""

from __future__ import annotations

from collections.abc import Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rollout.core.config_errors import conflict, validate_config
from rollout.core.config_model import ConfigModel, PositiveDuration
from rollout.core.durations import parse_duration
from rollout.core.errors import Problem, SettingsError
from rollout.core.routers import ROUTER_NAMES, ROUTERS
from rollout.core.stackconfig import DRIVER_OWNED, VERSION_TAG

ROUTER_KINDS = ROUTER_NAMES

_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_HOST = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_REPO = (
    r"^([A-Za-z0-9.-]+(:[0-9]+)?/)?"
    r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
)
_QUANTITY = r"^[+-]?[0-9.]+([eE][-+]?[0-9]+|[numkKMGTPE]i?)?$"
_TOKEN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

_LABEL_RULE = (
    "must be a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit, at most {n} characters"
)
_TAG_RULE = "must be an image tag matching [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_COUNT_RULE = "must be an integer >= 0"

# What a user sees for a bad value, by config path (list indices and map keys dropped; `[key]`
# for a map's keys). Durations need none: the translator names their form.
RULES: dict[str, str] = {
    "app": _LABEL_RULE.format(n=50),
    "namespace": _LABEL_RULE.format(n=63),
    "image": (
        "must be an image repository without tag or digest, e.g. registry.local/demo "
        "(the tag goes in stableVersion / canaryVersion)"
    ),
    "stableVersion": _TAG_RULE,
    "canaryVersion": _TAG_RULE,
    "canaryWeight": "must be an integer from 0 to 100",
    "canaryReplicas": _COUNT_RULE,
    "replicas": _COUNT_RULE,
    "port": "must be an integer from 1 to 65535",
    "router": "must be one of: " + ", ".join(ROUTER_KINDS),
    "hosts": "must be a non-empty list of lowercase DNS host names, e.g. [demo.example.internal]",
    "gateways": "must be a list of Istio gateway names, e.g. [istio-system/public]",
    "parentRefs": "must be a list of {name, namespace?, sectionName?}",
    "parentRefs.name": "must be a non-empty string",
    "parentRefs.namespace": _LABEL_RULE.format(n=63),
    "match": "must be a list of rules {headers?: {<name>: {exact|prefix|regex: <string>}}, "
    "cookie?: <name>=<value>}",
    "match.headers": "must map header names to exactly one of {exact, prefix, regex}",
    "match.headers[key]": "header names may contain only letters, digits and '-'",
    "match.cookie": "must be <name>=<value> without ';' or spaces, e.g. canary=always",
    "mirror": "must be true or false",
    "mirrorWeight": "must be an integer from 0 to 100",
    "sessionAffinity": "must be {cookieName: <name>, maxAge: <duration like 1h or 30m>}",
    "sessionAffinity.cookieName": "must be a cookie name (letters, digits, !#$%&'*+.^_`|~-)",
    "resources": "must be {requests?: {cpu?, memory?}, limits?: {cpu?, memory?}}",
    "resources.requests.cpu": "must be a Kubernetes quantity, e.g. 100m or 1",
    "resources.limits.cpu": "must be a Kubernetes quantity, e.g. 100m or 1",
    "resources.requests.memory": "must be a Kubernetes quantity, e.g. 128Mi",
    "resources.limits.memory": "must be a Kubernetes quantity, e.g. 128Mi",
    "env": "must map variable names to string values",
    "env[key]": "variable names must match [-._a-zA-Z][-._a-zA-Z0-9]*",
    "readinessPath": "must be an HTTP path starting with '/'",
    "hpa": "must be {minReplicas?, maxReplicas, cpuUtilization?}",
    "hpa.minReplicas": "must be an integer >= 1",
    "hpa.maxReplicas": "must be an integer >= 1",
    "hpa.cpuUtilization": "must be an integer from 1 to 100 (percent of the CPU request)",
    "progressDeadlineSeconds": "must be an integer >= 1",
    "awaitTimeoutSeconds": "must be an integer >= 1",
    "analysis": "must be an object (it is validated by the rollout driver)",
    "promotion": "must be an object (it is validated by `rollout release`)",
    "stateStore": ("must be cluster (the default: a CanaryRollout and a Lease in the stack's "
                   "namespace; run `rollout install` once) or file (the journal directory, "
                   "for offline use)"),
}


def _known_router(value: str) -> str:
    if value not in ROUTERS:
        raise ValueError(RULES["router"])
    return value


def _no_bool(value: Any) -> Any:
    # pydantic would take true as 1; in config that is always a mistake.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Label = Annotated[str, StringConstraints(pattern=_LABEL, max_length=63)]
Tag = Annotated[str, StringConstraints(pattern=VERSION_TAG)]
Host = Annotated[str, StringConstraints(pattern=_HOST, max_length=253)]
Quantity = Annotated[str, BeforeValidator(_scalar_to_str), StringConstraints(pattern=_QUANTITY)]
EnvValue = Annotated[str, BeforeValidator(_scalar_to_str)]
EnvName = Annotated[str, StringConstraints(pattern=_ENV_NAME)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$", to_lower=True)]


class HeaderMatch(ConfigModel):
    """How one request header must match: exactly one of exact, prefix, regex."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HeaderMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise conflict("must set exactly one of exact, prefix, regex")
        return self

    @property
    def kind(self) -> Literal["exact", "prefix", "regex"]:
        if self.exact is not None:
            return "exact"
        return "prefix" if self.prefix is not None else "regex"

    @property
    def value(self) -> str:
        return next(v for v in (self.exact, self.prefix, self.regex) if v is not None)


class MatchRule(ConfigModel):
    """An A/B rule: requests matching all of its conditions go to the canary."""

    headers: dict[HeaderName, HeaderMatch] | None = None
    cookie: Annotated[str, StringConstraints(pattern=r"^[^;=\s]+=[^;\s]*$")] | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> MatchRule:
        if not self.headers and self.cookie is None:
            raise conflict("must set headers, cookie or both")
        if self.cookie is not None and "cookie" in (self.headers or {}):
            raise conflict("use either the cookie field or a 'cookie' header match, not both")
        return self


class ParentRef(ConfigModel):
    """A Gateway API parent (Gateway, or Service for mesh routing)."""

    name: Annotated[str, StringConstraints(min_length=1)]
    namespace: Label | None = None
    section_name: str | None = None


class SessionAffinity(ConfigModel):
    """Cookie-based stickiness of a client to one backend pod."""

    cookie_name: Annotated[str, StringConstraints(pattern=_TOKEN)]
    max_age: PositiveDuration

    @property
    def max_age_seconds(self) -> int:
        return round(parse_duration(self.max_age))


class ResourceList(ConfigModel):
    """CPU and memory quantities."""

    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(ConfigModel):
    """Container resource requests and limits."""

    requests: ResourceList | None = None
    limits: ResourceList | None = None


class Hpa(ConfigModel):
    """A HorizontalPodAutoscaler for the primary Deployment."""

    min_replicas: Annotated[Int, Field(ge=1)] = 1
    max_replicas: Annotated[Int, Field(ge=1)]
    cpu_utilization: Annotated[Int, Field(ge=1, le=100)] = 80

    @model_validator(mode="after")
    def _ordered(self) -> Hpa:
        if self.min_replicas > self.max_replicas:
            raise conflict("minReplicas must not exceed maxReplicas")
        return self


class ServiceSettings(ConfigModel):
    """Everything the Pulumi program needs for one service; built from the stack config."""

    app: Annotated[str, StringConstraints(pattern=_LABEL, max_length=50)]
    namespace: Label = "default"
    # Whether this stack owns (creates and deletes) its namespace.
    create_namespace: bool = False
    image: Annotated[str, StringConstraints(pattern=_REPO, max_length=255)]
    stable_version: Tag
    canary_version: Tag | None = None
    canary_weight: Annotated[Int, Field(ge=0, le=100)] = 0
    canary_replicas: Annotated[Int, Field(ge=0)] = 0
    replicas: Annotated[Int, Field(ge=0)] = 2
    port: Annotated[Int, Field(ge=1, le=65535)] = 8080
    router: Annotated[str, AfterValidator(_known_router)] = "istio"
    hosts: Annotated[list[Host], Field(min_length=1)] = Field(
        default_factory=lambda data: [data["app"]] if "app" in data else []
    )
    gateways: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    parent_refs: list[ParentRef] = Field(default_factory=list, validate_default=True)
    match: list[MatchRule] = Field(default_factory=list)
    mirror: bool = False
    mirror_weight: Annotated[Int, Field(ge=0, le=100)] = 100
    session_affinity: SessionAffinity | None = None
    resources: Resources | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    readiness_path: Annotated[str, StringConstraints(pattern=r"^/\S*$")] = "/healthz"
    hpa: Hpa | None = None
    progress_deadline_seconds: Annotated[Int, Field(ge=1)] = 600
    await_timeout_seconds: Annotated[Int, Field(ge=1)] = 300
    # Opaque here: the rollout driver owns and validates the analysis schema.
    analysis: dict[str, Any] | None = None
    promotion: dict[str, Any] | None = None
    # Where the driver keeps rollout state (rollout.app.api): the program ignores it. Every
    # stack of this program deploys to a cluster, so by default its state lives there too.
    state_store: Literal["file", "cluster"] = "cluster"

    @field_validator("gateways")
    @classmethod
    def _gateways_need_istio(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and info.data.get("router") == "gateway-api":
            raise conflict("applies only to router=istio; for gateway-api set parentRefs")
        return value

    @field_validator("parent_refs")
    @classmethod
    def _parent_refs_need_gateway_api(
        cls, value: list[ParentRef], info: ValidationInfo
    ) -> list[ParentRef]:
        if value and info.data.get("router") == "istio":
            raise conflict("applies only to router=gateway-api; for istio set gateways")
        if not value and info.data.get("router") == "gateway-api":
            raise conflict("router gateway-api needs parentRefs: the Gateway (or mesh Service) "
                           "its HTTPRoute attaches to, e.g. [{name: public, namespace: gateways}]")
        return value

    @field_validator("mirror")
    @classmethod
    def _mirror_needs_zero_weight(cls, value: bool, info: ValidationInfo) -> bool:
        weight = info.data.get("canary_weight", 0)
        if value and weight:
            raise conflict(
                f"mirroring needs canaryWeight = 0 (it is {weight}): mirrored traffic is a "
                "copy of live traffic, so set canaryWeight to 0 or mirror to false"
            )
        return value

    @field_validator("session_affinity")
    @classmethod
    def _affinity_needs_istio(
        cls, value: SessionAffinity | None, info: ValidationInfo
    ) -> SessionAffinity | None:
        if value is not None and info.data.get("router") == "gateway-api":
            raise conflict(
                "sessionAffinity is not supported by the gateway-api router; use router=istio"
            )
        return value

    @field_validator("env")
    @classmethod
    def _version_is_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        if "VERSION" in value:
            raise conflict("must not set VERSION: the component sets it to the running version")
        return value

    @property
    def effective_canary_version(self) -> str:
        return self.canary_version or self.stable_version

    @property
    def stable_image(self) -> str:
        return f"{self.image}:{self.stable_version}"

    @property
    def canary_image(self) -> str:
        return f"{self.image}:{self.effective_canary_version}"

    @property
    def primary_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def primary_name(self) -> str:
        return f"{self.app}-primary"

    @property
    def canary_name(self) -> str:
        return f"{self.app}-canary"


def _is_text(annotation: Any) -> bool:
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin is Literal:
        return all(isinstance(a, str) for a in args)
    if origin is Annotated or origin in (Union, UnionType):
        return len(args) >= 1 and _is_text(args[0])
    return annotation is str


def config_keys() -> dict[str, bool]:
    """Every known config key, as typed in config, -> whether its value is plain text.

    Pulumi hands every config value over as a string; only non-text values are JSON.
    """
    return {
        field.alias or name: _is_text(field.annotation)
        for name, field in ServiceSettings.model_fields.items()
    }


_MISSING_PLACEHOLDER = {"image": "<repository>", "stableVersion": "<tag>"}


def load_settings(raw: Mapping[str, Any], *, service: str) -> ServiceSettings:
    """Validate one service's config (keys without the `<service>:` prefix, values parsed)
    into ServiceSettings; `app` defaults to the service's name.

    Raises SettingsError listing every bad key with its value and what is allowed.
    """
    # by_name=False: in config, snake_case keys are unknown keys (with a did-you-mean).
    data = {"app": service, **raw} if isinstance(raw, Mapping) else raw
    return validate_config(ServiceSettings, data, key=f"{service}:",
                           rules=RULES, placeholders=_MISSING_PLACEHOLDER, by_name=False)


def owned_objects(service: str, raw: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, app) of a service's Kubernetes objects, from its unvalidated settings:
    two services with the same pair would own the same Deployments, Services and route."""
    fields = ServiceSettings.model_fields
    return (str(raw.get("namespace", fields["namespace"].default)),
            str(raw.get("app", service)))


def code_settings(service: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Settings a program passes to `CanaryService(service, **given)`, keyed as in config.

    Python names (parent_refs) and config names (parentRefs) are both accepted. The keys the
    driver owns are refused: they must stay stack config, or a rollout could not change them.
    """
    by_name = {name: field.alias or name for name, field in ServiceSettings.model_fields.items()}
    known = {*by_name, *by_name.values()}
    problems = []
    aliased: dict[str, Any] = {}
    for name, value in given.items():
        where = f'CanaryService("{service}", {name}=...)'
        if name not in known:
            problems.append(Problem(where, "is not a setting; known: " + ", ".join(
                sorted(by_name)), has_value=False))
            continue
        key = by_name.get(name, name)
        if key in DRIVER_OWNED:
            problems.append(Problem(where, f"is driver-owned: it comes from the stack config "
                                    f"only (pulumi config set {service}:{key} <value>)",
                                    has_value=False))
            continue
        aliased[key] = value
    if problems:
        raise SettingsError(problems)
    return aliased


def service_settings(service: str, config: Mapping[str, Any],
                     code: Mapping[str, Any] | None = None) -> ServiceSettings:
    """A service's settings from its stack config and, for a program that passes some in code,
    from there: each setting has one source, so a key set in both is an error."""
    from_code = code_settings(service, code or {})
    twice = sorted(set(from_code) & set(config))
    if twice:
        raise SettingsError([Problem(f"{service}:{key}", "is also set in code by "
                                     f'CanaryService("{service}", ...); keep one of the two',
                                     has_value=False) for key in twice])
    return load_settings({**from_code, **config}, service=service)
