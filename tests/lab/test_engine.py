"""The real engine on the real lab: Automation API up/update/destroy, and schema rejection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS

from rollout.core.errors import StackError
from rollout.lab import kube
from rollout.lab.lab import Lab
from tests.lab.support.engine import PROJECT, smoke_stack
from tests.lab.support.project import discard


def _weights(api: client.ApiClient, namespace: str) -> list[int]:
    vs = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "virtualservices", "web")
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


def test_deploy_update_destroy_through_automation_api(lab: Lab, tmp_path: Path) -> None:
    stack, namespace = smoke_stack(lab, tmp_path)
    api = kube.api_client(lab.layout.kubeconfig)
    try:
        first = stack.up()
        assert first.result == "succeeded"
        deployment = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
        available = {c.type: c.status for c in deployment.status.conditions or []}
        assert available.get("Available") == "True"
        assert deployment.status.ready_replicas == 2
        assert _weights(api, namespace) == [90, 10]

        stack.set_config({f"{PROJECT}:canaryWeight": "50"})
        second = stack.up()
        assert second.changes.get("update") == 1
        assert _weights(api, namespace) == [50, 50]
    finally:
        stack.destroy(remove=True)
    with pytest.raises(ApiException) as gone:
        client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert gone.value.status == 404
    namespaces = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert namespace not in namespaces


def test_weights_invalid_for_istio_schema_are_rejected(lab: Lab, tmp_path: Path) -> None:
    stack, namespace = smoke_stack(lab, tmp_path)
    stack.set_config({f"{PROJECT}:canaryWeight": "ten percent"})
    try:
        with pytest.raises(StackError) as failed:
            stack.up()
        message = str(failed.value)
        expected = f"pulumi failed on stack {stack.stack_name}: VirtualService web-vs: "
        assert message.startswith(expected)
        assert "weight: expected numeric (int or float), got string" in message
        assert "Updating (" not in message and "Resources:" not in message, "not the stdout"
        assert failed.value.changed, "the namespace and Deployment were created first"
        api = kube.api_client(lab.layout.kubeconfig)
        with pytest.raises(ApiException):
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                "networking.istio.io", "v1", namespace, "virtualservices", "web")
    finally:
        discard(stack, namespace, lab.layout.kubeconfig)


def test_a_program_that_fails_before_any_step_reports_that_nothing_changed(
        lab: Lab, tmp_path: Path) -> None:
    stack, _ = smoke_stack(lab, tmp_path)
    stack.remove_config([f"{PROJECT}:namespace"])
    try:
        with pytest.raises(StackError) as failed:
            stack.up()
        assert "Missing required configuration variable" in failed.value.message
        assert "namespace" in failed.value.message
        assert failed.value.changed is False
    finally:
        stack.destroy(remove=True)


@contextmanager
def stale_grpc_channels() -> Iterator[int]:
    """What a failed inline Pulumi program used to leave in the process, on every port.

    gRPC shares connections process-wide by address. A channel to a port whose server has
    gone, once it has tried to connect, sits in reconnect backoff; any new channel to the same
    address fails at once with UNAVAILABLE until that backoff ends. Here one such channel
    is made for every port the kernel can hand out to a listening engine (bind(0) takes odd
    ports of the ephemeral range first), so whichever port the next engine gets is covered.
    """
    low, high = (int(n) for n in
                 Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    # gRPC shares a connection only between channels with the same options: the SDK's.
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=_GRPC_CHANNEL_OPTIONS)
                for port in range(low | 1, high + 1, 2)]
    calls = [channel.unary_unary("/stale.Probe/Ping").future(b"", timeout=10)
             for channel in channels]
    in_backoff = 0
    for call in calls:
        try:
            call.result()
        except grpc.RpcError as err:
            in_backoff += err.code() == grpc.StatusCode.UNAVAILABLE
    try:
        yield in_backoff
    finally:
        for channel in channels:
            channel.close()


def test_updates_cannot_be_broken_by_grpc_state_left_in_the_driver_process(
        lab: Lab, tmp_path: Path) -> None:
    """Issue 10: an update failed with "Resource monitor has terminated" when its engine got
    a port that an earlier, failed inline program's channel was still retrying."""
    stack, namespace = smoke_stack(lab, tmp_path)
    try:
        with stale_grpc_channels() as in_backoff:
            assert in_backoff > 10_000
            for weight in ("20", "30"):
                stack.set_config({f"{PROJECT}:canaryWeight": weight})
                assert stack.up().result == "succeeded"
        api = kube.api_client(lab.layout.kubeconfig)
        assert _weights(api, namespace) == [70, 30]
    finally:
        discard(stack, namespace, lab.layout.kubeconfig)
