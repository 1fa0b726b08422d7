"""Metric analysis: configuration, PromQL templates, metric providers and judges."""

from .checks import Tally, add_check
from .counters import Reading
from .errors import InvalidQuery, MetricQueryError
from .judges import ComparativeJudge, SequentialJudge, ThresholdJudge
from .measuring import count_events, measure, read_counters, sample
from .memory import JudgeState
from .model import (
    BUILTIN_METRICS,
    AnalysisSpec,
    BasicAuth,
    JudgeSpec,
    MetricSpec,
    NoData,
    ProviderSpec,
    ThresholdRange,
    parse_analysis,
)
from .prometheus import PrometheusProvider
from .providers import MetricProvider, NopProvider, provider_for
from .results import Decision, EventCounts, Measurement, MetricVerdict, Outcome, Verdict
from .templates import MetricQueries, Workloads, metric_queries, render

__all__ = [
    "BUILTIN_METRICS",
    "AnalysisSpec",
    "BasicAuth",
    "ComparativeJudge",
    "Decision",
    "EventCounts",
    "InvalidQuery",
    "JudgeSpec",
    "JudgeState",
    "Measurement",
    "MetricProvider",
    "MetricQueries",
    "MetricQueryError",
    "MetricSpec",
    "MetricVerdict",
    "NoData",
    "NopProvider",
    "Outcome",
    "PrometheusProvider",
    "ProviderSpec",
    "Reading",
    "SequentialJudge",
    "Tally",
    "ThresholdJudge",
    "ThresholdRange",
    "Verdict",
    "Workloads",
    "add_check",
    "count_events",
    "measure",
    "metric_queries",
    "parse_analysis",
    "provider_for",
    "read_counters",
    "render",
    "sample",
]
