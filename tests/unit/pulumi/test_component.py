"""CanaryService under Pulumi mocks: the declared objects and their specs, no CLI or cluster."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pulumi_kubernetes
import pytest
from pulumi.runtime.config import set_all_config

from rollout.core.errors import SettingsError
from rollout.core.routers import ROUTERS, WEIGHT_STEP_TYPES
from rollout.core.service import ServiceSettings, load_settings
from rollout.pulumi import component, program
from rollout.pulumi.component import CanaryService, label_value
from rollout.pulumi.config import read_config
from rollout.pulumi.meta import cookie_regex
from rollout.pulumi.routers import router_for

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"
DESTINATION_RULE = "kubernetes:networking.istio.io/v1:DestinationRule"
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
BASE: dict[str, Any] = {"app": "demo", "image": "registry.local/demo", "stableVersion": "v1"}

Declared = dict[tuple[str, str], dict[str, Any]]


class RecordingMocks(pulumi.runtime.Mocks):
    """Echoes inputs back as outputs and remembers every registered resource."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    # The Pulumi runtime is process-global: fresh mocks and empty config for every test.
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="canary-service", stack="unit", preview=False)
    set_all_config({})
    yield recorder
    set_all_config({})


def run(body: Callable[[], Any]) -> None:
    @pulumi.runtime.test
    def program_body() -> Any:
        return body()

    program_body()


def declare(mocks: RecordingMocks, **overrides: Any) -> Declared:
    settings = load_settings({**BASE, **overrides}, service="demo")
    run(lambda: CanaryService(settings.app, settings=settings).urn)
    return {(r.typ, r.name): r.inputs for r in mocks.resources if r.custom}


def primary_route(declared: Declared) -> dict[str, Any]:
    http = declared[(VIRTUAL_SERVICE, "demo")]["spec"]["http"]
    return next(route for route in http if route["name"] == "primary")


def weights_by_host(route: list[dict[str, Any]]) -> dict[str, float]:
    return {entry["destination"]["host"]: entry["weight"] for entry in route}


def test_declares_the_expected_objects(mocks: RecordingMocks) -> None:
    declared = declare(mocks)
    assert sorted(declared) == sorted(
        [
            (DEPLOYMENT, "demo-primary"),
            (DEPLOYMENT, "demo-canary"),
            (SERVICE, "demo"),
            (SERVICE, "demo-primary"),
            (SERVICE, "demo-canary"),
            (DESTINATION_RULE, "demo-primary"),
            (DESTINATION_RULE, "demo-canary"),
            (VIRTUAL_SERVICE, "demo"),
        ]
    )
    component = [r for r in mocks.resources if not r.custom]
    assert [(r.typ, r.name) for r in component] == [("canary:index:CanaryService", "demo")]


def test_every_object_has_fixed_name_and_namespace(mocks: RecordingMocks) -> None:
    for (_, name), inputs in declare(mocks, namespace="lab").items():
        assert inputs["metadata"]["name"] == name
        assert inputs["metadata"]["namespace"] == "lab"
        assert inputs["metadata"]["labels"]["app.kubernetes.io/name"] == "demo"


def test_deployments(mocks: RecordingMocks) -> None:
    declared = declare(mocks, canaryVersion="v2", replicas=3, canaryReplicas=1, env={"A": "b"})
    for name, track, version, replicas in [
        ("demo-primary", "primary", "v1", 3),
        ("demo-canary", "canary", "v2", 1),
    ]:
        deployment = declared[(DEPLOYMENT, name)]
        meta, spec = deployment["metadata"], deployment["spec"]
        assert meta["annotations"] == {"pulumi.com/timeoutSeconds": "300"}  # awaited, not skipped
        assert spec["replicas"] == replicas
        assert spec["progressDeadlineSeconds"] == 600
        assert spec["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "demo",
            "app.kubernetes.io/instance": name,
        }
        labels = spec["template"]["metadata"]["labels"]
        assert labels["canary.rollout/track"] == track
        assert labels["app.kubernetes.io/version"] == version
        assert labels["app.kubernetes.io/part-of"] == "demo"
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "app"
        assert container["image"] == f"registry.local/demo:{version}"
        assert container["ports"] == [{"name": "http", "containerPort": 8080}]
        assert container["env"] == [
            {"name": "A", "value": "b"},
            {"name": "VERSION", "value": version},
        ]
        assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_resources_are_set_on_the_container(mocks: RecordingMocks) -> None:
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    declared = declare(mocks, resources=resources)
    (container,) = declared[(DEPLOYMENT, "demo-canary")]["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == resources


def test_services(mocks: RecordingMocks) -> None:
    declared = declare(mocks, port=9090)
    selectors = {
        "demo": {"app.kubernetes.io/name": "demo"},
        "demo-primary": {"app.kubernetes.io/instance": "demo-primary"},
        "demo-canary": {"app.kubernetes.io/instance": "demo-canary"},
    }
    for name, selector in selectors.items():
        spec = declared[(SERVICE, name)]["spec"]
        assert spec["selector"] == selector
        assert spec["ports"] == [{"name": "http", "port": 80, "targetPort": 9090}]
        assert "annotations" not in declared[(SERVICE, name)]["metadata"]


@pytest.mark.parametrize("weight", [0, 10, 100])
def test_istio_weights_always_name_both_backends(mocks: RecordingMocks, weight: int) -> None:
    declared = declare(mocks, canaryWeight=weight)
    route = primary_route(declared)
    assert weights_by_host(route["route"]) == {"demo-primary": 100 - weight, "demo-canary": weight}
    assert sum(entry["weight"] for entry in route["route"]) == 100
    assert all(entry["destination"]["port"] == {"number": 80} for entry in route["route"])
    assert "mirror" not in route
    spec = declared[(VIRTUAL_SERVICE, "demo")]["spec"]
    assert [r["name"] for r in spec["http"]] == ["primary"]
    assert spec["hosts"] == ["demo"]
    assert "gateways" not in spec


def test_istio_custom_resources_skip_await(mocks: RecordingMocks) -> None:
    declared = declare(mocks)
    for key in [(VIRTUAL_SERVICE, "demo"), (DESTINATION_RULE, "demo-primary")]:
        assert declared[key]["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
        assert declared[key]["apiVersion"] == "networking.istio.io/v1"


def test_istio_hosts_and_gateways(mocks: RecordingMocks) -> None:
    declared = declare(mocks, hosts=["demo", "demo.lab.example.internal"], gateways=["gw/public"])
    spec = declared[(VIRTUAL_SERVICE, "demo")]["spec"]
    assert spec["hosts"] == ["demo", "demo.lab.example.internal"]
    assert spec["gateways"] == ["gw/public"]


def test_istio_destination_rules(mocks: RecordingMocks) -> None:
    declared = declare(mocks)
    assert declared[(DESTINATION_RULE, "demo-primary")]["spec"] == {"host": "demo-primary"}
    assert declared[(DESTINATION_RULE, "demo-canary")]["spec"] == {"host": "demo-canary"}


def test_istio_session_affinity(mocks: RecordingMocks) -> None:
    declared = declare(mocks, sessionAffinity={"cookieName": "sticky", "maxAge": "1h"})
    for name in ("demo-primary", "demo-canary"):
        policy = declared[(DESTINATION_RULE, name)]["spec"]["trafficPolicy"]
        cookie = policy["loadBalancer"]["consistentHash"]["httpCookie"]
        assert cookie == {"name": "sticky", "ttl": "3600s"}


def test_istio_ab_route_comes_first(mocks: RecordingMocks) -> None:
    match = [
        {"headers": {"X-User": {"exact": "beta"}, "x-region": {"prefix": "eu-"}}},
        {"cookie": "canary=always"},
    ]
    declared = declare(mocks, match=match, canaryWeight=20)
    ab, primary = declared[(VIRTUAL_SERVICE, "demo")]["spec"]["http"]
    assert ab["name"] == "ab" and primary["name"] == "primary"
    assert ab["match"] == [
        {"headers": {"x-user": {"exact": "beta"}, "x-region": {"prefix": "eu-"}}},
        {"headers": {"cookie": {"regex": r"^(.*?;\s*)?(canary=always)(;.*)?$"}}},
    ]
    assert weights_by_host(ab["route"]) == {"demo-canary": 100}
    assert weights_by_host(primary["route"]) == {"demo-primary": 80, "demo-canary": 20}


def test_istio_mirroring(mocks: RecordingMocks) -> None:
    route = primary_route(declare(mocks, mirror=True, mirrorWeight=40))
    assert route["mirror"] == {"host": "demo-canary", "port": {"number": 80}}
    assert route["mirrorPercentage"] == {"value": 40}
    assert weights_by_host(route["route"]) == {"demo-primary": 100, "demo-canary": 0}


MESH = [{"name": "mesh-gateway"}]


def gateway_declare(mocks: RecordingMocks, **overrides: Any) -> dict[str, Any]:
    declared = declare(mocks, router="gateway-api", **{"parentRefs": MESH, **overrides})
    assert not any(kind in (VIRTUAL_SERVICE, DESTINATION_RULE) for kind, _ in declared)
    route = declared[(HTTP_ROUTE, "demo")]
    assert route["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    return route["spec"]


@pytest.mark.parametrize("weight", [0, 10, 100])
def test_gateway_api_weights(mocks: RecordingMocks, weight: int) -> None:
    refs = [{"name": "public", "namespace": "gw", "sectionName": "http"}, {"name": "internal"}]
    spec = gateway_declare(mocks, canaryWeight=weight, parentRefs=refs, hosts=["demo.example"])
    assert spec["parentRefs"] == refs
    assert spec["hostnames"] == ["demo.example"]
    (rule,) = spec["rules"]
    assert rule["backendRefs"] == [
        {"name": "demo-primary", "port": 80, "weight": 100 - weight},
        {"name": "demo-canary", "port": 80, "weight": weight},
    ]
    assert "filters" not in rule


def test_gateway_api_ab_rule(mocks: RecordingMocks) -> None:
    match = [
        {"headers": {"x-user": {"exact": "beta"}, "x-tier": {"prefix": "gold."}}},
        {"headers": {"x-id": {"regex": "^7.*"}}, "cookie": "canary=always"},
    ]
    ab, main = gateway_declare(mocks, match=match)["rules"]
    assert ab["matches"] == [
        {
            "headers": [
                {"type": "Exact", "name": "x-user", "value": "beta"},
                {"type": "RegularExpression", "name": "x-tier", "value": r"^gold\..*"},
            ]
        },
        {
            "headers": [
                {"type": "RegularExpression", "name": "x-id", "value": "^7.*"},
                {
                    "type": "RegularExpression",
                    "name": "cookie",
                    "value": cookie_regex("canary=always"),
                },
            ]
        },
    ]
    assert ab["backendRefs"] == [{"name": "demo-canary", "port": 80, "weight": 100}]
    assert [ref["name"] for ref in main["backendRefs"]] == ["demo-primary", "demo-canary"]


def test_gateway_api_mirroring(mocks: RecordingMocks) -> None:
    (rule,) = gateway_declare(mocks, mirror=True, mirrorWeight=25)["rules"]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "demo-canary", "port": 80}, "percent": 25},
        }
    ]


def test_gateway_api_refuses_session_affinity_even_if_validation_was_bypassed() -> None:
    raw = {**BASE, "sessionAffinity": {"cookieName": "c", "maxAge": "1h"}}
    settings = load_settings(raw, service="demo").model_copy(update={"router": "gateway-api"})
    with pytest.raises(SettingsError, match="not supported by the gateway-api router"):
        router_for("gateway-api").declare(settings, pulumi.ResourceOptions())


def test_hpa_owns_primary_replicas(mocks: RecordingMocks) -> None:
    declared = declare(mocks, hpa={"minReplicas": 2, "maxReplicas": 6}, canaryReplicas=1)
    spec = declared[(HPA, "demo-primary")]["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-primary",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    target = spec["metrics"][0]["resource"]
    assert target == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
    assert "replicas" not in declared[(DEPLOYMENT, "demo-primary")]["spec"]
    assert declared[(DEPLOYMENT, "demo-canary")]["spec"]["replicas"] == 1


def test_component_outputs(mocks: RecordingMocks) -> None:
    settings = load_settings(
        {**BASE, "canaryVersion": "v2", "canaryWeight": 30, "canaryReplicas": 2}, service="demo"
    )
    holder: dict[str, CanaryService] = {}

    def body() -> Any:
        holder["svc"] = CanaryService("demo", settings=settings)
        return holder["svc"].urn

    run(body)
    assert holder["svc"].outputs == {
        "app": "demo",
        "namespace": "default",
        "router": "istio",
        "primaryWeight": 70,
        "canaryWeight": 30,
        "stableVersion": "v1",
        "canaryVersion": "v2",
        "canaryReplicas": 2,
        "stableImage": "registry.local/demo:v1",
        "canaryImage": "registry.local/demo:v2",
        "routeName": "demo",
        "routeKind": "VirtualService",
        "primaryDeployment": "demo-primary",
        "canaryDeployment": "demo-canary",
    }


def test_router_for_rejects_unknown_kinds() -> None:
    with pytest.raises(SettingsError, match="must be one of: istio, gateway-api"):
        router_for("nginx")


def test_cookie_regex_matches_only_the_whole_pair() -> None:
    pattern = re.compile(cookie_regex("canary=a.b"))
    assert pattern.match("canary=a.b")
    assert pattern.match("x=1; canary=a.b; y=2")
    assert pattern.match("x=1;canary=a.b")
    assert not pattern.match("x=1; canary=a.bc")
    assert not pattern.match("canary=aXb")


def test_version_label_is_a_valid_label_value() -> None:
    assert label_value("v1") == "v1"
    assert label_value("_v1.") == "v1"
    assert len(label_value("a" * 128)) == 63


def config(**values: Any) -> dict[str, str]:
    # What Pulumi hands the program: project-prefixed keys, every value as text.
    return {
        f"demo:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }


def test_program_reads_config_and_exports(
    mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exported.__setitem__)
    values = {**BASE, "stableVersion": "1", "canaryWeight": 10, "analysis": {"interval": "10s"}}
    set_all_config({**config(**values), "kubernetes:context": "lab"})
    run(program.main)
    outputs = exported["demo"]
    assert outputs["canaryWeight"] == 10 and outputs["primaryWeight"] == 90
    assert outputs["stableVersion"] == "1"  # text keys stay text even when they look numeric
    assert outputs["routeName"] == "demo"
    assert {r.name for r in mocks.resources if r.typ == DEPLOYMENT} == {
        "demo-primary",
        "demo-canary",
    }


def test_program_read_config_decodes_values(mocks: RecordingMocks) -> None:
    set_all_config(config(**BASE, replicas=3, mirror=True, hosts=["a"], extra="x"))
    raw = read_config(pulumi.Config("demo"))
    assert raw == {**BASE, "replicas": 3, "mirror": True, "hosts": ["a"], "extra": "x"}


def test_program_fails_on_bad_config_before_creating_anything(mocks: RecordingMocks) -> None:
    set_all_config(config(**BASE, canaryWeight=150, surprise=1))
    with pytest.raises(pulumi.RunError) as caught:
        run(program.main)
    message = str(caught.value)
    assert "demo:canaryWeight = 150: must be an integer from 0 to 100" in message
    assert "demo:surprise = 1: is not a known setting" in message
    assert [r for r in mocks.resources if r.custom] == []


def test_settings_type_is_reusable_directly(mocks: RecordingMocks) -> None:
    settings = ServiceSettings(app="api", image="registry.local/api", stable_version="v3")
    run(lambda: CanaryService("api", settings=settings).urn)
    assert {(r.typ, r.name) for r in mocks.resources} >= {(DEPLOYMENT, "api-primary")}


@pytest.mark.parametrize("router", sorted(ROUTERS))
@pytest.mark.parametrize("with_ab_rule", [False, True])
def test_the_router_registry_reads_the_weights_the_program_writes(
        mocks: RecordingMocks, router: str, with_ab_rule: bool) -> None:
    # One registry for the program, the driver's targets, the readback and the lab: the route
    # object the program declares must be the type weight steps target, and its weights must
    # read back as set, A/B rule or not.
    entry = ROUTERS[router]
    match = [{"headers": {"x-canary": {"exact": "yes"}}}] if with_ab_rule else []
    refs = {"parentRefs": MESH} if router == "gateway-api" else {}
    declared = declare(mocks, router=router, canaryWeight=30, canaryReplicas=1, match=match,
                       **refs)
    [route] = [inputs for (typ, name), inputs in declared.items() if typ == entry.pulumi_type]
    assert entry.pulumi_type in WEIGHT_STEP_TYPES
    assert route["apiVersion"] == entry.api_version and route["kind"] == entry.kind
    assert entry.weights(route, "demo") == (70, 30)


# -- many services in one program -----------------------------------------------------------

CART = {"stableVersion": "v1", "image": "registry.local/cart", "router": "gateway-api",
        "parentRefs": [{"name": "mesh-gateway"}]}


def service_config(service: str, **values: Any) -> dict[str, str]:
    return {f"{service}:{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in values.items()}


def test_the_program_declares_every_service_of_the_config(
    mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exported.__setitem__)
    set_all_config({**service_config("checkout", image="registry.local/checkout",
                                     stableVersion="v7", canaryWeight=20),
                    **service_config("cart", **CART), "kubernetes:context": "lab"})
    run(program.main)
    assert set(exported) == {"checkout", "cart"}
    assert exported["checkout"]["canaryWeight"] == 20 and exported["cart"]["canaryWeight"] == 0
    assert exported["checkout"]["app"] == "checkout"  # app defaults to the service's name
    names = {(r.typ, r.name) for r in mocks.resources}
    assert {(VIRTUAL_SERVICE, "checkout"), (HTTP_ROUTE, "cart"),
            (DEPLOYMENT, "cart-canary"), (DEPLOYMENT, "checkout-primary")} <= names
    components = {r.name for r in mocks.resources if r.typ == "canary:index:CanaryService"}
    assert components == {"checkout", "cart"}


def test_settings_in_code_and_driver_keys_in_config(mocks: RecordingMocks) -> None:
    set_all_config(service_config("cart", stableVersion="v3", canaryWeight=40,
                                  canaryVersion="v4", canaryReplicas=1))
    holder: dict[str, Any] = {}

    def body() -> Any:
        holder["cart"] = CanaryService("cart", image="registry.local/cart", router="gateway-api",
                                       parent_refs=[{"name": "mesh-gateway"}], replicas=3)
        return holder["cart"].urn

    run(body)
    settings = holder["cart"].settings
    assert (settings.stable_version, settings.canary_weight, settings.replicas) == ("v3", 40, 3)
    [component] = [r for r in mocks.resources if r.typ == "canary:index:CanaryService"]
    assert component.name == "cart"


@pytest.mark.parametrize(("code", "config_values", "expected"), [
    ({"stable_version": "v9"}, {}, 'CanaryService("cart", stable_version=...) is driver-owned'),
    ({"canaryWeight": 50}, {}, 'CanaryService("cart", canaryWeight=...) is driver-owned'),
    ({"replicsa": 2}, {}, 'CanaryService("cart", replicsa=...) is not a setting'),
    ({"replicas": 2}, {"replicas": 3}, 'cart:replicas is also set in code by CanaryService'),
    ({"router": "gateway-api"}, {}, "cart:parentRefs = []: router gateway-api needs parentRefs"),
])
def test_bad_code_settings_fail_before_any_resource(
    mocks: RecordingMocks, code: dict[str, Any], config_values: dict[str, Any], expected: str
) -> None:
    set_all_config(service_config("cart", stableVersion="v1", image="registry.local/cart",
                                  **config_values))
    with pytest.raises(pulumi.RunError) as caught:
        run(lambda: CanaryService("cart", **code).urn)
    assert expected in str(caught.value)
    assert [r for r in mocks.resources if r.custom] == []


def _two_services() -> None:
    set_all_config({**service_config("checkout", image="registry.local/checkout",
                                     stableVersion="v1"),
                    **service_config("shop", image="registry.local/checkout",
                                     stableVersion="v1", app="checkout")})


def test_a_service_declared_twice_is_refused(mocks: RecordingMocks) -> None:
    _two_services()

    def twice() -> Any:
        CanaryService("checkout")
        return CanaryService("checkout").urn

    with pytest.raises(pulumi.RunError, match=r'CanaryService\("checkout"\) is declared twice'):
        run(twice)


def test_two_services_owning_the_same_objects_are_refused(mocks: RecordingMocks) -> None:
    _two_services()

    def same_app() -> Any:
        CanaryService("checkout")
        return CanaryService("shop").urn

    with pytest.raises(pulumi.RunError, match="shop:app is 'checkout' in namespace default, "
                                              "like service checkout's"):
        run(same_app)


def test_service_names_are_dns_labels_and_not_pulumi_namespaces(mocks: RecordingMocks) -> None:
    for name in ("Checkout", "kubernetes", "a" * 51):
        with pytest.raises(pulumi.RunError, match="is not a valid service name"):
            run(lambda name=name: CanaryService(name).urn)


def test_children_wait_for_what_the_component_waits_for(
        mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch) -> None:
    set_all_config(service_config("cart", **CART))
    seen: list[Any] = []
    declare_deployment = component._deployment

    def recording(settings: Any, *, track: str, opts: pulumi.ResourceOptions) -> Any:
        seen.append(opts.depends_on)
        return declare_deployment(settings, track=track, opts=opts)  # type: ignore[arg-type]

    monkeypatch.setattr(component, "_deployment", recording)
    holder: dict[str, Any] = {}

    def body() -> Any:
        holder["ns"] = pulumi_kubernetes.core.v1.Namespace("shop", metadata={"name": "shop"})
        return CanaryService("cart", opts=pulumi.ResourceOptions(depends_on=[holder["ns"]])).urn

    run(body)
    assert seen == [[holder["ns"]], [holder["ns"]]]


def test_gateway_api_weights_are_read_as_the_api_server_stores_the_rule() -> None:
    # A rule declared without matches comes back with the CRD's default match; the readback
    # once took that for an A/B rule and read no weights at all (found on the lab).
    stored = {"spec": {"rules": [
        {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
         "backendRefs": [{"name": "cart-canary", "weight": 100}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "backendRefs": [{"name": "cart-primary", "weight": 75},
                         {"name": "cart-canary", "weight": 25}]},
    ]}}
    assert ROUTERS["gateway-api"].weights(stored, "cart") == (75, 25)
    prefixed = {"spec": {"rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
         "backendRefs": [{"name": "cart-primary", "weight": 75}]}]}}
    assert ROUTERS["gateway-api"].weights(prefixed, "cart") == (None, None)
