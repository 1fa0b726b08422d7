"""Pre-flight power: the smallest regression a policy's judge catches, step by step. Pure.

For each candidate regression, seeded Monte Carlo rollouts (rollout.app.simulated: the project's
own judges and failed-check rule on simulated traffic) give the share of runs rolled back by
the end of each step. The smallest regression rolled back in 90% of runs is found per step by
a grid of halvings from the largest possible regression, then bisection, then log-linear
interpolation. An identical canary gives the false-rollback rate alongside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from rollout.analysis import Workloads
from rollout.app.simulated import (
    DURATION,
    SIGMA,
    Z99,
    Canary,
    Simulation,
    bucket_index,
    bucket_probabilities,
    with_slow_share,
)
from rollout.core.analysis_model import AnalysisSpec
from rollout.core.errors import InvalidInput
from rollout.core.schedule import Step

TARGET = 0.9
SEED = 0
DEFAULT_MEDIAN_MS = 100.0
# A weight step on the lab under live traffic: 3.56 s median (bench/revert_latency; 2.6 s on
# an idle machine, bench/step_cost; bench/README.md "What a step costs").
STEP_UP_SECONDS = 3.5
# Searched ranges: the effect grid starts at the largest possible regression and halves.
MAX_FACTOR = 50.0
SMALLEST_PP = 0.05
SMALLEST_FACTOR = 1.02
# Warn when, by the last step, nothing smaller than this is caught.
WARN_PP = 10.0
WARN_FACTOR = 2.0
WARN_FALSE_ROLLBACK = 0.05


@dataclass(frozen=True)
class Effort:
    """Simulated rollouts per candidate effect, and bisection rounds after the halving grid."""

    runs: int
    bisections: int


# One analysis costs ~20 us with the threshold judge, ~0.5 ms with the sequential one and ~3 ms
# with the comparative one (scipy's Mann-Whitney): each gets what answers a 10-step plan in
# about 10 s on 2 cores.
EFFORT = {"threshold": Effort(200, 2), "sequential": Effort(100, 1), "comparative": Effort(50, 0)}
PLANNED_STEPS = 10
FEWEST_RUNS = 40

Kind = Literal["errors", "latency", "slow-requests"]  # what an effect is measured in
Status = Literal["found", "below", "beyond", "any", "unseen"]


# -- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """The service's traffic: total requests/s (primary + canary), the primary's 5xx share
    (a fraction), its p99 if known, and where each figure came from."""

    rps: float
    base_error_rate: float
    p99_ms: float | None = None
    # How each figure was found, as a phrase: "from --rps", "from Prometheus (...)", "assumed".
    rps_source: str = "given"
    base_error_source: str = "given"
    latency_source: str = "assumed"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rps) and self.rps >= 0):
            raise InvalidInput(f"request rate {self.rps} must be a number >= 0",
                               hint="pass --rps as requests per second, e.g. --rps 20")
        if not (math.isfinite(self.base_error_rate) and 0 <= self.base_error_rate < 1):
            raise InvalidInput(
                f"base error rate {100 * self.base_error_rate:g}% must be from 0 to under 100%",
                hint="pass --base-error-rate in percent, e.g. --base-error-rate 0.5")
        if self.p99_ms is not None and not (math.isfinite(self.p99_ms) and self.p99_ms > 0):
            raise InvalidInput(f"p99 {self.p99_ms} ms must be a positive number")

    @property
    def median_ms(self) -> float:
        """The lognormal's median: from the primary's p99 when known."""
        return self.p99_ms / math.exp(Z99 * SIGMA) if self.p99_ms else DEFAULT_MEDIAN_MS


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """The smallest regression caught with 90% probability by the end of one step.

    found: `effect` (pp, or the p99 multiplier); below: already at the smallest effect tried
    (`limit`); beyond: nothing up to the largest possible (`limit`); any: an identical canary
    is rolled back in 90% of runs too, so no effect can be told apart; unseen: the judge does
    not watch this at all.
    """

    status: Status
    effect: float | None = None
    limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepPower:
    number: int
    weight: int
    pause_seconds: float | None
    canary_requests: float  # expected per analysis
    false_rollback: float  # share of runs rolling back an identical canary by this step's end
    errors: Finding
    latency: Finding

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.number, "weight": self.weight, "pause_seconds": self.pause_seconds,
                "canary_requests_per_analysis": round(self.canary_requests, 2),
                "identical_rolled_back": self.false_rollback,
                "errors_pp": self.errors.to_dict(), "latency": self.latency.to_dict()}


@dataclass(frozen=True)
class Plan:
    judge: str
    interval_seconds: float
    threshold: int
    max_inconclusive: int
    steps: tuple[StepPower, ...]
    traffic: Traffic
    latency_kind: Kind  # "latency" (p99 multiplier) or "slow-requests" (pp of slow requests)
    slow_request_ms: float | None
    base_slow_share: float | None
    runs: int
    bisections: int
    seed: int
    warnings: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def analysis_seconds(self) -> float:
        return len(self.steps) * self.interval_seconds

    @property
    def pause_seconds(self) -> float:
        return sum(s.pause_seconds or 0.0 for s in self.steps)

    @property
    def manual_pauses(self) -> int:
        return sum(s.pause_seconds == 0.0 for s in self.steps)

    @property
    def duration_seconds(self) -> float:
        """Steps x interval + timed pauses: a canary that passes every analysis."""
        return self.analysis_seconds + self.pause_seconds

    @property
    def standard_error(self) -> float:
        """One standard error of a detection rate of 90% estimated from `runs` runs."""
        return math.sqrt(TARGET * (1 - TARGET) / self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge, "interval_seconds": self.interval_seconds,
            "threshold": self.threshold, "max_inconclusive": self.max_inconclusive,
            "traffic": asdict(self.traffic) | {"latency_median_ms": self.traffic.median_ms,
                                               "latency_sigma": SIGMA},
            "latency_measure": "pp of slow requests" if self.latency_kind == "slow-requests"
            else "p99 multiplier",
            "slow_request_ms": self.slow_request_ms, "base_slow_share": self.base_slow_share,
            "duration_seconds": self.duration_seconds, "manual_pauses": self.manual_pauses,
            "pulumi_up_seconds_per_step": STEP_UP_SECONDS,
            "steps": [s.to_dict() for s in self.steps],
            "detection_target": TARGET, "runs": self.runs,
            "bisections": self.bisections, "seed": self.seed,
            "detection_standard_error": round(self.standard_error, 4),
            "warnings": list(self.warnings), "notes": list(self.notes),
        }


# -- the search ------------------------------------------------------------------------------


@dataclass
class _Bracket:
    lo: float  # detection below TARGET here ...
    lo_detection: float
    hi: float  # ... and at least TARGET here
    hi_detection: float

    def estimate(self) -> float:
        """Log-linear interpolation of the detection curve to where it crosses TARGET."""
        if self.hi_detection <= self.lo_detection:
            return self.hi
        share = (TARGET - self.lo_detection) / (self.hi_detection - self.lo_detection)
        return math.exp(math.log(self.lo) + share * (math.log(self.hi) - math.log(self.lo)))


def _search(evaluate: Callable[[float, int], np.ndarray], *, largest: float, smallest: float,
            wanted: Sequence[int], bisections: int) -> dict[int, Finding]:
    """Per step in `wanted` (0-based), the smallest effect x with detection >= TARGET, where
    evaluate(x, upto) gives the detection by the end of each of the first `upto` steps."""
    found: dict[int, Finding] = {}
    if not wanted:
        return found
    last = max(wanted)
    grid: list[tuple[float, np.ndarray]] = []
    x = largest
    while True:
        detected = evaluate(x, last + 1)
        grid.append((x, detected))
        if detected[last] < TARGET or x <= smallest:
            break
        x = max(x / 2, smallest)
    brackets: dict[int, _Bracket] = {}
    for k in wanted:
        top, top_detection = grid[0][0], grid[0][1][k]
        if top_detection < TARGET:
            found[k] = Finding("beyond", limit=top)
            continue
        # Going down the grid, the first effect caught less often than TARGET, and the one
        # before it.
        drop = next((i for i, (_, d) in enumerate(grid) if d[k] < TARGET), None)
        if drop is None:
            found[k] = Finding("below", effect=smallest, limit=smallest)
            continue
        (hi, hi_detected), (lo, lo_detected) = grid[drop - 1], grid[drop]
        brackets[k] = _Bracket(lo, float(lo_detected[k]), hi, float(hi_detected[k]))
    for _ in range(bisections):
        groups: dict[tuple[float, float], list[int]] = {}
        for k, bracket in brackets.items():
            groups.setdefault((bracket.lo, bracket.hi), []).append(k)
        for (lo, hi), members in groups.items():
            middle = math.sqrt(lo * hi)
            detected = evaluate(middle, max(members) + 1)
            for k in members:
                if detected[k] >= TARGET:
                    brackets[k].hi, brackets[k].hi_detection = middle, float(detected[k])
                else:
                    brackets[k].lo, brackets[k].lo_detection = middle, float(detected[k])
    for k, bracket in brackets.items():
        found[k] = Finding("found", effect=bracket.estimate())
    return found


# -- the plan ------------------------------------------------------------------------------


def plan(*, spec: AnalysisSpec, steps: Sequence[Step], traffic: Traffic, workloads: Workloads,
         runs: int | None = None, seed: int = SEED) -> Plan:
    """What the configured judge can catch at each step of the schedule, for this traffic.
    `runs`: simulated rollouts per candidate effect (default: EFFORT of the judge)."""
    if not steps:
        raise InvalidInput("the schedule has no steps", hint="set stepWeight or stepWeights")
    effort = EFFORT[spec.judge.kind]
    if len(steps) > PLANNED_STEPS:
        # Fewer runs for a longer schedule keep the answer about as quick; the footnote says
        # what that costs in precision.
        scaled = max(round(effort.runs * PLANNED_STEPS / len(steps)), FEWEST_RUNS)
        effort = Effort(min(scaled, effort.runs), effort.bisections)
    if runs is not None:
        if not 20 <= runs <= 10_000:
            raise InvalidInput(f"--runs {runs} is out of range",
                               hint="use 20 to 10000 simulated rollouts per candidate "
                               f"(default {effort.runs} for the {spec.judge.kind} judge)")
        effort = Effort(runs, effort.bisections)
    sim = Simulation(spec=spec, weights=[step.weight for step in steps], rps=traffic.rps,
                     base_error_rate=traffic.base_error_rate, median_ms=traffic.median_ms,
                     workloads=workloads, runs=effort.runs, seed=seed)
    count = len(steps)
    base = traffic.base_error_rate
    false_rollback = sim.detection(Canary(base, sim.base_probs), upto=count, stream=0)
    # Where an identical canary is rolled back as often, no regression can be told apart.
    wanted = [k for k in range(count) if false_rollback[k] < TARGET]

    def search(canary: Callable[[float], Canary], largest: float, smallest: float,
               stream: int, kind: Kind) -> dict[int, Finding]:
        def evaluate(x: float, upto: int) -> np.ndarray:
            return sim.detection(canary(x), upto=upto, stream=stream)

        return _search(evaluate, largest=largest, smallest=smallest, wanted=wanted,
                       bisections=effort.bisections)

    errors = search(lambda pp: Canary(base + pp / 100, sim.base_probs),
                    100 * (1 - base), SMALLEST_PP, stream=1, kind="errors")
    slow_ms = spec.judge.slow_request_ms if spec.judge.kind == "sequential" else None
    base_slow = None
    latency: dict[int, Finding] = {}
    if slow_ms is not None:
        bound = bucket_index(slow_ms)
        base_slow = float(sim.base_probs[bound + 1:].sum())
        latency = search(
            lambda pp: Canary(base, with_slow_share(sim.base_probs, bound, pp / 100)),
            100 * (1 - base_slow), SMALLEST_PP, stream=2, kind="slow-requests")
    elif sim.analyst.latency_sides:
        # Searched on the excess x = multiplier - 1, so that x1.05 and x1.1 are far apart.
        excess = search(lambda x: Canary(base, bucket_probabilities(traffic.median_ms, 1 + x)),
                        MAX_FACTOR - 1, SMALLEST_FACTOR - 1, stream=2, kind="latency")
        latency = {k: _as_factor(finding) for k, finding in excess.items()}

    powers = tuple(
        StepPower(number=k + 1, weight=step.weight, pause_seconds=step.pause_seconds,
                  canary_requests=traffic.rps * step.weight / 100 * sim.interval,
                  false_rollback=float(false_rollback[k]),
                  errors=errors.get(k, Finding("any")),
                  latency=(latency.get(k, Finding("any")) if sim.analyst.latency_sides
                           else Finding("unseen")))
        for k, step in enumerate(steps))
    result = Plan(judge=spec.judge.kind, interval_seconds=sim.interval, threshold=spec.threshold,
                  max_inconclusive=spec.max_inconclusive, steps=powers, traffic=traffic,
                  latency_kind="slow-requests" if slow_ms is not None else "latency",
                  slow_request_ms=slow_ms, base_slow_share=base_slow, runs=effort.runs,
                  bisections=effort.bisections, seed=seed, warnings=(), notes=_notes(spec))
    return replace(result, warnings=tuple(_warnings(result, spec)))


def _as_factor(finding: Finding) -> Finding:
    """An excess latency x (searched on a log scale) as the p99 multiplier 1 + x."""
    def factor(x: float | None) -> float | None:
        return None if x is None else 1 + x
    return Finding(finding.status, effect=factor(finding.effect), limit=factor(finding.limit))


# -- what to tell the user ----------------------------------------------------------------------


def describe(finding: Finding, kind: Kind) -> str:
    """A finding as a table cell: '+1.2 pp', 'x1.6 p99', 'nothing up to +99.5 pp', ..."""
    if finding.status == "found":
        return _amount(finding.effect, kind)
    if finding.status == "below":
        return f"<= {_amount(finding.limit, kind, exact=True)}"
    if finding.status == "beyond":
        return f"nothing up to {_amount(finding.limit, kind, exact=True)}"
    if finding.status == "any":
        return "n/a: identical canary rolled back too"
    return "not watched"


def _amount(value: float | None, kind: Kind, *, exact: bool = False) -> str:
    """Estimates to two significant digits (their Monte-Carlo error is larger), limits as set."""
    if value is None:
        return "?"
    if kind == "latency":
        return f"x{value:.3g} p99" if exact or value < 2 else f"x{value:.2g} p99"
    number = f"{value:.3g}" if exact else f"{value:.2g}"
    if kind == "slow-requests":
        return f"+{number} pp slow"
    return f"+{number} pp"


def _notes(spec: AnalysisSpec) -> tuple[str, ...]:
    notes = []
    custom = [m.name for m in spec.metrics if not m.builtin]
    if custom:
        notes.append(f"custom metrics ({', '.join(custom)}) are not modelled: they read as "
                     "healthy")
    own = [m.name for m in spec.metrics if m.interval and m.interval != spec.interval]
    if own:
        notes.append(f"metrics with their own window ({', '.join(own)}) are modelled over the "
                     f"analysis interval {spec.interval}")
    return tuple(notes)


def _warnings(result: Plan, spec: AnalysisSpec) -> list[str]:
    warnings = []
    last = result.steps[-1]
    silent = [s.number for s in result.steps if s.canary_requests == 0]
    if silent:
        where = "every step" if len(silent) == len(result.steps) else (
            "step " + ", ".join(map(str, silent)))
        warnings.append(
            f"the canary receives no requests at {where} (weight 0% or no traffic): the judge "
            f"sees nothing there; each analysis is no data (onNoData: {spec.on_no_data}), and "
            f"past maxInconclusive {spec.max_inconclusive} each counts as a failed check, so "
            "any canary, good or bad, is rolled back")
    if spec.judge.kind != "threshold" and any(s.weight == 100 for s in result.steps):
        warnings.append(
            f"at 100% the primary serves no requests, and the {spec.judge.kind} judge compares "
            "the canary with it: each analysis there is no data, so every canary is rolled "
            "back at that step; end the schedule below 100% (promotion sends the rest)")
    if last.false_rollback >= TARGET:
        lost = next(s for s in result.steps if s.false_rollback >= TARGET)
        where = "" if lost.number == 1 else f" from step {lost.number} ({lost.weight}%) on"
        warnings.append(
            f"nothing can be detected{where}: an identical canary is rolled back in "
            f"{lost.false_rollback:.0%} of runs by then, so the analysis cannot tell a good "
            "canary from a bad one, and no release passes")
    elif last.false_rollback >= WARN_FALSE_ROLLBACK:
        warnings.append(
            f"an identical canary is rolled back in {last.false_rollback:.0%} of runs by the "
            "last step (false rollbacks of good releases)")
    by_the_end = f"by the last step ({last.weight}%)"
    if last.errors.status == "beyond":
        warnings.append(f"{by_the_end}, no rise in 5xx is caught with {TARGET:.0%} probability,"
                        f" even {_amount(last.errors.limit, 'errors', exact=True)} (a canary "
                        "failing every request)")
    elif last.errors.status == "found" and (last.errors.effect or 0) > WARN_PP:
        warnings.append(f"{by_the_end}, nothing under {describe(last.errors, 'errors')} of 5xx "
                        f"is caught with {TARGET:.0%} probability")
    warnings += _latency_warnings(result, spec, by_the_end)
    return warnings


def _latency_warnings(result: Plan, spec: AnalysisSpec, by_the_end: str) -> list[str]:
    last = result.steps[-1].latency
    kind = result.latency_kind
    duration_metric = any(m.builtin and m.name == DURATION for m in spec.metrics)
    if spec.judge.kind == "sequential" and result.slow_request_ms is None:
        if not duration_metric:
            return ["the sequential judge counts 5xx only (no judge.slowRequestMs) and no "
                    "request-duration guard is set: it cannot see latency at all; set "
                    "judge.slowRequestMs (e.g. 250) to test slow requests too"]
    elif last.status == "unseen":
        return [f"no metric of the {spec.judge.kind} judge watches latency (no "
                "request-duration metric): it cannot see a slow canary"]
    what = f"slow requests (> {result.slow_request_ms:g} ms)" if kind == "slow-requests" else (
        "latency")
    if last.status == "beyond":
        return [f"{by_the_end}, no rise in {what} is caught with {TARGET:.0%} probability, "
                f"even {_amount(last.limit, kind, exact=True)}"]
    limit = WARN_PP if kind == "slow-requests" else WARN_FACTOR
    if last.status == "found" and (last.effect or 0) > limit:
        return [f"{by_the_end}, nothing under {describe(last, kind)} of {what} is caught with "
                f"{TARGET:.0%} probability"]
    return []
