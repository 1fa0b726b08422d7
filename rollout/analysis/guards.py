"""Absolute guards for the relative judges: each thresholdRange checked on the canary alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rollout.analysis.judges import ThresholdJudge
from rollout.analysis.measuring import measure
from rollout.analysis.providers import MetricProvider
from rollout.analysis.results import Decision, Verdict
from rollout.analysis.templates import Workloads
from rollout.core.analysis_model import AnalysisSpec


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
