"""Stack config validation: defaults, derived values and one actionable message per bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.core.errors import InvalidInput, SettingsError
from rollout.core.service import (
    ROUTER_KINDS,
    ServiceSettings,
    config_keys,
    load_settings,
)

BASE: dict[str, Any] = {"app": "demo", "image": "registry.local/demo", "stableVersion": "v1"}


def settings(**overrides: Any) -> ServiceSettings:
    return load_settings({**BASE, **overrides}, service="demo")


def problems_of(raw: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(raw, service="demo")
    return str(caught.value)


def test_defaults() -> None:
    s = settings()
    assert (s.namespace, s.replicas, s.canary_replicas, s.canary_weight) == ("default", 2, 0, 0)
    assert (s.port, s.router, s.hosts, s.gateways, s.match) == (8080, "istio", ["demo"], [], [])
    assert (s.mirror, s.mirror_weight, s.readiness_path) == (False, 100, "/healthz")
    assert (s.progress_deadline_seconds, s.await_timeout_seconds) == (600, 300)
    assert s.session_affinity is s.resources is s.hpa is s.analysis is None


def test_derived_values() -> None:
    s = settings(canaryVersion="v2", canaryWeight=10)
    assert s.stable_image == "registry.local/demo:v1"
    assert s.canary_image == "registry.local/demo:v2"
    assert (s.primary_weight, s.effective_canary_version) == (90, "v2")
    assert (s.primary_name, s.canary_name) == ("demo-primary", "demo-canary")


def test_canary_version_defaults_to_stable() -> None:
    s = settings()
    assert s.canary_version is None
    assert s.effective_canary_version == "v1"
    assert s.canary_image == s.stable_image


def test_full_config_parses() -> None:
    s = settings(
        namespace="lab",
        router="gateway-api",
        hosts=["demo.lab.example.internal"],
        parentRefs=[{"name": "public", "namespace": "gw", "sectionName": "http"}],
        match=[{"headers": {"X-User": {"exact": "beta"}}, "cookie": "canary=always"}],
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1}},
        env={"LOG_LEVEL": "debug", "WORKERS": 4, "DEBUG": False},
        hpa={"minReplicas": 2, "maxReplicas": 5, "cpuUtilization": 70},
        mirror=True,
        mirrorWeight=50,
    )
    assert s.parent_refs[0].section_name == "http"
    assert list(s.match[0].headers or {}) == ["x-user"]  # header names are case-insensitive
    assert s.resources is not None and s.resources.limits is not None
    assert s.resources.limits.cpu == "1"
    assert s.env == {"LOG_LEVEL": "debug", "WORKERS": "4", "DEBUG": "false"}
    assert s.hpa is not None and (s.hpa.min_replicas, s.hpa.max_replicas) == (2, 5)


def test_numbers_given_as_text_are_accepted() -> None:
    assert settings(canaryWeight="10").canary_weight == 10


def test_analysis_is_kept_opaque() -> None:
    analysis = {"interval": "10s", "stepWeights": [5, 10], "anything": {"nested": True}}
    assert settings(analysis=analysis).analysis == analysis


def test_session_affinity_duration() -> None:
    s = settings(sessionAffinity={"cookieName": "sticky", "maxAge": "1h30m"})
    assert s.session_affinity is not None
    assert s.session_affinity.max_age_seconds == 5400


def test_python_names_work_for_teams_building_settings_in_code() -> None:
    s = ServiceSettings(app="demo", image="registry.local/demo", stable_version="v1")
    assert s.stable_image == "registry.local/demo:v1"


def test_config_keys_mark_text_values() -> None:
    keys = config_keys()
    assert keys["stableVersion"] and keys["app"] and keys["router"]
    assert not keys["canaryWeight"] and not keys["analysis"] and not keys["hosts"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"canaryWeight": 150},
            "demo:canaryWeight = 150: must be an integer from 0 to 100",
        ),
        (
            {"canaryWeight": -1},
            "demo:canaryWeight = -1: must be an integer from 0 to 100",
        ),
        (
            {"canaryWeight": 12.5},
            "demo:canaryWeight = 12.5: must be an integer from 0 to",
        ),
        (
            {"canaryWeight": True},
            "demo:canaryWeight = true: must be an integer from 0 to",
        ),
        (
            {"mirrorWeight": 101},
            "demo:mirrorWeight = 101: must be an integer from 0 to 100",
        ),
        ({"replicas": -1}, "demo:replicas = -1: must be an integer >= 0"),
        ({"canaryReplicas": -3}, "demo:canaryReplicas = -3: must be an integer >= 0"),
        ({"port": 0}, "demo:port = 0: must be an integer from 1 to 65535"),
        ({"app": "Demo_App"}, 'demo:app = "Demo_App": must be a DNS-1123 label'),
        ({"app": "a" * 51}, "at most 50 characters"),
        ({"app": "-demo"}, 'demo:app = "-demo": must be a DNS-1123 label'),
        ({"namespace": "Prod"}, 'demo:namespace = "Prod": must be a DNS-1123 label'),
        (
            {"router": "nginx"},
            'demo:router = "nginx": must be one of: istio, gateway-api',
        ),
        ({"image": "registry.local/demo:v1"}, "must be an image repository without tag or digest"),
        (
            {"stableVersion": "v1 beta"},
            'demo:stableVersion = "v1 beta": must be an image',
        ),
        ({"canaryVersion": ".v2"}, "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        ({"hosts": []}, "demo:hosts = []: must be a non-empty list"),
        ({"hosts": ["Demo.Example"]}, 'demo:hosts[0] = "Demo.Example": must be a'),
        ({"readinessPath": "healthz"}, "must be an HTTP path starting with '/'"),
        ({"analysis": "fast"}, 'demo:analysis = "fast": must be an object'),
        (
            {"canaryWeight": 10, "mirror": True},
            "demo:mirror = true: mirroring needs canaryWeight = 0 (it is 10)",
        ),
        (
            {"router": "gateway-api", "sessionAffinity": {"cookieName": "c", "maxAge": "1h"}},
            "sessionAffinity is not supported by the gateway-api router; use router=istio",
        ),
        ({"router": "gateway-api", "gateways": ["gw"]}, "applies only to router=istio"),
        ({"parentRefs": [{"name": "gw"}]}, "applies only to router=gateway-api"),
        (
            # The project's one duration grammar: no fractions (1d is fine, as in policies).
            {"sessionAffinity": {"cookieName": "c", "maxAge": "1.5h"}},
            'demo:sessionAffinity.maxAge = "1.5h": must be a duration: whole numbers',
        ),
        (
            {"hpa": {"minReplicas": 5, "maxReplicas": 2}},
            'demo:hpa = {"minReplicas": 5, "maxReplicas": 2}: minReplicas must not',
        ),
        ({"hpa": {}}, "demo:hpa.maxReplicas is not set: run `pulumi config set --path"),
        ({"hpa": {"maxReplicas": 3, "cpuUtilization": 0}}, "must be an integer from 1 to 100"),
        ({"resources": {"limits": {"memory": "lots"}}}, "must be a Kubernetes quantity"),
        ({"env": {"VERSION": "x"}}, "must not set VERSION"),
        ({"env": {"BAD NAME": "x"}}, 'demo:env["BAD NAME"] = "BAD NAME": variable names'),
        ({"match": [{}]}, "demo:match[0] = {}: must set headers, cookie or both"),
        (
            {"match": [{"headers": {"x-user": {"exact": "a", "regex": "b"}}}]},
            'demo:match[0].headers["x-user"] = ',
        ),
        ({"match": [{"cookie": "no-equals-sign"}]}, "must be <name>=<value>"),
        (
            # An unknown key's text is never echoed: it may be a misspelt credential.
            {"parentRefs": [{"nme": "gw"}], "router": "gateway-api"},
            "demo:parentRefs[0].nme = ***: is not a known setting; did you mean name? "
            "known settings: name, namespace, sectionName",
        ),
        (
            {"parentRefs": [{"nme": "gw"}], "router": "gateway-api"},
            "demo:parentRefs[0].name is not set: run "
            "`pulumi config set --path 'parentRefs[0].name' <value>`; it must be a non-empty",
        ),
        ({"env": {"DB_PASSWORD": ["hunter2"]}}, "demo:env.DB_PASSWORD = ***: must map"),
        (
            {"sessionAffinity": {"cookieName": "c", "maxAge": "0s"}},
            'demo:sessionAffinity.maxAge = "0s": must be a duration longer than zero',
        ),
    ],
)
def test_invalid_value_names_key_value_and_allowed(
    overrides: dict[str, Any], expected: str
) -> None:
    assert expected in problems_of({**BASE, **overrides})


def test_missing_image_says_how_to_set_it() -> None:
    raw = {k: v for k, v in BASE.items() if k != "image"}
    message = problems_of(raw)
    assert "demo:image is not set: run `pulumi config set image <repository>`" in message


def test_missing_required_keys_are_all_reported() -> None:
    message = problems_of({})
    for key in ("image", "stableVersion"):
        assert f"demo:{key} is not set" in message
    assert "demo:app" not in message  # it defaults to the service's name


def test_unknown_key_is_rejected_with_a_suggestion() -> None:
    message = problems_of({**BASE, "canaryWieght": 5})
    assert (
        "demo:canaryWieght = 5: is not a known setting; did you mean canaryWeight?"
        in (message)
    )
    assert "known settings: app, namespace" in message


def test_snake_case_keys_are_unknown_in_config() -> None:
    assert (
        "demo:canary_weight = 5: is not a known setting; did you mean canaryWeight?"
        in problems_of({**BASE, "canary_weight": 5})
    )


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE, "canaryWeight": 150, "replicas": -1, "router": "nginx"},
                      service="demo")
    err = caught.value
    # In the project's error tree: bad input, exit 2, nothing changed.
    assert isinstance(err, InvalidInput) and err.exit_code == 2
    assert [p.key for p in err.problems] == [
        "demo:canaryWeight",
        "demo:replicas",
        "demo:router",
    ]
    assert str(err).startswith("invalid stack configuration (3 problem(s)):")


def test_project_name_prefixes_keys() -> None:
    with pytest.raises(SettingsError, match="other:canaryWeight = 150"):
        load_settings({**BASE, "canaryWeight": 150}, service="other")


@pytest.mark.parametrize(("raw", "shown"), [(["app"], '["app"]'), (None, "null"), ("x", '"x"')])
def test_non_mapping_config_is_rejected(raw: Any, shown: str) -> None:
    assert f"demo = {shown}: must be a map with the settings app, namespace" in (
        problems_of(raw))


def test_router_kinds_match_the_model() -> None:
    assert ROUTER_KINDS == ("istio", "gateway-api")


@pytest.mark.parametrize(
    ("stack", "replicas"), [("lab", 1), ("dev", 1), ("staging", 2), ("prod", 3)]
)
def test_stack_files_are_valid(stack: str, replicas: int) -> None:
    path = Path(__file__).parents[3] / "stacks" / f"Pulumi.{stack}.yaml"
    config = yaml.safe_load(path.read_text())["config"]
    s = load_settings({key.removeprefix("demo:"): v for key, v in config.items()}, service="demo")
    assert (s.app, s.namespace, s.replicas, s.router) == ("demo", stack, replicas, "istio")
    assert s.stable_image == "registry.local/demo:v1"
    assert f"demo.{stack}.example.internal" in s.hosts
    assert s.analysis is not None and s.analysis["metrics"]
