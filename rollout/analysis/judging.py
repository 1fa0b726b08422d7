"""The one shape every judge kind runs in: a window read through the provider, and a state."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from rollout.analysis.guards import guarded
from rollout.analysis.judges import ComparativeJudge, SequentialJudge, ThresholdJudge
from rollout.analysis.measuring import count_events, measure, sample
from rollout.analysis.memory import JudgeState
from rollout.analysis.providers import MetricProvider
from rollout.analysis.results import Measurement, Verdict
from rollout.analysis.templates import Workloads, metric_queries
from rollout.core.analysis_model import AnalysisSpec, MetricSpec
from rollout.core.durations import format_duration, parse_duration


@dataclass(frozen=True)
class Window:
    """What one analysis run looks at: the `seconds` ending at `end`, read through `provider`."""

    provider: MetricProvider
    workloads: Workloads
    seconds: float
    end: datetime


class Judge(Protocol):
    """A judge kind with its own measuring: called once per analysis interval."""

    def run(self, window: Window, state: JudgeState) -> tuple[Verdict, JudgeState]:
        """The verdict on `window`, and the state the next run continues from."""
        ...

    def queries(self, workloads: Workloads) -> tuple[tuple[str, str], ...]:
        """(metric, PromQL) for each metric's canary and primary query as a run renders
        them, so the provider can parse each before the canary is deployed."""
        ...


@dataclass(frozen=True)
class ThresholdWindowJudge:
    """Each metric over its own interval ending at the window's end; no state is carried."""

    spec: AnalysisSpec

    def run(self, window: Window, state: JudgeState) -> tuple[Verdict, JudgeState]:
        spec = self.spec
        measurements = measure(analysis=spec, provider=window.provider,
                               workloads=window.workloads, at=window.end)
        judge = ThresholdJudge(metrics=spec.metrics, on_no_data=spec.on_no_data)
        return judge.judge(measurements), state

    def queries(self, workloads: Workloads) -> tuple[tuple[str, str], ...]:
        return _queries(self.spec, workloads, window_of=self.spec.interval_of)


@dataclass(frozen=True)
class SequentialWindowJudge:
    """Exact counts from the counters read when the last run ended (or, the first time, the
    window's start) to the counters at its end; metrics are absolute guards."""

    spec: AnalysisSpec

    def run(self, window: Window, state: JudgeState) -> tuple[Verdict, JudgeState]:
        spec = self.spec
        since = (state.canary, state.primary) if state.canary and state.primary else None
        observations, readings = count_events(
            provider=window.provider, workloads=window.workloads,
            slow_request_ms=spec.judge.slow_request_ms,
            start=window.end - timedelta(seconds=window.seconds), end=window.end, since=since)
        judge = SequentialJudge.from_spec(spec.judge, on_no_data=spec.on_no_data)
        state, verdict = judge.judge(state=state, observations=observations)
        if readings is not None:
            state = state.with_readings(*readings)
        return _guarded(verdict, spec, window), state

    def queries(self, workloads: Workloads) -> tuple[tuple[str, str], ...]:
        return _queries(self.spec, workloads, window_of=self.spec.interval_of)


@dataclass(frozen=True)
class ComparativeWindowJudge:
    """The samples of every judge step since the rollout's first analysis, each step sampled
    once; metrics with a thresholdRange are also absolute guards."""

    spec: AnalysisSpec

    def run(self, window: Window, state: JudgeState) -> tuple[Verdict, JudgeState]:
        spec = self.spec
        end = window.end
        step = parse_duration(spec.judge.step)
        # Each sample is the rate over the judge step ending at its timestamp, so samples taken
        # one step apart never share a request; the next run starts one step after the last.
        first = (state.sampled_until + step if state.sampled_until is not None
                 else end.timestamp() - window.seconds + step)
        # The tolerance keeps float noise in the timestamps from dropping a whole step.
        count = math.floor((end.timestamp() - first) / step + 1e-6) + 1
        fresh: tuple[Measurement, ...] = ()
        if count >= 1:
            last = first + (count - 1) * step
            fresh = sample(analysis=spec, provider=window.provider, workloads=window.workloads,
                           start=datetime.fromtimestamp(first, UTC),
                           end=datetime.fromtimestamp(last, UTC))
            usable = {m.metric: (m.canary, m.primary) for m in fresh
                      if m.error is None and m.primary_error is None}
            state = state.with_samples(usable, start=first - step, until=last)
        since = state.sampled_from or end.timestamp() - window.seconds
        span = format_duration(end.timestamp() - since)
        measurements = []
        for measurement in fresh:
            kept = state.samples.get(measurement.metric)
            if measurement.error is None and measurement.primary_error is None and kept:
                measurement = replace(measurement, canary=kept.canary, primary=kept.primary,
                                      window=span)
            measurements.append(measurement)
        judge = ComparativeJudge(spec=spec.judge, metrics=spec.metrics,
                                 on_no_data=spec.on_no_data)
        return _guarded(judge.judge(measurements), spec, window), state

    def queries(self, workloads: Workloads) -> tuple[tuple[str, str], ...]:
        # A run samples each metric over one judge step, not over its interval.
        return _queries(self.spec, workloads, window_of=lambda _: self.spec.judge.step)


def _guarded(verdict: Verdict, spec: AnalysisSpec, window: Window) -> Verdict:
    return guarded(verdict, spec, window.provider, window.workloads, end=window.end)


def _queries(spec: AnalysisSpec, workloads: Workloads, *,
             window_of: Callable[[MetricSpec], str]) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for metric in spec.metrics:
        rendered = metric_queries(metric, workloads=workloads, interval=window_of(metric),
                                  templates=spec.templates)
        found += [(metric.name, rendered.canary), (metric.name, rendered.primary)]
    return tuple(found)
