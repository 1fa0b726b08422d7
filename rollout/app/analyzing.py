"""The driver's analysis port on top of rollout.analysis: measure, judge, explain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rollout.analysis import (
    Decision,
    InvalidQuery,
    JudgeState,
    MetricOutcome,
    MetricProvider,
    Verdict,
    Window,
    Workloads,
    judge_for,
)
from rollout.core.analysis_model import AnalysisSpec
from rollout.core.errors import InfrastructureError
from rollout.core.ports import AnalysisContext, StepVerdict

_PASSED = {Decision.PASS: True, Decision.FAIL: False, Decision.INCONCLUSIVE: None}


def judge_window(*, spec: AnalysisSpec, provider: MetricProvider, workloads: Workloads,
                 seconds: float, end: datetime | None, state: JudgeState
                 ) -> tuple[Verdict, JudgeState]:
    """Runs the configured judge once over the interval of `seconds` ending at `end` (None:
    now), carrying `state` from the last run. Used by live rollouts, the backtest and the
    benchmark alike; what each kind measures is in rollout.analysis.judging."""
    window = Window(provider=provider, workloads=workloads, seconds=seconds,
                    end=end or datetime.now(UTC))
    return judge_for(spec).run(window, state)


class MetricAnalysis:
    """Runs the configured judge against a metric provider once per analysis interval."""

    def __init__(self, *, spec: AnalysisSpec, provider: MetricProvider) -> None:
        self.spec = spec
        self.provider = provider

    def validate(self, ctx: AnalysisContext) -> None:
        """Runs every query once, so Prometheus parses each before the canary is deployed."""
        workloads = Workloads(namespace=ctx.namespace, canary=ctx.canary_workload,
                              primary=ctx.primary_workload)
        for name, query in judge_for(self.spec).queries(workloads):
            try:
                self.provider.query(query)
            except InvalidQuery as exc:
                raise InvalidQuery(f"metric {name!r}: {exc.message}", query=query,
                                   hint="fix the metric's query or template; nothing was "
                                        "changed") from None

    def analyze(self, ctx: AnalysisContext, judge_state: dict[str, Any],
                at: datetime | None = None) -> StepVerdict:
        """One analysis run ending at `at` (None: now), continuing the journaled judge state."""
        workloads = Workloads(namespace=ctx.namespace, canary=ctx.canary_workload,
                              primary=ctx.primary_workload)
        verdict, after = judge_window(spec=self.spec, provider=self.provider,
                                      workloads=workloads, seconds=ctx.interval_seconds,
                                      end=at, state=JudgeState.from_dict(judge_state))
        failed = verdict.failed_metrics
        if failed and all(m.result is MetricOutcome.ERROR for m in failed):
            # Nothing was measured, so this is no verdict on the version: the driver reverts
            # as an infrastructure failure (exit 3), which no release gate counts against it.
            raise InfrastructureError(
                "the metrics could not be read: " + "; ".join(m.reason for m in failed),
                hint="check that Prometheus is up and reachable, then run the rollout again")
        return StepVerdict(
            passed=_PASSED[verdict.result], failed_checks=verdict.failed_checks,
            reason=verdict.reason, metrics=[m.to_dict() for m in verdict.metrics],
            judge_state=after.to_dict(), final=verdict.final,
        )
