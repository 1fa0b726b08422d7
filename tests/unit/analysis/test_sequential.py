"""Covers the sequential judge: type-I error under many looks (simulated), power, state, edges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rollout.analysis import Decision, EventCounts, JudgeState, MetricOutcome, SequentialJudge
from rollout.analysis.judges.sequential import mixture_prior, running_log_evidence
from rollout.core.analysis_model import JudgeSpec

LOG_RATIOS, LOG_WEIGHTS = mixture_prior(1.0)


def _simulate(
    rng: np.random.Generator, *, looks: int, rate: float, ratio: float, weights: list[float]
) -> list[EventCounts]:
    """Per look: requests split by the current weight; canary errors at ratio x the rate."""
    counts = []
    for look in range(looks):
        weight = weights[min(look * len(weights) // looks, len(weights) - 1)]
        canary, primary = rng.poisson(600 * weight), rng.poisson(600 * (1 - weight))
        counts.append(
            EventCounts(
                canary, int(rng.binomial(canary, min(rate * ratio, 1))),
                primary, int(rng.binomial(primary, rate)),
            )
        )  # fmt: skip
    return counts


def _rejects(counts: list[EventCounts], *, alpha: float) -> bool:
    evidence = running_log_evidence(counts, log_ratios=LOG_RATIOS, log_weights=LOG_WEIGHTS)
    return bool(evidence.max() >= np.log(1 / alpha))


@pytest.mark.parametrize(
    ("rate", "weights"), [(0.01, [0.1]), (0.2, [0.05, 0.1, 0.25, 0.5])]
)  # fmt: skip
def test_a_good_canary_is_rarely_failed_however_often_it_is_judged(
    rate: float, weights: list[float]
) -> None:
    rng = np.random.default_rng(7)
    alpha, runs = 0.05, 1500
    failed = sum(
        _rejects(_simulate(rng, looks=40, rate=rate, ratio=1.0, weights=weights), alpha=alpha)
        for _ in range(runs)
    )
    # Ville's inequality bounds this by alpha for any number of looks; 3 standard errors slack.
    assert failed / runs <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)


def test_a_bad_canary_is_caught_and_early_when_it_is_very_bad() -> None:
    rng = np.random.default_rng(11)
    caught = [
        _rejects(_simulate(rng, looks=10, rate=0.01, ratio=3.0, weights=[0.2]), alpha=0.01)
        for _ in range(200)
    ]
    assert np.mean(caught) > 0.9
    very_bad = _simulate(rng, looks=1, rate=0.01, ratio=20.0, weights=[0.2])
    assert _rejects(very_bad, alpha=0.01)


def test_fewer_canary_errors_is_never_evidence_against_it() -> None:
    better = [EventCounts(1000, 0, 1000, 50)] * 20
    evidence = running_log_evidence(better, log_ratios=LOG_RATIOS, log_weights=LOG_WEIGHTS)
    assert evidence[-1] < 0


def test_intervals_without_errors_or_traffic_change_nothing() -> None:
    quiet = [EventCounts(100, 0, 900, 0), EventCounts(0, 0, 0, 0), EventCounts(50, 0, 0, 0)]
    evidence = running_log_evidence(quiet, log_ratios=LOG_RATIOS, log_weights=LOG_WEIGHTS)
    assert np.allclose(evidence, 0.0)


def test_the_judge_fails_finally_and_explains_with_the_counts() -> None:
    judge = SequentialJudge(alpha=0.01)
    state, verdict = judge.judge(
        state=JudgeState(), observations={"errors": EventCounts(100, 1, 900, 9, "1m")}
    )
    assert verdict.result is Decision.PASS and not verdict.final
    assert verdict.metrics[0].reason.startswith(
        "canary had 1 5xx responses in 100 requests (1%) against 9 in 900 (1%) for the primary "
        "over 1 interval; evidence"
    )
    state, verdict = judge.judge(
        state=state, observations={"errors": EventCounts(100, 30, 900, 9, "1m")}
    )
    assert verdict.result is Decision.FAIL and verdict.final and verdict.failed_checks == 1
    metric = verdict.metrics[0]
    assert metric.result is MetricOutcome.HIGH
    assert metric.p_value is not None and metric.p_value < 0.01
    assert "reached 100, so the canary's error rate is higher" in metric.reason
    assert metric.canary == pytest.approx(31 / 200) and metric.primary == pytest.approx(18 / 1800)


def test_state_is_plain_data_that_survives_a_journal() -> None:
    judge = SequentialJudge(alpha=0.05)
    state = JudgeState()
    for counts in (EventCounts(100, 2, 900, 5), EventCounts(120, 3, 880, 6)):
        state, _ = judge.judge(state=state, observations={"errors": counts})
    reloaded = JudgeState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert reloaded == state
    again = judge.judge(state=reloaded, observations={"errors": EventCounts(90, 1, 910, 4)})
    first = judge.judge(state=state, observations={"errors": EventCounts(90, 1, 910, 4)})
    assert again[1] == first[1]


def test_errors_and_slow_requests_share_alpha() -> None:
    judge = SequentialJudge.from_spec(JudgeSpec(kind="sequential", alpha=0.01, slowRequestMs=250))
    assert judge.tests == ("errors", "slow-requests") and judge.bar == pytest.approx(200)
    with pytest.raises(ValueError, match="slow-requests"):
        judge.judge(state=JudgeState(), observations={"errors": EventCounts(1, 0, 1, 0)})


def test_no_canary_traffic_waits_and_failed_queries_fail() -> None:
    # Finding 8: an interval without canary requests used to be a failed check.
    judge = SequentialJudge()
    state, verdict = judge.judge(
        state=JudgeState(), observations={"errors": EventCounts(0, 0, 900, 3, "1m")}
    )
    assert verdict.result is Decision.INCONCLUSIVE and verdict.failed_checks == 0
    assert verdict.metrics[0].result is MetricOutcome.NO_DATA and state == JudgeState()
    assert "the canary served no requests over 1m" in verdict.reason
    broken = EventCounts(0, 0, 0, 0, "1m", error="HTTP 503")
    _, verdict = judge.judge(state=state, observations={"errors": broken})
    assert verdict.metrics[0].result is MetricOutcome.ERROR and verdict.failed_checks == 1
    strict = SequentialJudge(on_no_data="fail")
    _, verdict = strict.judge(
        state=state, observations={"errors": EventCounts(0, 0, 900, 3, "1m")}
    )
    assert verdict.result is Decision.FAIL and not verdict.final


def test_a_primary_without_traffic_is_no_evidence_and_never_a_pass() -> None:
    # Finding 2: a canary at 100% 5xx passed 10 intervals when the primary served nothing.
    judge = SequentialJudge()
    state = JudgeState()
    for _ in range(10):
        state, verdict = judge.judge(
            state=state, observations={"errors": EventCounts(120, 120, 0, 0, "1m")})
        assert verdict.result is Decision.INCONCLUSIVE
        assert "the primary served no requests" in verdict.reason
    assert state == JudgeState()


def test_unreadable_counts_are_no_data() -> None:
    missing = EventCounts(0, 0, 0, 0, "1m", missing="istio_requests_total series {} holds nan")
    _, verdict = SequentialJudge().judge(state=JudgeState(), observations={"errors": missing})
    assert verdict.result is Decision.INCONCLUSIVE and "holds nan" in verdict.reason


def test_judge_state_round_trips_and_reads_the_older_journal_shape() -> None:
    state = JudgeState().with_counts("errors", EventCounts(100, 1, 900, 9, "1m"))
    assert JudgeState.from_dict(state.to_dict()) == state
    older = {"errors": [EventCounts(100, 1, 900, 9, "1m").to_dict()]}
    assert JudgeState.from_dict(older) == state


def test_overwhelming_evidence_fails_the_canary_rather_than_overflowing() -> None:
    # Found by `rollout plan`: exp() of one interval's evidence raised OverflowError, so a live
    # rollout stopped with exit 3 and left the bad canary at its weight.
    _, verdict = SequentialJudge().judge(
        state=JudgeState(), observations={"errors": EventCounts(1200, 400, 10800, 54, "1m")})
    assert verdict.result is Decision.FAIL and verdict.final
    assert verdict.metrics[0].p_value is not None and verdict.metrics[0].p_value < 1e-100
