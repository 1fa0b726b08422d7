"""Backtest: what the configured judge would have decided over a stretch of past metrics."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rollout.adapters.prometheus import default_prometheus
from rollout.adapters.providers import provider_for
from rollout.analysis import (
    Decision,
    JudgeState,
    MetricOutcome,
    MetricProvider,
    MetricQueryError,
    MetricVerdict,
    Verdict,
    Workloads,
)
from rollout.analysis.templates import BUILTIN_TEMPLATES
from rollout.analysis.wording import bounds, share, show
from rollout.app.analyzing import judge_window
from rollout.core.analysis_model import AnalysisSpec
from rollout.core.durations import parse_duration
from rollout.core.errors import InvalidInput
from rollout.core.tally import Tally, add_check

MAX_WINDOWS = 2000
_PASSED = {Decision.PASS: True, Decision.FAIL: False, Decision.INCONCLUSIVE: None}
_SEQUENTIAL_TESTS = ("errors", "slow-requests")


@dataclass(frozen=True)
class TimeSpan:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReplayedCheck:
    """One analysis as the rollout would have run it at `window.end`, with the running tally."""

    window: TimeSpan
    verdict: Verdict
    failed_checks: int
    inconclusive: int
    note: str = ""


@dataclass(frozen=True)
class Rollback:
    at: datetime
    failed_checks: int
    why: str = ""


@dataclass(frozen=True)
class Backtest:
    checks: tuple[ReplayedCheck, ...]
    threshold: int
    rollback: Rollback | None
    judge: str = "threshold"
    units: tuple[tuple[str, str], ...] = ()

    @property
    def summary(self) -> str:
        if self.rollback is None:
            failed = self.checks[-1].failed_checks if self.checks else 0
            return (f"would have passed: {failed} failed checks in {len(self.checks)} analyses "
                    f"(threshold {self.threshold})")
        found = self.rollback
        text = (f"would have rolled back at {_when(found.at)} after {found.failed_checks} "
                f"failed checks (threshold {self.threshold})")
        return f"{text}: {found.why}" if found.why else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "threshold": self.threshold,
            "summary": self.summary,
            "rolled_back_at": _when(self.rollback.at) if self.rollback else None,
            "windows": [_check_dict(check) for check in self.checks],
        }


# -- time ranges ----------------------------------------------------------------------------


def parse_when(text: str, *, now: datetime) -> datetime:
    """'now', a duration before now ('-15m') or an ISO 8601 time (UTC when it has no zone)."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("-"):
        return now - timedelta(seconds=parse_duration(text[1:], positive=True))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is neither 'now', a duration before now nor an ISO 8601 time",
            hint="write e.g. now, -15m, -2h or 2024-05-01T12:00:00Z",
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def windows(*, start: datetime, end: datetime, length: float, step: float) -> list[TimeSpan]:
    """`length`-second windows ending every `step` seconds, the first one ending at start+length."""
    span = (end - start).total_seconds()
    if span < length:
        raise InvalidInput(
            f"the range {_when(start)} to {_when(end)} is shorter than one analysis interval "
            f"({length:g}s)",
            hint="move --start earlier or --end later",
        )
    # A small tolerance, so a range of exactly n steps is not one window short.
    count = math.floor((span - length) / step + 1e-9) + 1
    if count > MAX_WINDOWS:
        raise InvalidInput(
            f"the range holds {count} analyses; at most {MAX_WINDOWS} are allowed",
            hint="use a larger --step or a shorter range",
        )
    ends = (start + timedelta(seconds=length + i * step) for i in range(count))
    return [TimeSpan(end - timedelta(seconds=length), end) for end in ends]


def plan(spec: AnalysisSpec, *, start: str, end: str, step: str | None,
         now: datetime) -> list[TimeSpan]:
    """The windows to judge between `start` and `end`, one analysis interval long each."""
    first, last = parse_when(start, now=now), parse_when(end, now=now)
    if last <= first:
        raise InvalidInput(f"--end {_when(last)} is not after --start {_when(first)}")
    length = parse_duration(spec.interval)
    every = parse_duration(step) if step else length
    if spec.judge.kind == "sequential" and every < length:
        # Overlapping windows would count the same requests twice as fresh evidence.
        raise InvalidInput(
            f"the sequential judge needs windows that do not overlap, but --step {step} is "
            f"shorter than the interval {spec.interval}",
            hint=f"use a --step of at least {spec.interval}, or leave it out",
        )
    return windows(start=first, end=last, length=length, step=every)


# -- judging ------------------------------------------------------------------------------


def tally(judged: Iterable[tuple[TimeSpan, Verdict]], *, threshold: int,
          max_inconclusive: int) -> list[ReplayedCheck]:
    """Failed checks as the driver counts them (rollout.core.tally)."""
    checks = []
    running = Tally()
    for window, verdict in judged:
        running = add_check(running, passed=_PASSED[verdict.result],
                            failed_checks=verdict.failed_checks, final=verdict.final,
                            threshold=threshold, max_inconclusive=max_inconclusive)
        checks.append(ReplayedCheck(window, verdict, running.failed, running.inconclusive,
                            running.note))
    return checks


def first_rollback(checks: Sequence[ReplayedCheck], *, threshold: int) -> Rollback | None:
    for check in checks:
        if check.failed_checks >= threshold:
            return Rollback(check.window.end, check.failed_checks, check.note)
    return None


class Replay:
    """The configured judge run as the driver would have run it at the end of each window."""

    def __init__(self, *, spec: AnalysisSpec, provider: MetricProvider,
                 workloads: Workloads) -> None:
        self.spec = spec
        self.provider = provider
        self.workloads = workloads
        self._state = JudgeState()

    def judge(self, window: TimeSpan) -> Verdict:
        verdict, self._state = judge_window(
            spec=self.spec, provider=self.provider, workloads=self.workloads,
            seconds=(window.end - window.start).total_seconds(), end=window.end,
            state=self._state)
        return verdict


def backtest(*, spec: AnalysisSpec, provider: MetricProvider, workloads: Workloads,
             windows: Sequence[TimeSpan]) -> Backtest:
    """Judges every window in order and finds where the rollout would have rolled back."""
    replay = Replay(spec=spec, provider=provider, workloads=workloads)
    checks = tally(((window, replay.judge(window)) for window in windows),
                   threshold=spec.threshold, max_inconclusive=spec.max_inconclusive)
    return Backtest(
        checks=tuple(checks),
        threshold=spec.threshold,
        rollback=first_rollback(checks, threshold=spec.threshold),
        judge=spec.judge.kind,
        units=tuple(_units(spec).items()),
    )


def _units(spec: AnalysisSpec) -> dict[str, str]:
    return {m.name: BUILTIN_TEMPLATES[m.name][1] if m.builtin else "" for m in spec.metrics}


# -- a stack's analysis -------------------------------------------------------------------


def stack_analysis(stack: str, *, service: str | None = None, project_dir: Path | None = None
                   ) -> tuple[AnalysisSpec, Workloads]:
    """The stack's analysis config and workloads, read without changing (or creating) it."""
    from rollout.app.api import Rollouts
    from rollout.core.policy import analysis_spec

    rollouts = Rollouts(stack=stack, service=service, project_dir=project_dir)
    # Selected before settings_and_policy(), which would otherwise create a missing stack.
    rollouts.adapter.stack(create=False)
    settings, policy = rollouts.settings_and_policy()
    if policy.skip_analysis:
        raise InvalidInput(f"stack {stack} skips analysis (skipAnalysis: true); "
                           "there is nothing to backtest")
    workloads = Workloads(namespace=settings.namespace, canary=settings.canary_name,
                          primary=settings.primary_name)
    return analysis_spec(policy, default_address=default_prometheus()), workloads


def backtest_stack(stack: str, *, start: str, end: str, step: str | None,
                   service: str | None = None, project_dir: Path | None = None,
                   now: datetime | None = None) -> tuple[Backtest, Workloads]:
    """`rollout analyze`: the stack's analysis replayed over [start, end] against Prometheus."""
    spec, workloads = stack_analysis(stack, service=service, project_dir=project_dir)
    planned = plan(spec, start=start, end=end, step=step, now=now or datetime.now(UTC))
    provider = provider_for(spec.provider)
    if not provider.is_online():
        raise MetricQueryError(
            f"the metric provider at {spec.provider.address} is not answering",
            query="vector(1)",
            hint="check the stack's analysis provider address and that Prometheus is running",
        )
    return backtest(spec=spec, provider=provider, workloads=workloads, windows=planned), workloads


# -- presenting -----------------------------------------------------------------------------


def table(result: Backtest) -> tuple[list[str], list[list[str]]]:
    """Header and rows: time, each metric's canary / primary value, verdict and reason."""
    names = _metric_names(result)
    header = ["time", *names, "verdict", "reason"]
    rows = []
    for check in result.checks:
        found = {m.metric: m for m in check.verdict.metrics}
        cells = [_cell(found.get(name), result) for name in names]
        verdict = f"{check.verdict.result} ({check.failed_checks}/{result.threshold})"
        if result.rollback is not None and check.window.end == result.rollback.at:
            verdict += " ROLLBACK"
        rows.append([_when(check.window.end), *cells, verdict, brief(check.verdict, result)])
    return header, rows


def _metric_names(result: Backtest) -> list[str]:
    names: list[str] = []
    for check in result.checks:
        names += [m.metric for m in check.verdict.metrics if m.metric not in names]
    return names


def _cell(metric: MetricVerdict | None, result: Backtest) -> str:
    if metric is None:
        return "-"
    if metric.result in (MetricOutcome.NO_DATA, MetricOutcome.ERROR):
        text = str(metric.result)
    else:
        canary, primary = metric.canary, metric.primary
        text = f"{_value(metric, canary, result)} / {_value(metric, primary, result)}"
    return f"{text} ✗" if metric.failed else text


def _value(metric: MetricVerdict, value: float | None, result: Backtest) -> str:
    if value is None:
        return "-"
    if result.judge == "sequential" and metric.metric in _SEQUENTIAL_TESTS:
        return share(value)
    return show(value, dict(result.units).get(metric.metric, ""))


def brief(verdict: Verdict, result: Backtest) -> str:
    """The verdict's reason in a line: what failed and by how much, without the queries."""
    failed = [_brief_metric(m, result) for m in verdict.failed_metrics]
    lead = f"score {verdict.score:.0f}" if verdict.score is not None else ""
    if not failed:
        return lead or "all metrics passed"
    return "; ".join([lead, *failed] if lead else failed)


def _brief_metric(metric: MetricVerdict, result: Backtest) -> str:
    unit = dict(result.units).get(metric.metric, "")
    if metric.result is MetricOutcome.NO_DATA:
        return f"{metric.metric}: no data"
    if metric.result is MetricOutcome.ERROR:
        return metric.reason
    if result.judge == "sequential":
        return (f"{metric.metric}: canary {_value(metric, metric.canary, result)} against "
                f"{_value(metric, metric.primary, result)}, evidence {show(metric.statistic)}")
    if result.judge == "comparative":
        way = "higher" if metric.result is MetricOutcome.HIGH else "lower"
        return f"{metric.metric} significantly {way} than the primary (p={metric.p_value:.3g})"
    return (f"{metric.metric} {show(metric.canary, unit)} not "
            f"{bounds(metric.minimum, metric.maximum, unit)}")


def _check_dict(check: ReplayedCheck) -> dict[str, Any]:
    return {
        "start": _when(check.window.start),
        "end": _when(check.window.end),
        "result": str(check.verdict.result),
        "failed_checks": check.failed_checks,
        "reason": check.verdict.reason,
        "metrics": [m.to_dict() for m in check.verdict.metrics],
    }


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
