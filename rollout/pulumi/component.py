"""CanaryService: primary and canary Deployments, their Services and the weighted router."""

from __future__ import annotations

import re
import weakref
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from rollout.core.errors import Problem, SettingsError
from rollout.core.service import Hpa, ServiceSettings, code_settings, service_settings
from rollout.core.stackconfig import COMPONENT_TYPE, validate_service_name
from rollout.pulumi.config import read_config
from rollout.pulumi.meta import PORT_NAME, SERVICE_PORT, TRACK_LABEL, common_labels, object_meta
from rollout.pulumi.routers import RouterOutputs, router_for

Track = Literal["primary", "canary"]
TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"


# The services declared so far by each running program (keyed by its resource monitor).
_DECLARED: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


class CanaryService(pulumi.ComponentResource):
    """One canary-capable service.

    `name` is the service's name and config namespace. Its settings come from the stack config
    (`<name>:image`, ...) and from keyword arguments (Python or config spelling): each setting
    from one of the two. The driver-owned keys (stableVersion, canaryVersion, canaryWeight,
    canaryReplicas) come from config only. `settings=` takes an already validated
    ServiceSettings as is, for programs and tests that build it themselves.

    Kubernetes object names are fixed (`<app>`, `<app>-primary`, `<app>-canary`) and double as
    Pulumi resource names, so two services of one program must differ in app or namespace.
    """

    settings: ServiceSettings
    primary_deployment: k8s.apps.v1.Deployment
    canary_deployment: k8s.apps.v1.Deployment
    services: dict[str, k8s.core.v1.Service]
    hpa: k8s.autoscaling.v2.HorizontalPodAutoscaler | None
    route: RouterOutputs
    outputs: dict[str, Any]

    def __init__(
        self,
        name: str,
        opts: pulumi.ResourceOptions | None = None,
        *,
        settings: ServiceSettings | None = None,
        **code: Any,
    ) -> None:
        try:
            validate_service_name(name)
        except Exception as err:
            raise pulumi.RunError(f"CanaryService({name!r}): {err}") from None
        try:
            if settings is not None:
                if code:
                    raise SettingsError([Problem(f'CanaryService("{name}", settings=...)',
                                                 "takes no other settings", has_value=False)])
                given: dict[str, Any] = {}
            else:
                given = code_settings(name, code)
                settings = service_settings(name, read_config(pulumi.Config(name)), given)
            _register(name, settings)
        except SettingsError as err:
            raise pulumi.RunError(str(err)) from None
        super().__init__(COMPONENT_TYPE, name, None, opts)
        # What the component waits for (e.g. a namespace the program creates), its children
        # wait for too.
        waits = _waits_for(opts.depends_on if opts else None)
        child = pulumi.ResourceOptions(parent=self, depends_on=waits or None)
        self.namespace = None
        if settings.create_namespace:
            self.namespace = k8s.core.v1.Namespace(
                settings.namespace, metadata={"name": settings.namespace}, opts=child)
            child = pulumi.ResourceOptions(parent=self, depends_on=[*waits, self.namespace])
        self.settings = settings
        self.primary_deployment = _deployment(settings, track="primary", opts=child)
        self.canary_deployment = _deployment(settings, track="canary", opts=child)
        self.hpa = _hpa(settings, settings.hpa, opts=child) if settings.hpa else None
        self.services = {
            service: _service(settings, name=service, selector=selector, opts=child)
            for service, selector in _service_selectors(settings).items()
        }
        self.route = router_for(settings.router).declare(settings, child)
        self.outputs = stack_outputs(settings, route=self.route)
        # Recorded in the state: what the service is, and the settings given in code (the
        # driver cannot see them in the stack config). Never the weights or versions: a
        # component's outputs are recorded by every update, even one targeted at another
        # service, so they would show config that was never deployed.
        self.register_outputs({
            **{key: self.outputs[key] for key in IDENTITY_OUTPUTS},
            "codeSettings": _plain(settings, given),
        })


def _waits_for(depends_on: Any) -> list[Any]:
    if depends_on is None:
        return []
    return list(depends_on) if isinstance(depends_on, list | tuple) else [depends_on]


def _plain(settings: ServiceSettings, given: dict[str, Any]) -> dict[str, Any]:
    dumped = settings.model_dump(mode="json", by_alias=True)
    return {key: dumped[key] for key in given if key in dumped}


def _register(name: str, settings: ServiceSettings) -> None:
    """Refuses a second service of one name, or two that would own the same objects."""
    declared = _DECLARED.setdefault(pulumi.runtime.settings.SETTINGS.monitor, {})
    where = f"{settings.namespace}/{settings.app}"
    if name in declared:
        raise SettingsError([Problem(f'CanaryService("{name}")', "is declared twice: service "
                                     "names are config namespaces and must be unique",
                                     has_value=False)])
    for other, taken in declared.items():
        if taken == where:
            raise SettingsError([Problem(
                f"{name}:app", f"is {settings.app!r} in namespace {settings.namespace}, like "
                f"service {other}'s: both would own {settings.app}, {settings.app}-primary and "
                f"{settings.app}-canary; give one another app or namespace", has_value=False)])
    declared[name] = where


IDENTITY_OUTPUTS = ("app", "namespace", "router", "routeName", "routeKind",
                    "primaryDeployment", "canaryDeployment")


def stack_outputs(settings: ServiceSettings, *, route: RouterOutputs) -> dict[str, Any]:
    """The values the rollout driver reads back after each `pulumi up`."""
    return {
        "app": settings.app,
        "namespace": settings.namespace,
        "router": settings.router,
        "primaryWeight": settings.primary_weight,
        "canaryWeight": settings.canary_weight,
        "stableVersion": settings.stable_version,
        "canaryVersion": settings.effective_canary_version,
        "canaryReplicas": settings.canary_replicas,
        "stableImage": settings.stable_image,
        "canaryImage": settings.canary_image,
        "routeName": route.route_name,
        "routeKind": route.route_kind,
        "primaryDeployment": settings.primary_name,
        "canaryDeployment": settings.canary_name,
    }


def _selector(settings: ServiceSettings, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": settings.app, "app.kubernetes.io/instance": name}


def _service_selectors(settings: ServiceSettings) -> dict[str, dict[str, str]]:
    return {
        settings.app: {"app.kubernetes.io/name": settings.app},
        settings.primary_name: {"app.kubernetes.io/instance": settings.primary_name},
        settings.canary_name: {"app.kubernetes.io/instance": settings.canary_name},
    }


def label_value(text: str) -> str:
    """`text` cut to a valid label value (<= 63 chars, alphanumeric at both ends)."""
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text[:63])


def _deployment(
    settings: ServiceSettings, *, track: Track, opts: pulumi.ResourceOptions
) -> k8s.apps.v1.Deployment:
    primary = track == "primary"
    name = settings.primary_name if primary else settings.canary_name
    version = settings.stable_version if primary else settings.effective_canary_version
    image = settings.stable_image if primary else settings.canary_image
    replicas = settings.replicas if primary else settings.canary_replicas
    if primary and settings.hpa is not None:
        replicas = None  # the HPA owns it; declaring it too would fight the autoscaler
    selector = _selector(settings, name)
    labels = {**selector, TRACK_LABEL: track}
    pod_labels = {
        **common_labels(settings),
        **labels,
        "app.kubernetes.io/version": label_value(version),
    }
    timeout = {TIMEOUT_ANNOTATION: str(settings.await_timeout_seconds)}
    return k8s.apps.v1.Deployment(
        name,
        metadata=object_meta(settings, name, labels=labels, annotations=timeout),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=replicas,
            progress_deadline_seconds=settings.progress_deadline_seconds,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
                spec=k8s.core.v1.PodSpecArgs(
                    containers=[_container(settings, image=image, version=version)]
                ),
            ),
        ),
        opts=opts,
    )


def _container(settings: ServiceSettings, *, image: str, version: str) -> k8s.core.v1.ContainerArgs:
    env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in settings.env.items()]
    env.append(k8s.core.v1.EnvVarArgs(name="VERSION", value=version))
    return k8s.core.v1.ContainerArgs(
        name="app",
        image=image,
        ports=[k8s.core.v1.ContainerPortArgs(name=PORT_NAME, container_port=settings.port)],
        env=env,
        resources=_resources(settings),
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=settings.readiness_path, port=PORT_NAME),
        ),
    )


def _resources(settings: ServiceSettings) -> k8s.core.v1.ResourceRequirementsArgs | None:
    if settings.resources is None:
        return None
    dump = settings.resources.model_dump(exclude_none=True)
    return k8s.core.v1.ResourceRequirementsArgs(
        requests=dump.get("requests"), limits=dump.get("limits")
    )


def _service(
    settings: ServiceSettings,
    *,
    name: str,
    selector: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        name,
        metadata=object_meta(settings, name),
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=selector,
            ports=[
                k8s.core.v1.ServicePortArgs(
                    name=PORT_NAME, port=SERVICE_PORT, target_port=settings.port
                )
            ],
        ),
        opts=opts,
    )


def _hpa(
    settings: ServiceSettings, hpa: Hpa, *, opts: pulumi.ResourceOptions
) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    name = settings.primary_name
    cpu = k8s.autoscaling.v2.ResourceMetricSourceArgs(
        name="cpu",
        target=k8s.autoscaling.v2.MetricTargetArgs(
            type="Utilization", average_utilization=hpa.cpu_utilization
        ),
    )
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        name,
        metadata=object_meta(settings, name),
        spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
            scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                api_version="apps/v1", kind="Deployment", name=name
            ),
            min_replicas=hpa.min_replicas,
            max_replicas=hpa.max_replicas,
            metrics=[k8s.autoscaling.v2.MetricSpecArgs(type="Resource", resource=cpu)],
        ),
        opts=opts,
    )
