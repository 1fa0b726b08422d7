"""Kayenta-style judge: canary samples against primary samples, per metric, then a score.

scipy is imported where it is used: it costs about 1.5 s at import, which every CLI command
(`status`, `approve`, a refused `run`) paid though only a judging driver needs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rollout.analysis.judges._verdicts import (
    decision,
    no_data,
    query_failed,
    spec_of,
    summary,
    waiting_on,
)
from rollout.analysis.results import Decision, Measurement, MetricOutcome, MetricVerdict, Verdict
from rollout.analysis.wording import share, show
from rollout.core.analysis_model import Direction, JudgeSpec, MetricSpec, NoData
from rollout.core.mann_whitney import mann_whitney, samples_needed


@dataclass(frozen=True)
class Comparison:
    """Canary minus primary: Mann-Whitney p-value, Hodges-Lehmann shift and its interval."""

    outcome: MetricOutcome
    p_value: float
    shift: float
    low: float
    high: float
    effect: float
    canary_median: float
    primary_median: float
    sizes: tuple[int, int]


def hodges_lehmann(
    canary: np.ndarray, primary: np.ndarray, *, confidence: float
) -> tuple[float, float, float]:
    """Median of all canary-primary differences, with its distribution-free interval."""
    from scipy import stats

    diffs = np.sort(np.subtract.outer(canary, primary).ravel())
    n, m = len(canary), len(primary)
    z = stats.norm.ppf(0.5 + confidence / 2)
    # Walsh-style bound: the interval drops the k smallest and k largest differences.
    k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
    k = min(max(k, 0), (len(diffs) - 1) // 2)
    return float(np.median(diffs)), float(diffs[k]), float(diffs[len(diffs) - 1 - k])


def relative_effect(canary: np.ndarray, primary: np.ndarray) -> float:
    """(mean canary - mean primary) / |mean primary|; infinite when only the primary is 0."""
    difference = float(canary.mean() - primary.mean())
    base = abs(float(primary.mean()))
    if base == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / base


def compare(
    canary: Sequence[float],
    primary: Sequence[float],
    *,
    worse: Direction,
    alpha: float,
    min_effect: float,
    confidence: float,
) -> Comparison | None:
    """HIGH / LOW when canary differs in the `worse` direction, significantly and by enough.

    Returns None when either side has no finite sample. NaN and infinities are dropped.
    """
    c = np.asarray(canary, dtype=float)
    p = np.asarray(primary, dtype=float)
    c, p = c[np.isfinite(c)], p[np.isfinite(p)]
    if len(c) == 0 or len(p) == 0:
        return None
    test = mann_whitney(c, p, worse)
    p_value = 1.0 if math.isnan(test.pvalue) else float(test.pvalue)
    shift, low, high = hodges_lehmann(c, p, confidence=confidence)
    effect = relative_effect(c, p)
    canary_greater = test.statistic > len(c) * len(p) / 2
    outcome = MetricOutcome.PASS
    if p_value < alpha:
        if canary_greater and worse != "lower-is-worse" and effect >= min_effect:
            outcome = MetricOutcome.HIGH
        elif not canary_greater and worse != "higher-is-worse" and effect <= -min_effect:
            outcome = MetricOutcome.LOW
    return Comparison(
        outcome=outcome,
        p_value=p_value,
        shift=shift,
        low=low,
        high=high,
        effect=effect,
        canary_median=float(np.median(c)),
        primary_median=float(np.median(p)),
        sizes=(len(c), len(p)),
    )


def score(
    verdicts: Sequence[MetricVerdict], metrics: dict[str, MetricSpec]
) -> tuple[float | None, bool]:
    """Weighted share (0-100) of counted metrics that passed, and whether a critical one failed.

    Metrics with ignored missing data are not counted; no counted metric gives no score.
    """
    counted = [v for v in verdicts if v.failed or v.result is MetricOutcome.PASS]
    critical = any(v.failed and metrics[v.metric].critical for v in verdicts)
    total = sum(metrics[v.metric].weight for v in counted)
    if total == 0:
        return None, critical
    passed = sum(metrics[v.metric].weight for v in counted if not v.failed)
    return 100 * passed / total, critical


class ComparativeJudge:
    """Per metric PASS / HIGH / LOW / NO_DATA; critical failures and the score decide the run."""

    def __init__(
        self, *, spec: JudgeSpec, metrics: Sequence[MetricSpec],
        on_no_data: NoData = "inconclusive",
    ) -> None:
        self._spec = spec
        self._metrics = {metric.name: metric for metric in metrics}
        self._on_no_data = on_no_data

    def judge(self, measurements: Sequence[Measurement]) -> Verdict:
        verdicts = tuple(self._metric(measurement) for measurement in measurements)
        value, critical = score(verdicts, self._metrics)
        result, why = self._decide(value, critical)
        if result is not Decision.FAIL and decision(verdicts) is Decision.INCONCLUSIVE:
            # Metrics without data are left out of the score, but never let it pass.
            result, why = Decision.INCONCLUSIVE, waiting_on(verdicts)
        return Verdict(
            result=result,
            metrics=verdicts,
            reason=summary(verdicts, passed=why, lead=why),
            score=value,
            failed_checks=1 if result is Decision.FAIL else 0,
        )

    def _decide(self, value: float | None, critical: bool) -> tuple[Decision, str]:
        spec = self._spec
        if critical:
            return Decision.FAIL, "a critical metric failed"
        if value is None:
            return Decision.INCONCLUSIVE, "no metric had data to compare"
        if value >= spec.pass_score:
            return Decision.PASS, f"score {value:.0f} reached passScore {spec.pass_score:g}"
        if value >= spec.marginal_score:
            return (
                Decision.INCONCLUSIVE,
                f"score {value:.0f} is below passScore {spec.pass_score:g} "
                f"but reached marginalScore {spec.marginal_score:g}",
            )
        return Decision.FAIL, f"score {value:.0f} is below marginalScore {spec.marginal_score:g}"

    def _metric(self, measurement: Measurement) -> MetricVerdict:
        spec = spec_of(self._metrics, measurement)
        error = measurement.error or measurement.primary_error
        if error is not None:
            return query_failed(measurement, error)
        needed = samples_needed(self._spec.alpha, spec.worse)
        sizes = (_finite(measurement.canary), _finite(measurement.primary))
        if min(sizes) and min(sizes) < needed:
            return _too_few(measurement, sizes, needed=needed, alpha=self._spec.alpha)
        found = compare(
            measurement.canary,
            measurement.primary,
            worse=spec.worse,
            alpha=self._spec.alpha,
            min_effect=self._spec.min_effect if spec.min_effect is None else spec.min_effect,
            confidence=self._spec.confidence,
        )
        if found is None:
            return no_data(
                measurement, spec, whose=_missing_side(measurement), default=self._on_no_data
            )
        return MetricVerdict(
            metric=measurement.metric,
            result=found.outcome,
            failed=found.outcome is not MetricOutcome.PASS,
            reason=_reason(measurement, found, alpha=self._spec.alpha),
            canary=found.canary_median,
            primary=found.primary_median,
            statistic=found.shift,
            interval=(found.low, found.high),
            p_value=found.p_value,
            query=measurement.query,
            window=measurement.window,
        )


def _finite(values: Sequence[float]) -> int:
    return sum(math.isfinite(value) for value in values)


def _too_few(
    measurement: Measurement, sizes: tuple[int, int], *, needed: int, alpha: float
) -> MetricVerdict:
    """Not a pass: with fewer samples no result could be significant, so the step waits."""
    return MetricVerdict(
        metric=measurement.metric,
        result=MetricOutcome.NO_DATA,
        failed=False,
        reason=(
            f"{measurement.metric}: {sizes[0]} canary and {sizes[1]} primary samples over "
            f"{measurement.window}; Mann-Whitney needs {needed} a side before it can show a "
            f"regression at alpha {alpha:g}, inconclusive, the step waits"
        ),
        query=measurement.query,
        window=measurement.window,
    )


def _missing_side(measurement: Measurement) -> str:
    has_canary = any(math.isfinite(value) for value in measurement.canary)
    if has_canary:
        return f"primary {measurement.primary_workload}"
    return f"canary {measurement.canary_workload}"


def _reason(measurement: Measurement, found: Comparison, *, alpha: float) -> str:
    unit = measurement.unit
    n, m = found.sizes
    facts = (
        f"{measurement.metric} of canary {measurement.canary_workload} had median "
        f"{show(found.canary_median, unit)} over {n} samples in {measurement.window} against "
        f"{show(found.primary_median, unit)} for primary {measurement.primary_workload} "
        f"({m} samples); shift {show(found.shift, unit)} "
        f"[{show(found.low, unit)}, {show(found.high, unit)}], "
        f"mean change {_signed(found.effect)}, p={found.p_value:.3g}"
    )
    if found.outcome is MetricOutcome.HIGH:
        return f"{facts}: significantly higher (alpha {alpha:g}) (query: {measurement.query})"
    if found.outcome is MetricOutcome.LOW:
        return f"{facts}: significantly lower (alpha {alpha:g}) (query: {measurement.query})"
    return f"{facts}: no significant regression"


def _signed(effect: float) -> str:
    if math.isinf(effect):
        return "from zero"
    return ("+" if effect >= 0 else "-") + share(abs(effect))
