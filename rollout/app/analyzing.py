"""The driver's analysis port on top of rollout.analysis: measure, judge, explain."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rollout.analysis import (
    ComparativeJudge,
    Decision,
    InvalidQuery,
    JudgeState,
    MetricProvider,
    Outcome,
    SequentialJudge,
    ThresholdJudge,
    Verdict,
    Workloads,
    count_events,
    measure,
    metric_queries,
    sample,
)
from rollout.core.analysis_model import AnalysisSpec
from rollout.core.durations import format_duration, parse_duration
from rollout.core.errors import InfrastructureError
from rollout.core.ports import AnalysisContext, StepVerdict

_PASSED = {Decision.PASS: True, Decision.FAIL: False, Decision.INCONCLUSIVE: None}


def judge_window(*, spec: AnalysisSpec, provider: MetricProvider, workloads: Workloads,
                 seconds: float, end: datetime | None, state: JudgeState
                 ) -> tuple[Verdict, JudgeState]:
    """Runs the configured judge once over the interval of `seconds` ending at `end` (None:
    now), carrying `state` from the last run. Used by live rollouts, the backtest and the
    benchmark alike.

    - sequential: exact counts from the counters read when the last interval ended (or, the
      first time, `seconds` before `end`) to the counters at `end`;
    - comparative: the samples of every judge step since the first analysis of the rollout,
      each step sampled once;
    - threshold: each metric over its interval ending at `end`.
    Metrics with a thresholdRange are also absolute guards for the two relative judges.
    """
    stop = end or datetime.now(UTC)
    kind = spec.judge.kind
    if kind == "threshold":
        measurements = measure(analysis=spec, provider=provider, workloads=workloads, at=stop)
        judge = ThresholdJudge(metrics=spec.metrics, on_no_data=spec.on_no_data)
        return judge.judge(measurements), state
    if kind == "sequential":
        verdict, state = _sequential(spec, provider, workloads, seconds=seconds, end=stop,
                                     state=state)
    else:
        verdict, state = _comparative(spec, provider, workloads, seconds=seconds, end=stop,
                                      state=state)
    return guarded(verdict, spec, provider, workloads, end=stop), state


def _sequential(spec: AnalysisSpec, provider: MetricProvider, workloads: Workloads, *,
                seconds: float, end: datetime, state: JudgeState) -> tuple[Verdict, JudgeState]:
    since = (state.canary, state.primary) if state.canary and state.primary else None
    observations, readings = count_events(
        provider=provider, workloads=workloads, slow_request_ms=spec.judge.slow_request_ms,
        start=end - timedelta(seconds=seconds), end=end, since=since)
    judge = SequentialJudge.from_spec(spec.judge, on_no_data=spec.on_no_data)
    state, verdict = judge.judge(state=state, observations=observations)
    if readings is not None:
        state = state.with_readings(*readings)
    return verdict, state


def _comparative(spec: AnalysisSpec, provider: MetricProvider, workloads: Workloads, *,
                 seconds: float, end: datetime, state: JudgeState
                 ) -> tuple[Verdict, JudgeState]:
    step = parse_duration(spec.judge.step)
    # Each sample is the rate over the judge step ending at its timestamp, so samples taken
    # one step apart never share a request; the next run starts one step after the last.
    first = (state.sampled_until + step if state.sampled_until is not None
             else end.timestamp() - seconds + step)
    # The tolerance keeps float noise in the timestamps from dropping a whole step.
    count = math.floor((end.timestamp() - first) / step + 1e-6) + 1
    if count < 1:
        fresh: tuple[Any, ...] = ()
    else:
        last = first + (count - 1) * step
        fresh = sample(analysis=spec, provider=provider, workloads=workloads,
                       start=datetime.fromtimestamp(first, UTC),
                       end=datetime.fromtimestamp(last, UTC))
        usable = {m.metric: (m.canary, m.primary) for m in fresh
                  if m.error is None and m.primary_error is None}
        state = state.with_samples(usable, start=first - step, until=last)
    window = format_duration(end.timestamp() - (state.sampled_from or end.timestamp() - seconds))
    measurements = []
    for measurement in fresh:
        kept = state.samples.get(measurement.metric)
        if measurement.error is None and measurement.primary_error is None and kept:
            measurement = replace(measurement, canary=kept.canary, primary=kept.primary,
                                  window=window)
        measurements.append(measurement)
    judge = ComparativeJudge(spec=spec.judge, metrics=spec.metrics, on_no_data=spec.on_no_data)
    return judge.judge(measurements), state


def guarded(verdict: Verdict, spec: AnalysisSpec, provider: MetricProvider,
             workloads: Workloads, *, end: datetime) -> Verdict:
    """A relative verdict with each thresholdRange checked on its own: 50% 5xx on both sides
    is no regression, but it is no release either."""
    guards = [metric for metric in spec.metrics if metric.threshold_range is not None]
    if not guards:
        return verdict
    guard_spec = spec.model_copy(update={"metrics": guards})
    measured = measure(analysis=guard_spec, provider=provider, workloads=workloads, at=end,
                       with_primary=False)
    checked = ThresholdJudge(metrics=guards, on_no_data=spec.on_no_data).judge(measured)
    guard_metrics = tuple(replace(m, metric=f"{m.metric} (absolute)") for m in checked.metrics)
    both = (verdict.result, checked.result)
    result = next((d for d in (Decision.FAIL, Decision.INCONCLUSIVE) if d in both),
                  Decision.PASS)
    reason = verdict.reason
    if checked.result is not Decision.PASS:
        reason = f"{checked.reason}; {verdict.reason}"
    return replace(verdict, result=result, metrics=(*verdict.metrics, *guard_metrics),
                   reason=reason,
                   failed_checks=1 if result is Decision.FAIL else 0)


class MetricAnalysis:
    """Runs the configured judge against a metric provider once per analysis interval."""

    def __init__(self, *, spec: AnalysisSpec, provider: MetricProvider) -> None:
        self.spec = spec
        self.provider = provider

    def validate(self, ctx: AnalysisContext) -> None:
        """Runs every query once, so Prometheus parses each before the canary is deployed."""
        workloads = Workloads(namespace=ctx.namespace, canary=ctx.canary_workload,
                              primary=ctx.primary_workload)
        queries: list[tuple[str, str]] = []
        for metric in self.spec.metrics:
            window = (self.spec.judge.step if self.spec.judge.kind == "comparative"
                      else self.spec.interval_of(metric))
            found = metric_queries(metric, workloads=workloads, interval=window,
                                   templates=self.spec.templates)
            queries += [(metric.name, found.canary), (metric.name, found.primary)]
        for name, query in queries:
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
        if failed and all(m.result is Outcome.ERROR for m in failed):
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
