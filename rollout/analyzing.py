"""The driver's analysis port on top of rollout.analysis: measure, judge, explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rollout.analysis import (
    AnalysisSpec,
    ComparativeJudge,
    Decision,
    MetricProvider,
    SequentialJudge,
    SequentialState,
    ThresholdJudge,
    Verdict,
    Workloads,
    count_events,
    measure,
    sample,
)
from rollout.durations import format_duration
from rollout.ports import AnalysisContext, StepVerdict

_PASSED = {Decision.PASS: True, Decision.FAIL: False, Decision.INCONCLUSIVE: None}


def judge_window(*, spec: AnalysisSpec, provider: MetricProvider, workloads: Workloads,
                 seconds: float, end: datetime | None, sequential: SequentialState
                 ) -> tuple[Verdict, SequentialState]:
    """Runs the configured judge once over the window of `seconds` ending at `end` (None:
    now, by Prometheus' clock). Used by live rollouts and by the backtest alike."""
    kind = spec.judge.kind
    if kind == "sequential":
        observations = count_events(provider=provider, workloads=workloads,
                                    window=format_duration(seconds),
                                    slow_request_ms=spec.judge.slow_request_ms, at=end)
        judge = SequentialJudge.from_spec(spec.judge)
        new_state, verdict = judge.judge(state=sequential, observations=observations)
        return verdict, new_state
    if kind == "comparative":
        stop = end or datetime.now(UTC)
        measurements = sample(analysis=spec, provider=provider, workloads=workloads,
                              start=stop - timedelta(seconds=seconds), end=stop)
        return ComparativeJudge(spec=spec.judge, metrics=spec.metrics).judge(measurements), \
            sequential
    measurements = measure(analysis=spec, provider=provider, workloads=workloads, at=end)
    return ThresholdJudge(metrics=spec.metrics).judge(measurements), sequential


class MetricAnalysis:
    """Runs the configured judge against a metric provider once per analysis interval."""

    def __init__(self, *, spec: AnalysisSpec, provider: MetricProvider, threshold: int) -> None:
        self.spec = spec
        self.provider = provider
        self.threshold = threshold

    def analyze(self, ctx: AnalysisContext, judge_state: dict[str, Any]) -> StepVerdict:
        workloads = Workloads(namespace=ctx.namespace, canary=ctx.canary_workload,
                              primary=ctx.primary_workload)
        before = SequentialState.from_dict(judge_state) if judge_state else SequentialState()
        verdict, after = judge_window(spec=self.spec, provider=self.provider,
                                      workloads=workloads, seconds=ctx.interval_seconds,
                                      end=None, sequential=before)
        failed = verdict.failed_checks
        if verdict.final and verdict.result is Decision.FAIL:
            failed = max(failed, self.threshold)
        return StepVerdict(
            passed=_PASSED[verdict.result], failed_checks=failed, reason=verdict.reason,
            metrics=[m.to_dict() for m in verdict.metrics],
            judge_state=after.to_dict() if self.spec.judge.kind == "sequential" else {},
        )
