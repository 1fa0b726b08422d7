"""Metric analysis: configuration, PromQL templates, metric providers and judges."""

from .errors import InvalidQuery, MetricQueryError
from .judges import ComparativeJudge, SequentialJudge, SequentialState, ThresholdJudge
from .measuring import count_events, measure, sample
from .model import (
    BUILTIN_METRICS,
    AnalysisSpec,
    BasicAuth,
    JudgeSpec,
    MetricSpec,
    ProviderSpec,
    ThresholdRange,
    parse_analysis,
)
from .prometheus import PrometheusProvider
from .providers import MetricProvider, NopProvider, provider_for
from .results import Decision, EventCounts, Measurement, MetricVerdict, Outcome, Verdict
from .templates import MetricQueries, Workloads, count_queries, metric_queries, render

__all__ = [
    "BUILTIN_METRICS",
    "AnalysisSpec",
    "BasicAuth",
    "ComparativeJudge",
    "Decision",
    "EventCounts",
    "InvalidQuery",
    "JudgeSpec",
    "Measurement",
    "MetricProvider",
    "MetricQueries",
    "MetricQueryError",
    "MetricSpec",
    "MetricVerdict",
    "NopProvider",
    "Outcome",
    "PrometheusProvider",
    "ProviderSpec",
    "SequentialJudge",
    "SequentialState",
    "ThresholdJudge",
    "ThresholdRange",
    "Verdict",
    "Workloads",
    "count_events",
    "count_queries",
    "measure",
    "metric_queries",
    "parse_analysis",
    "provider_for",
    "render",
    "sample",
]
