"""Anytime-valid judge: a mixture sequential probability ratio test on bad-event counts.

In the style of Lindon et al. (KDD 2022). Within one interval, bad events (5xx, or requests
slower than a bound) on each side are Poisson in that side's requests. Given the interval's
total of bad events, the canary's share is Binomial with p = s under "no regression", s being
the canary's share of requests, and p = r*s / (r*s + 1 - s) when the canary's bad-event rate is
r times the primary's. The likelihood ratio for r, multiplied over intervals and mixed over a
prior on r > 1, is a nonnegative martingale under "no regression", so by Ville's inequality it
ever reaches 1/alpha with probability at most alpha, however often it is looked at. Mixing over
the rate ratio rather than over p keeps one alternative while the canary's weight changes. When
bad events are not rare the conditional law is hypergeometric, which is less spread than the
binomial; the ratio is convex in the count, so the test only gets more conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from rollout.analysis.judges._verdicts import summary
from rollout.analysis.memory import JudgeState
from rollout.analysis.results import Decision, EventCounts, MetricOutcome, MetricVerdict, Verdict
from rollout.analysis.wording import share, show
from rollout.core.analysis_model import JudgeSpec, NoData

_GRID_POINTS = 64
# What a bad event is called, and what its rate is called.
_DESCRIPTIONS = {
    "errors": ("5xx responses", "error rate"),
    "slow-requests": ("slow requests", "slow-request rate"),
}


def mixture_prior(scale: float, points: int = _GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """log r on a grid over (0, 4*scale] with half-normal weights; returns (log r, log weight)."""
    from scipy.special import logsumexp

    log_ratios = np.linspace(0.0, 4.0 * scale, points + 1)[1:]
    log_weights = -0.5 * (log_ratios / scale) ** 2
    return log_ratios, log_weights - logsumexp(log_weights)


def running_log_evidence(
    counts: Sequence[EventCounts], *, log_ratios: np.ndarray, log_weights: np.ndarray
) -> np.ndarray:
    """log of the mixture likelihood ratio after each interval (the e-value, on a log scale)."""
    from scipy.special import logsumexp

    if not counts:
        return np.zeros(0)
    c_total = np.array([c.canary_total for c in counts], dtype=float)
    p_total = np.array([c.primary_total for c in counts], dtype=float)
    c_bad = np.array([c.canary_bad for c in counts], dtype=float)[:, None]
    p_bad = np.array([c.primary_bad for c in counts], dtype=float)[:, None]
    informative = ((c_total > 0) & (p_total > 0))[:, None]
    s = np.where(informative[:, 0], c_total / np.maximum(c_total + p_total, 1), 0.5)[:, None]
    ratio = np.exp(log_ratios)[None, :]
    # log(p_r / s) and log((1 - p_r) / (1 - s)), written to stay finite.
    log_denominator = np.log(ratio * s + 1 - s)
    per_interval = c_bad * (log_ratios[None, :] - log_denominator) - p_bad * log_denominator
    per_interval = np.where(informative, per_interval, 0.0)
    evidence: np.ndarray = logsumexp(np.cumsum(per_interval, axis=0) + log_weights[None, :],
                                     axis=1)
    return evidence


class SequentialJudge:
    """Fails the canary (final) once its bad-event rate is shown to exceed the primary's.

    alpha is split evenly over the tests (Bonferroni), so with errors and slow requests both
    watched, P(failing a release no worse than the primary) stays <= alpha overall.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        tests: Sequence[str] = ("errors",),
        prior_scale: float = 1.0,
        on_no_data: NoData = "inconclusive",
    ) -> None:
        unknown = set(tests) - set(_DESCRIPTIONS)
        if unknown or not tests:
            raise ValueError(f"tests must be among {sorted(_DESCRIPTIONS)}, got {list(tests)}")
        self._tests = tuple(tests)
        self._alpha = alpha
        self._on_no_data = on_no_data
        self._log_ratios, self._log_weights = mixture_prior(prior_scale)

    @classmethod
    def from_spec(cls, spec: JudgeSpec, *, on_no_data: NoData = "inconclusive") -> SequentialJudge:
        tests = ("errors",) if spec.slow_request_ms is None else ("errors", "slow-requests")
        return cls(
            alpha=spec.alpha, tests=tests, prior_scale=spec.prior_scale, on_no_data=on_no_data
        )

    @property
    def tests(self) -> tuple[str, ...]:
        return self._tests

    @property
    def bar(self) -> float:
        """The e-value at which a test fails the canary."""
        return len(self._tests) / self._alpha

    def judge(
        self, *, state: JudgeState, observations: Mapping[str, EventCounts]
    ) -> tuple[JudgeState, Verdict]:
        verdicts = []
        for kind in self._tests:
            counts = observations.get(kind)
            if counts is None:
                raise ValueError(f"no {kind!r} counts given; the judge watches {self._tests}")
            state, verdict = self._test(state, kind, counts)
            verdicts.append(verdict)
        return state, self._verdict(tuple(verdicts))

    def _verdict(self, verdicts: tuple[MetricVerdict, ...]) -> Verdict:
        proven = any(v.result is MetricOutcome.HIGH for v in verdicts)
        failed = any(v.failed for v in verdicts)
        waiting = [v for v in verdicts if v.result is MetricOutcome.NO_DATA and not v.failed]
        if failed:
            result = Decision.FAIL
        elif waiting:
            result = Decision.INCONCLUSIVE
        else:
            result = Decision.PASS
        passed = "no regression shown so far (" + "; ".join(v.reason for v in verdicts) + ")"
        reason = summary(verdicts, passed=passed)
        if result is Decision.INCONCLUSIVE:
            reason = "inconclusive: " + "; ".join(v.reason for v in waiting)
        return Verdict(
            result=result,
            metrics=verdicts,
            reason=reason,
            failed_checks=1 if failed else 0,
            final=proven,
        )

    def _test(
        self, state: JudgeState, kind: str, counts: EventCounts
    ) -> tuple[JudgeState, MetricVerdict]:
        if counts.error is not None:
            return state, _broken(kind, counts, counts.error)
        missing = _missing(counts)
        if missing is not None:
            return state, self._no_data(kind, counts, missing)
        state = state.with_counts(kind, counts)
        history = state.history[kind]
        log_evidence = running_log_evidence(
            history, log_ratios=self._log_ratios, log_weights=self._log_weights
        )
        evidence = _exp(float(log_evidence[-1]))
        best = _exp(float(log_evidence.max()))
        proven = best >= self.bar
        return state, MetricVerdict(
            metric=kind,
            result=MetricOutcome.HIGH if proven else MetricOutcome.PASS,
            failed=proven,
            reason=self._reason(kind, history, evidence=best if proven else evidence),
            canary=_rate(history, canary=True),
            primary=_rate(history, canary=False),
            statistic=evidence,
            p_value=min(1.0, 1.0 / best),
            window=counts.window,
        )

    def _no_data(self, kind: str, counts: EventCounts, missing: str) -> MetricVerdict:
        counted = self._on_no_data == "fail"
        return MetricVerdict(
            metric=kind,
            result=MetricOutcome.NO_DATA,
            failed=counted,
            reason=f"{_DESCRIPTIONS[kind][0]}: no data, {missing}; "
            + ("counted as a failed check" if counted else "inconclusive, the step waits")
            + f" (onNoData: {self._on_no_data})",
            window=counts.window,
        )

    def _reason(self, kind: str, history: Sequence[EventCounts], *, evidence: float) -> str:
        c_bad, c_total, p_bad, p_total = _totals(history)
        what, rate = _DESCRIPTIONS[kind]
        intervals = f"{len(history)} interval" + ("s" if len(history) > 1 else "")
        facts = (
            f"canary had {c_bad} {what} in {c_total} requests ({share(c_bad / c_total)}) "
            f"against {p_bad} in {p_total} ({share(p_bad / max(p_total, 1))}) for the primary "
            f"over {intervals}"
        )
        if evidence >= self.bar:
            return (
                f"{facts}: the evidence {show(evidence)} reached {show(self.bar)}, "
                f"so the canary's {rate} is higher (alpha {self._alpha:g})"
            )
        return f"{facts}; evidence {show(evidence)} of the {show(self.bar)} needed to fail it"


def _exp(log_value: float) -> float:
    # Overwhelming evidence (a log above ~709) would overflow a float; it is capped instead,
    # far above any bar.
    return math.exp(min(log_value, 700.0))


def _missing(counts: EventCounts) -> str | None:
    """Why the interval holds no evidence, or None: without requests on both sides, the
    canary's share of bad events says nothing, so it is never read as a pass."""
    over = f"over {counts.window}" if counts.window else "over the interval"
    if counts.missing is not None:
        return counts.missing
    if counts.canary_total == 0 and counts.primary_total == 0:
        return f"neither canary nor primary served a request {over}"
    if counts.canary_total == 0:
        return f"the canary served no requests {over}"
    if counts.primary_total == 0:
        return (
            f"the primary served no requests {over} (check the primary's workload name, "
            "and that header-based routing sends it traffic)"
        )
    return None


def _broken(kind: str, counts: EventCounts, error: str) -> MetricVerdict:
    return MetricVerdict(
        metric=kind,
        result=MetricOutcome.ERROR,
        failed=True,
        reason=f"{_DESCRIPTIONS[kind][0]} could not be counted: {error}",
        window=counts.window,
    )


def _totals(history: Sequence[EventCounts]) -> tuple[int, int, int, int]:
    return (
        sum(c.canary_bad for c in history),
        sum(c.canary_total for c in history),
        sum(c.primary_bad for c in history),
        sum(c.primary_total for c in history),
    )


def _rate(history: Sequence[EventCounts], *, canary: bool) -> float | None:
    c_bad, c_total, p_bad, p_total = _totals(history)
    bad, total = (c_bad, c_total) if canary else (p_bad, p_total)
    return bad / total if total else None
