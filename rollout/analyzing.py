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


class MetricAnalysis:
    """Runs the configured judge against a metric provider once per analysis interval."""

    def __init__(self, *, spec: AnalysisSpec, provider: MetricProvider, threshold: int) -> None:
        self.spec = spec
        self.provider = provider
        self.threshold = threshold

    def analyze(self, ctx: AnalysisContext, judge_state: dict[str, Any]) -> StepVerdict:
        workloads = Workloads(namespace=ctx.namespace, canary=ctx.canary_workload,
                              primary=ctx.primary_workload)
        kind = self.spec.judge.kind
        new_state = judge_state
        if kind == "sequential":
            new_state, verdict = self._sequential(workloads, ctx, judge_state)
        elif kind == "comparative":
            end = datetime.now(UTC)
            start = end - timedelta(seconds=ctx.interval_seconds)
            measurements = sample(analysis=self.spec, provider=self.provider,
                                  workloads=workloads, start=start, end=end)
            verdict = ComparativeJudge(spec=self.spec.judge,
                                       metrics=self.spec.metrics).judge(measurements)
        else:
            measurements = measure(analysis=self.spec, provider=self.provider,
                                   workloads=workloads)
            verdict = ThresholdJudge(metrics=self.spec.metrics).judge(measurements)
        failed = verdict.failed_checks
        if verdict.final and verdict.result is Decision.FAIL:
            failed = max(failed, self.threshold)
        return StepVerdict(
            passed=_PASSED[verdict.result], failed_checks=failed, reason=verdict.reason,
            metrics=[m.to_dict() for m in verdict.metrics], judge_state=new_state,
        )

    def _sequential(self, workloads: Workloads, ctx: AnalysisContext,
                    judge_state: dict[str, Any]) -> tuple[dict[str, Any], Verdict]:
        judge = SequentialJudge.from_spec(self.spec.judge)
        state = SequentialState.from_dict(judge_state) if judge_state else SequentialState()
        observations = count_events(provider=self.provider, workloads=workloads,
                                    window=format_duration(ctx.interval_seconds),
                                    slow_request_ms=self.spec.judge.slow_request_ms)
        new_state, verdict = judge.judge(state=state, observations=observations)
        return new_state.to_dict(), verdict
