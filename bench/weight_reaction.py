"""Measures how fast the lab's data plane applies a VirtualService weight change.

Run against a running lab: .venv/bin/python -m bench.weight_reaction [--changes 20].
Each change replaces the VirtualService with a new canary weight; "applied" is the data
plane's own timestamp of applying it (lab_route_applied_timestamp_seconds), so the number does
not depend on how often this script polls.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
from kubernetes import client

from rollout.core.errors import RolloutError
from rollout.lab import kube
from rollout.lab.lab import Lab
from rollout.lab.traffic import Traffic

APP = "bench"
GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"
_WEIGHT = re.compile(r'^lab_route_weight\{destination="bench-canary"\} (\d+)$', re.M)
_APPLIED = re.compile(r"^lab_route_applied_timestamp_seconds ([0-9.]+)$", re.M)


def _deployment(name: str) -> dict[str, Any]:
    selector = {"app.kubernetes.io/instance": name}
    return {
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": {
            "metadata": {"labels": {**selector, "app.kubernetes.io/version": "v1"}},
            "spec": {"containers": [{"name": "app", "image": "registry.local/bench:v1"}]}}},
    }


def _service(name: str) -> dict[str, Any]:
    """The Service the data plane sends a destination's requests to (its ready pods)."""
    return {"metadata": {"name": name},
            "spec": {"selector": {"app.kubernetes.io/instance": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _routes(canary: int) -> list[dict[str, Any]]:
    return [{"name": "primary", "route": [
        {"destination": {"host": f"{APP}-primary"}, "weight": 100 - canary},
        {"destination": {"host": f"{APP}-canary"}, "weight": canary}]}]


def _applied(http: httpx.Client, url: str) -> tuple[int | None, float]:
    text = http.get(url).text
    weight, applied = _WEIGHT.search(text), _APPLIED.search(text)
    return (int(weight[1]) if weight else None), (float(applied[1]) if applied else 0.0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _summary(name: str, values_ms: list[float]) -> str:
    return (f"{name:<34} median {statistics.median(values_ms):7.1f} ms   "
            f"p95 {_percentile(values_ms, 0.95):7.1f} ms   max {max(values_ms):7.1f} ms")


def measure(lab: Lab, changes: int, rps: float, seed: int) -> dict[str, list[float]]:
    api = kube.api_client(lab.layout.kubeconfig)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    objects = client.CustomObjectsApi(api)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    traffic = Traffic(lab.layout, lab.ports, app=APP, namespace=namespace, rps=rps)
    results: dict[str, list[float]] = {"write": [], "applied": [], "seen": []}
    try:
        for track in ("primary", "canary"):
            client.AppsV1Api(api).create_namespaced_deployment(
                namespace, _deployment(f"{APP}-{track}"))
            client.CoreV1Api(api).create_namespaced_service(namespace, _service(f"{APP}-{track}"))
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService",
            "metadata": {"name": APP}, "spec": {"hosts": [APP], "http": _routes(0)}})
        traffic.start()
        rng = random.Random(seed)
        current = 0
        with httpx.Client(timeout=2) as http:
            for _ in range(changes):
                weight = rng.choice([w for w in range(0, 101, 5) if w != current])
                vs = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, APP)
                vs["spec"]["http"] = _routes(weight)
                sent = time.time()
                objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                         APP, vs)
                written = time.time()
                while True:
                    seen_weight, applied_at = _applied(http, traffic.metrics_url)
                    if seen_weight == weight:
                        break
                    if time.time() - sent > 10:
                        raise RuntimeError(f"weight {weight} not applied within 10 s")
                    time.sleep(0.005)
                results["write"].append((written - sent) * 1000)
                results["applied"].append((applied_at - sent) * 1000)
                results["seen"].append((time.time() - sent) * 1000)
                current = weight
                time.sleep(0.3)
    finally:
        traffic.stop()
        client.CoreV1Api(api).delete_namespace(namespace)
        api.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--rps", type=float, default=20.0, help="load during the changes")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args(argv)
    lab = Lab()
    try:
        up = lab.is_up()
    except RolloutError:
        up = False
    if not up:
        print("skipped: the lab is not up (start it with `rollout lab up`, then rerun)")
        return 0
    started = time.monotonic()
    results = measure(lab, args.changes, args.rps, args.seed)
    print(f"{args.changes} weight changes, {args.rps:g} rps of load, "
          f"lab at 127.0.0.1:{lab.ports.apiserver}")
    print(_summary("API write (replace call)", results["write"]))
    print(_summary("applied by the data plane", results["applied"]))
    print(_summary("visible on its /metrics", results["seen"]))
    slowest = max(results["applied"])
    verdict = "met" if slowest < 1000 else "MISSED"
    print(f"target: every change applied within 1 s: {verdict} (slowest {slowest:.1f} ms)")
    print(f"({time.monotonic() - started:.1f}s)")
    return 0 if slowest < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
