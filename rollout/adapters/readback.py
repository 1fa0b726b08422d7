"""Reads the live routing weights and versions back from the cluster (kubernetes client)."""

from __future__ import annotations

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.adapters.cluster_store import api_client
from rollout.core.errors import InfrastructureError
from rollout.core.ports import LiveView
from rollout.core.routers import router_named

# The service's route or Deployments do not exist (yet): no weights to read.
NOT_DEPLOYED = LiveView(None, None, None, None)


class ClusterReadback:
    def __init__(self, *, app: str, namespace: str, router: str,
                 kubeconfig: str | None = None, context: str | None = None,
                 timeout: float = 15.0) -> None:
        self.app, self.namespace, self.router = app, namespace, router
        # The stack's own `kubernetes:context` when it sets one, so the check reads the
        # cluster Pulumi deployed to, not whatever the kubeconfig's current context is.
        self._api = api_client(kubeconfig, context)
        self._timeout = timeout

    def live(self) -> LiveView:
        try:
            router = router_named(self.router)
            route = client.CustomObjectsApi(self._api).get_namespaced_custom_object(
                router.group, router.version, self.namespace, router.plural, self.app,
                _request_timeout=self._timeout)
            primary_weight, canary_weight = router.weights(route, self.app)
            apps = client.AppsV1Api(self._api)
            primary = apps.read_namespaced_deployment(f"{self.app}-primary", self.namespace,
                                                      _request_timeout=self._timeout)
            canary = apps.read_namespaced_deployment(f"{self.app}-canary", self.namespace,
                                                     _request_timeout=self._timeout)
        except ApiException as err:
            if err.status == 404:
                return NOT_DEPLOYED
            raise InfrastructureError(
                f"could not read {self.app}'s live objects in namespace {self.namespace}: "
                f"{err.status} {err.reason}") from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise InfrastructureError(
                f"could not reach the cluster to read {self.app}'s live objects: {err}",
                hint="check the API server and the stack's kubeconfig/context") from err
        labels = primary.spec.template.metadata.labels or {}
        return LiveView(
            primary_weight=primary_weight, canary_weight=canary_weight,
            primary_version=labels.get("app.kubernetes.io/version"),
            canary_replicas=canary.spec.replicas,
        )
