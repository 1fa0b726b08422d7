"""`rollout plan`: a stack's policy and live traffic, read without changing anything, then
planned (rollout.app.planning). The only I/O of planning: the stack's config and three
Prometheus queries."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.adapters.prometheus import default_prometheus
from rollout.adapters.providers import provider_for
from rollout.analysis import MetricProvider, MetricQueryError, Workloads, render
from rollout.analysis.templates import DURATION_P99, REQUEST_RATE, SUCCESS_RATE
from rollout.app.planning import Plan, Traffic, plan
from rollout.core.analysis_model import AnalysisSpec, ProviderSpec
from rollout.core.errors import InvalidInput
from rollout.core.schedule import Step, build_schedule

# Long enough to smooth a few scrapes, short enough to be today's traffic.
RATE_WINDOW = "5m"
ASSUMED_ERROR_RATE = 0.005


@dataclass(frozen=True)
class StackPlan:
    stack: str
    workloads: Workloads
    plan: Plan

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "namespace": self.workloads.namespace,
                "canary": self.workloads.canary, "primary": self.workloads.primary,
                **self.plan.to_dict()}


def stack_policy(stack: str, *, service: str | None = None, project_dir: Path | None = None
                 ) -> tuple[list[Step], AnalysisSpec, Workloads]:
    """The stack's schedule, analysis and workloads, read as `rollout analyze` reads them: a
    stack that does not exist is an error, never created."""
    from rollout.app.api import Rollouts

    rollouts = Rollouts(stack=stack, service=service, project_dir=project_dir)
    rollouts.adapter.stack(create=False)
    settings, policy = rollouts.settings_and_policy()
    if policy.skip_analysis:
        raise InvalidInput(f"stack {stack} skips analysis (skipAnalysis: true); no judge "
                           "watches its canary, so there is nothing to plan",
                           hint=f"remove skipAnalysis from {rollouts.service}:analysis to plan it")
    from rollout.core.policy import analysis_spec

    workloads = Workloads(namespace=settings.namespace, canary=settings.canary_name,
                          primary=settings.primary_name)
    spec = analysis_spec(policy, default_address=default_prometheus())
    return build_schedule(policy), spec, workloads


def check_flags(*, rps: float | None, base_error_percent: float | None) -> None:
    """Bad flags fail before the stack or Prometheus is read."""
    if rps is not None and not (math.isfinite(rps) and rps >= 0):
        raise InvalidInput(f"--rps {rps:g} is not a request rate",
                           hint="give the service's requests per second (primary + canary), "
                           "e.g. --rps 20")
    if base_error_percent is not None and not (
            math.isfinite(base_error_percent) and 0 <= base_error_percent < 100):
        raise InvalidInput(f"--base-error-rate {base_error_percent:g} is not a percentage",
                           hint="give the primary's share of 5xx in percent, from 0 to under "
                           "100, e.g. --base-error-rate 0.5 for 0.5%")


def observed_traffic(provider: MetricProvider, workloads: Workloads, *, address: str,
                     rps: float | None, base_error_percent: float | None) -> Traffic:
    """Flags where given; otherwise the last RATE_WINDOW in Prometheus: the request rate of
    primary + canary, the primary's 5xx share, and its p99 (for the latency model)."""
    names = f"{workloads.primary} + {workloads.canary}"
    where = f"from Prometheus over the last {RATE_WINDOW}"
    unreachable: MetricQueryError | None = None
    total = error = p99 = None
    try:
        total = _sum(_ask(provider, REQUEST_RATE, workloads, target) for target in
                     (workloads.primary, workloads.canary))
        success = _one(_ask(provider, SUCCESS_RATE, workloads, workloads.primary))
        error = None if success is None else min(max(1 - success / 100, 0.0), 1.0)
        p99 = _one(_ask(provider, DURATION_P99, workloads, workloads.primary))
    except MetricQueryError as exc:
        unreachable = exc
    missing = (f"Prometheus at {address} did not answer" if unreachable
               else f"Prometheus had no data for {workloads.primary} over the last {RATE_WINDOW}")

    if rps is not None:
        rps_source = "from --rps"
    elif total:
        rps, rps_source = total, f"{where}: {names}"
    elif unreachable is not None:
        raise MetricQueryError(
            f"{unreachable.message}; the canary's request rate is needed to plan",
            query=unreachable.query,
            hint="start Prometheus or fix the stack's analysis provider, or pass --rps R "
            "(the service's requests per second)")
    else:
        raise InvalidInput(
            f"Prometheus has no requests for {names} in namespace {workloads.namespace} over "
            f"the last {RATE_WINDOW}, so it cannot tell how much traffic the canary will see",
            hint="send the service traffic, or pass --rps R (its requests per second)")

    if base_error_percent is not None:
        base, base_source = base_error_percent / 100, "from --base-error-rate"
    elif error is not None:
        base, base_source = error, f"{where}: {workloads.primary}"
    else:
        base = ASSUMED_ERROR_RATE
        base_source = f"assumed: {missing}; pass --base-error-rate"

    if p99 is not None and p99 > 0:
        latency_source = f"from the primary's p99 of {p99:.3g} ms {where}"
    else:
        p99, latency_source = None, f"assumed: {missing}"
    return Traffic(rps=rps, base_error_rate=base, p99_ms=p99, rps_source=rps_source,
                   base_error_source=base_source, latency_source=latency_source)


def plan_stack(stack: str, *, service: str | None = None,
               project_dir: Path | None = None, rps: float | None = None,
               base_error_percent: float | None = None,
               runs: int | None = None,
               providers: Callable[[ProviderSpec], MetricProvider] = provider_for) -> StackPlan:
    """`rollout plan`: the stack's schedule and the power of its judge; changes nothing."""
    check_flags(rps=rps, base_error_percent=base_error_percent)
    steps, spec, workloads = stack_policy(stack, service=service, project_dir=project_dir)
    traffic = observed_traffic(providers(spec.provider), workloads, address=spec.provider.address,
                               rps=rps, base_error_percent=base_error_percent)
    return StackPlan(stack=stack, workloads=workloads,
                     plan=plan(spec=spec, steps=steps, traffic=traffic, workloads=workloads,
                               runs=runs))


def _ask(provider: MetricProvider, template: str, workloads: Workloads, target: str
         ) -> list[float]:
    return provider.query(render(template, namespace=workloads.namespace, target=target,
                                 primary=workloads.primary, interval=RATE_WINDOW))


def _one(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return finite[0] if len(finite) == 1 else None


def _sum(answers: Any) -> float | None:
    finite = [v for values in answers for v in values if math.isfinite(v)]
    return sum(finite) if finite else None
