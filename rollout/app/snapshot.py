"""One view model of a rollout, read from its journaled state: what every live view shows. Pure.

The time left and the next stop follow the driver (rollout/app/driver.py): each step is
applied, then analysed after one interval until an analysis passes, then paused if its
schedule entry says so (a timed pause, or a manual one until `rollout approve`); after the
last step comes promotion. The estimate counts one passing analysis per remaining step,
the timed pauses ahead and the rest of the current interval or pause; Pulumi updates, gates,
inconclusive analyses and manual pauses are not counted (`open_ended` says when one of the
last two is known to lie ahead).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rollout.analysis.templates import BUILTIN_TEMPLATES
from rollout.analysis.wording import bounds, show, verdict_word
from rollout.core.state import Phase, RolloutState

# The phases that still walk the steps: the only ones with an estimate of the time left.
_WALKING = (Phase.INITIALIZING, Phase.PROGRESSING, Phase.WAITING)
APPROVE = "rollout approve"


@dataclass(frozen=True)
class MetricRow:
    """One metric of a verdict as a person reads it: values and bounds with their unit."""

    metric: str
    result: str  # "pass" | "fail" | "inconclusive"
    failed: bool
    canary: str
    primary: str
    threshold: str  # "" for a metric judged without bounds (a statistical test)


@dataclass(frozen=True)
class Snapshot:
    """A rollout at one moment, in the words and numbers its views show."""

    stack: str
    rollout_id: str
    candidate: str
    stable: str
    phase: str
    outcome: str | None
    reason: str
    step: int  # 1-based current step, 0 before the first weight step
    total_steps: int
    canary_weight: int
    primary_weight: int
    failed_checks: int
    threshold: int | None  # None: the state does not know it (an older journal)
    verdict: str | None  # "PASS" / "FAIL" / "INCONCLUSIVE" of the last analysis
    verdict_weight: int | None
    verdict_reason: str
    metrics: tuple[MetricRow, ...]
    seconds_left: float | None  # estimate; None when terminal or unknown
    next_stop: str  # the next pause or promotion, in words; "" when terminal
    waiting: str  # what it waits for right now; "" if not waiting
    started_at: float
    updated_at: float
    running: bool  # not terminal
    # A manual pause (or a gate being waited for) lies ahead: seconds_left is the known part.
    open_ended: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the durations also in words (`words`), so a page shows them as
        the terminal does."""
        data = asdict(self)
        data["metrics"] = [asdict(row) for row in self.metrics]
        data["time_left"] = None if self.seconds_left is None else words(self.seconds_left)
        data["took"] = words(self.updated_at - self.started_at)
        return data


def snapshot(state: RolloutState, *, now: float) -> Snapshot:
    """The view model of `state` as of clock time `now` (seconds since the epoch)."""
    last = state.analyses[-1] if state.analyses else None
    schedule = _schedule(state)
    total = len(schedule) if schedule is not None else state.total_steps
    seconds_left, open_ended = time_left(state, now=now)
    return Snapshot(
        stack=state.stack, rollout_id=state.rollout_id, candidate=state.candidate,
        stable=state.stable, phase=str(state.phase),
        outcome=str(state.outcome) if state.outcome else None, reason=state.reason,
        step=state.step + 1 if state.step >= 0 else 0, total_steps=total,
        canary_weight=state.weight, primary_weight=100 - state.weight,
        failed_checks=state.failed_checks, threshold=state.threshold or None,
        verdict=verdict_word(last.get("passed")) if last is not None else None,
        verdict_weight=_int_or_none(last.get("weight")) if last is not None else None,
        verdict_reason=str(last.get("reason", "")) if last is not None else "",
        metrics=tuple(metric_row(m) for m in (last or {}).get("metrics") or []),
        seconds_left=seconds_left, next_stop=_next_stop(state, schedule),
        waiting=_waiting(state, schedule, now=now), started_at=state.started_at,
        updated_at=state.updated_at, running=not state.phase.terminal, open_ended=open_ended,
    )


def metric_row(metric: dict[str, Any]) -> MetricRow:
    """One metric record of a verdict (`MetricVerdict.to_dict()`) in display strings."""
    name = str(metric.get("metric") or metric.get("name") or "")
    unit = BUILTIN_TEMPLATES.get(name, ("", ""))[1]
    low, high = metric.get("minimum"), metric.get("maximum")
    failed = bool(metric.get("failed"))
    if failed:
        result = "fail"
    elif str(metric.get("result", "")).upper() == "PASS":
        result = "pass"
    else:
        result = "inconclusive"
    return MetricRow(
        metric=name, result=result, failed=failed,
        canary=_value(metric.get("canary"), unit), primary=_value(metric.get("primary"), unit),
        threshold=bounds(low, high, unit) if low is not None or high is not None else "",
    )


def time_left(state: RolloutState, *, now: float) -> tuple[float | None, bool]:
    """(seconds, open_ended): the estimate of the time until promotion, None when the state
    is not walking its steps or its interval is not known; open_ended when a manual pause
    or a gate wait, whose length nobody knows, is part of what is left."""
    steps = _steps_ahead(state)
    if state.phase not in _WALKING or not state.interval_seconds or steps is None:
        return None, False
    schedule = _schedule(state) or []
    interval = state.interval_seconds
    pauses = [schedule[i]["pause_seconds"] for i in steps if i < len(schedule)]
    seconds = interval * len(steps) + sum(p for p in pauses if p)
    open_ended = any(p == 0 for p in pauses if p is not None) or _at_gate(state)
    if state.phase is Phase.PROGRESSING and state.step_applied:
        # The current step's interval began when its weight was set or its last analysis
        # was journaled, the state's last save either way.
        elapsed = min(max(now - state.updated_at, 0.0), interval)
        seconds -= elapsed
    if state.phase is Phase.WAITING:
        pause = _pause_of(state, schedule)
        if pause == 0:
            open_ended = True
        elif pause:
            seconds += _rest(state, pause, now=now)
    return seconds, open_ended


def words(seconds: float) -> str:
    """A duration as a person reads it: "12s", "4m 10s", "2h 5m", "1d 3h"."""
    whole = max(round(seconds), 0)
    for big, small in ((("d", 86400), ("h", 3600)), (("h", 3600), ("m", 60)),
                       (("m", 60), ("s", 1))):
        if whole >= big[1]:
            high, rest = divmod(whole, big[1])
            low = rest // small[1]
            return f"{high}{big[0]} {low}{small[0]}" if low else f"{high}{big[0]}"
    return f"{whole}s"


# -- helpers ------------------------------------------------------------------------------


def _schedule(state: RolloutState) -> list[dict[str, Any]] | None:
    """The journaled steps, None for a journal written before they were."""
    return state.schedule or None


def _steps_ahead(state: RolloutState) -> list[int] | None:
    """Indexes of the steps that still need a passing analysis; None when unknown."""
    total = len(state.schedule) or state.total_steps
    if not total:
        return None
    if state.phase is Phase.INITIALIZING:
        return list(range(total))
    if state.phase is Phase.PROGRESSING:
        return list(range(max(state.step, 0), total))
    if state.phase is Phase.WAITING:
        return list(range(state.step + 1, total))
    return []


def _pause_of(state: RolloutState, schedule: list[dict[str, Any]]) -> float | None:
    if 0 <= state.step < len(schedule):
        pause = schedule[state.step].get("pause_seconds")
        return None if pause is None else float(pause)
    return None


def _rest(state: RolloutState, seconds: float, *, now: float) -> float:
    """What is left of a wait of `seconds` that began (or begins) in this phase."""
    if state.wait_deadline:
        return max(state.wait_deadline - now, 0.0)
    return seconds


def _at_gate(state: RolloutState) -> bool:
    return _gate(state) != ""


def _gate(state: RolloutState) -> str:
    """The gate the driver waits at: a journaled wait outside a pause is a gate's."""
    if not state.wait_deadline:
        return ""
    if state.phase is Phase.INITIALIZING:
        return "confirm-rollout"
    if state.phase is Phase.PROGRESSING and not state.step_applied:
        return "confirm-traffic-increase"
    if state.phase is Phase.WAITING_PROMOTION:
        return "confirm-promotion"
    return ""


def _next_stop(state: RolloutState, schedule: list[dict[str, Any]] | None) -> str:
    if state.phase.terminal:
        return ""
    if state.phase is Phase.ROLLING_BACK:
        return f"revert to {state.stable}"
    if state.phase in (Phase.PROMOTING, Phase.FINALISING):
        return f"promotion of {state.candidate} under way"
    if state.phase is Phase.WAITING_PROMOTION:
        return "promotion" + (" once the confirm-promotion gate passes"
                              if state.wait_deadline else "")
    total = len(schedule) if schedule is not None else state.total_steps
    if schedule is None:
        return f"promotion after step {total} of {total} (pauses not journaled)" if total else ""
    for index in _steps_ahead(state) or []:
        step = schedule[index]
        pause = step.get("pause_seconds")
        if pause is None:
            continue
        if pause == 0:
            return f"manual pause at {step['weight']}% ({APPROVE})"
        return f"pause {words(pause)} at {step['weight']}%"
    return f"promotion after step {total} of {total}"


def _waiting(state: RolloutState, schedule: list[dict[str, Any]] | None, *, now: float) -> str:
    gate = _gate(state)
    if gate:
        return f"the {gate} gate, times out in {words(state.wait_deadline - now)}"
    if state.phase is not Phase.WAITING:
        return ""
    pause = _pause_of(state, schedule or [])
    if pause == 0:
        timeout = (f", times out in {words(state.wait_deadline - now)}"
                   if state.wait_deadline else "")
        return f"approval ({APPROVE}){timeout}"
    if pause:
        return f"pause, {words(_rest(state, pause, now=now))} left"
    # A journal without its schedule: the deadline ends a timed pause or an approval's wait.
    return "pause" + (f", ends in {words(state.wait_deadline - now)}"
                      if state.wait_deadline else "")


def _value(value: Any, unit: str) -> str:
    return "" if value is None else show(float(value), unit)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
