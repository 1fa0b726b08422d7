"""Runs each judge on simulated canaries and prints false rollbacks, detection and speed.

Run: .venv/bin/python -m bench.judges [--runs 200] (or python bench/judges.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
from scipy import stats

from rollout.analysis import (
    ComparativeJudge,
    Decision,
    EventCounts,
    JudgeState,
    Measurement,
    SequentialJudge,
    ThresholdJudge,
)
from rollout.core.analysis_model import JudgeSpec, MetricSpec

try:
    from bench.simulation import (
        ISTIO_BUCKETS_MS,
        Scenario,
        Step,
        Traffic,
        Window,
        histogram_quantile,
        simulate_rollout,
        success_rate,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from simulation import (  # type: ignore[no-redef]
        ISTIO_BUCKETS_MS,
        Scenario,
        Step,
        Traffic,
        Window,
        histogram_quantile,
        simulate_rollout,
        success_rate,
    )

SCENARIOS = (
    Scenario("identical"),
    Scenario("errors +0.5pp", extra_errors=0.005),
    Scenario("errors +1pp", extra_errors=0.01),
    Scenario("errors +5pp", extra_errors=0.05),
    Scenario("p99 +20%", latency_factor=1.2),
    Scenario("p99 +50%", latency_factor=1.5),
    Scenario("p99 x2", latency_factor=2.0),
)

# A contender sees a whole simulated rollout and returns the interval (1-based) it rolled
# back at, or None if it would have promoted.
Contender = Callable[[list[list[Step]]], int | None]


@dataclass(frozen=True)
class Settings:
    traffic: Traffic
    intervals: int
    runs: int
    seed: int
    alpha: float
    min_success: float
    p99_max_ms: float
    slow_ms: float


def _total(windows: Sequence[Window]) -> Window:
    return reduce(lambda a, b: a + b, windows)


def _measurement(metric: str, unit: str, canary: Sequence[float], primary: Sequence[float]):
    return Measurement(
        metric=metric,
        query="(simulated)",
        window="1m",
        canary_workload="demo",
        canary=tuple(canary),
        primary=tuple(primary),
        primary_workload="demo-primary",
        unit=unit,
    )


def flagger(settings: Settings, *, threshold: int) -> Contender:
    judge = ThresholdJudge(
        metrics=[
            MetricSpec(name="request-success-rate", thresholdRange={"min": settings.min_success}),
            MetricSpec(name="request-duration", thresholdRange={"max": settings.p99_max_ms}),
        ]
    )

    def run(rollout: list[list[Step]]) -> int | None:
        failed = 0
        for number, steps in enumerate(rollout, 1):
            canary = _total([step.canary for step in steps])
            verdict = judge.judge(
                [
                    _measurement("request-success-rate", "%", [success_rate(canary)], []),
                    _measurement(
                        "request-duration", "ms", [histogram_quantile(0.99, canary.buckets)], []
                    ),
                ]
            )
            failed += verdict.failed_checks
            if failed >= threshold:
                return number
        return None

    return run


def comparative(settings: Settings) -> Contender:
    metrics = [
        # Success rates sit near 100, so a 1% relative guard would hide a 1pp regression.
        MetricSpec(name="request-success-rate", minEffect=0.002),
        MetricSpec(name="request-duration"),
    ]
    judge = ComparativeJudge(
        spec=JudgeSpec(kind="comparative", alpha=settings.alpha), metrics=metrics
    )

    def run(rollout: list[list[Step]]) -> int | None:
        steps: list[Step] = []
        for number, interval in enumerate(rollout, 1):
            steps.extend(interval)
            verdict = judge.judge(
                [
                    _measurement(
                        "request-success-rate",
                        "%",
                        [success_rate(s.canary) for s in steps],
                        [success_rate(s.primary) for s in steps],
                    ),
                    _measurement(
                        "request-duration",
                        "ms",
                        [histogram_quantile(0.99, s.canary.buckets) for s in steps],
                        [histogram_quantile(0.99, s.primary.buckets) for s in steps],
                    ),
                ]
            )
            if verdict.result is Decision.FAIL:
                return number
        return None

    return run


def sequential(settings: Settings, *, slow: bool) -> Contender:
    tests = ("errors", "slow-requests") if slow else ("errors",)
    judge = SequentialJudge(alpha=settings.alpha, tests=tests)
    under = int(np.searchsorted(ISTIO_BUCKETS_MS, settings.slow_ms))

    def counts(canary: Window, primary: Window) -> dict[str, EventCounts]:
        timed_c, timed_p = int(canary.buckets[-1]), int(primary.buckets[-1])
        return {
            "errors": EventCounts(canary.requests, canary.errors, primary.requests, primary.errors),
            "slow-requests": EventCounts(
                timed_c,
                timed_c - int(canary.buckets[under]),
                timed_p,
                timed_p - int(primary.buckets[under]),
            ),
        }

    def run(rollout: list[list[Step]]) -> int | None:
        state = JudgeState()
        for number, steps in enumerate(rollout, 1):
            canary = _total([step.canary for step in steps])
            primary = _total([step.primary for step in steps])
            state, verdict = judge.judge(state=state, observations=counts(canary, primary))
            if verdict.result is Decision.FAIL:
                return number
        return None

    return run


def contenders(settings: Settings) -> dict[str, Contender]:
    return {
        "flagger threshold=1": flagger(settings, threshold=1),
        "flagger threshold=5": flagger(settings, threshold=5),
        "comparative (MW)": comparative(settings),
        "sequential errors": sequential(settings, slow=False),
        f"sequential errors+slow>{settings.slow_ms:g}ms": sequential(settings, slow=True),
    }


def evaluate(settings: Settings) -> dict[str, dict[str, list[int | None]]]:
    """For every contender and scenario, the rollback interval (or None) of each seeded run."""
    judged = contenders(settings)
    outcomes: dict[str, dict[str, list[int | None]]] = {name: {} for name in judged}
    for index, scenario in enumerate(SCENARIOS):
        rng = np.random.default_rng([settings.seed, index])
        for name in judged:
            outcomes[name][scenario.name] = []
        for _ in range(settings.runs):
            rollout = simulate_rollout(
                rng, traffic=settings.traffic, scenario=scenario, intervals=settings.intervals
            )
            for name, run in judged.items():
                outcomes[name][scenario.name].append(run(rollout))
    return outcomes


def _cell(results: list[int | None]) -> str:
    hits = [r for r in results if r is not None]
    rate = 100 * len(hits) / len(results)
    median = f"{statistics.median(hits):g}" if hits else "-"
    return f"{rate:5.1f}% {median:>3}"


def render(settings: Settings, outcomes: dict[str, dict[str, list[int | None]]]) -> str:
    width = max(len(name) for name in outcomes) + 2
    header = "judge".ljust(width) + "".join(f"{s.name:>15}" for s in SCENARIOS)
    lines = [header, "-" * len(header)]
    for name, by_scenario in outcomes.items():
        cells = "".join(f"{_cell(by_scenario[s.name]):>15}" for s in SCENARIOS)
        lines.append(name.ljust(width) + cells)
    lines += ["", *verdicts_on_targets(settings, outcomes), "", bound_line(settings)]
    return "\n".join(lines)


def verdicts_on_targets(
    settings: Settings, outcomes: dict[str, dict[str, list[int | None]]]
) -> list[str]:
    lines = ["targets: false rollback <= 1%, detection of +1pp >= 99%, median detection <= 2"]
    for name, by_scenario in outcomes.items():
        false = by_scenario["identical"]
        false_rate = sum(r is not None for r in false) / len(false)
        hits = [r for r in by_scenario["errors +1pp"] if r is not None]
        detection = len(hits) / settings.runs
        median = statistics.median(hits) if hits else float("inf")
        marks = [
            _mark(false_rate <= 0.01, f"false {100 * false_rate:.1f}%"),
            _mark(detection >= 0.99, f"+1pp detected {100 * detection:.1f}%"),
            _mark(median <= 2, f"median {median:g} intervals"),
        ]
        lines.append(f"  {name}: " + ", ".join(marks))
    return lines


def one_look_bound(settings: Settings, *, extra_errors: float, intervals: int) -> float:
    """Detection of the best single test at one look, told the true base error rate.

    It counts canary errors only and ignores every earlier look, so no judge that must learn
    the base rate from the primary and may be asked every interval can do better.
    """
    t = settings.traffic
    requests = t.rps * t.weight * t.interval_s * intervals
    critical = stats.poisson.isf(settings.alpha, requests * t.error_rate)
    return float(stats.poisson.sf(critical, requests * (t.error_rate + extra_errors)))


def bound_line(settings: Settings) -> str:
    looks = sorted({1, 2, settings.intervals})
    shares = ", ".join(
        f"interval {k}: {100 * one_look_bound(settings, extra_errors=0.01, intervals=k):.0f}%"
        for k in looks
    )
    return f"ceiling for +1pp (one look, base rate known, alpha {settings.alpha:g}): {shares}"


def _mark(ok: bool, text: str) -> str:
    return f"{text} [{'met' if ok else 'MISSED'}]"


def _arguments() -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--weight", type=float, default=0.10)
    parser.add_argument("--error-rate", type=float, default=0.005)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds")
    parser.add_argument("--step", type=float, default=30.0, help="comparative sample, seconds")
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--min-success", type=float, default=99.0, help="flagger, percent")
    parser.add_argument("--p99-max", type=float, default=500.0, help="flagger, milliseconds")
    parser.add_argument("--slow-ms", type=float, default=250.0, help="an Istio bucket bound")
    args = parser.parse_args()
    traffic = Traffic(
        rps=args.rps,
        weight=args.weight,
        error_rate=args.error_rate,
        interval_s=args.interval,
        step_s=args.step,
    )
    return Settings(
        traffic=traffic,
        intervals=args.intervals,
        runs=args.runs,
        seed=args.seed,
        alpha=args.alpha,
        min_success=args.min_success,
        p99_max_ms=args.p99_max,
        slow_ms=args.slow_ms,
    )


def main() -> None:
    settings = _arguments()
    started = time.perf_counter()
    outcomes = evaluate(settings)
    t = settings.traffic
    print(
        f"{settings.runs} runs per scenario, {t.rps:g} rps, canary weight {100 * t.weight:g}%, "
        f"base errors {100 * t.error_rate:g}%, latency lognormal(median {t.latency_median_ms:g}"
        f" ms, sigma {t.latency_sigma:g}), {settings.intervals} intervals of {t.interval_s:g}s, "
        f"alpha {settings.alpha:g}"
    )
    print("cell: share of runs rolled back, median interval of rollback\n")
    print(render(settings, outcomes))
    print(f"\n({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
